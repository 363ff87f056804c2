"""Coverage-guided fuzz target (atheris) of the RESP parsers.

Owns one libFuzzer entry point: the input is split at a point chosen by its
first two bytes and fed, as the receive accumulator would, through the Redis
client's two receive paths (our parser; hiredis fed only vetted replies),
with tight limits so they are reached. Both must give the same values or
the same ProtocolError; any other exception is a finding. Run it with
scripts/fuzz.sh (or: python tests/fuzz/fuzz_resp.py -runs=N [corpus dir]).
"""
import os
import sys

import atheris
import hypothesis  # noqa: F401 - imported (not instrumented) before the parsers
import pytest  # noqa: F401

with atheris.instrument_imports():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients"))
    from test_parser_properties import _TIGHT, drive     # noqa: E402


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    cut = int.from_bytes(data[:2], "little") % (len(data) - 1)
    wire = data[2:]
    chunks = [wire[:cut], wire[cut:]]
    want = drive("python", [wire], **_TIGHT)
    for kind in ("python", "hiredis"):
        got = drive(kind, chunks, **_TIGHT)
        if got != want:
            raise AssertionError(f"{kind} split at {cut}: {got!r} != {want!r}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

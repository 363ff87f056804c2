"""Coverage-guided fuzz target (atheris) of the memcache reply parser.

Owns one libFuzzer entry point: the input is split at a point chosen by its
first two bytes and parsed with and without the native VALUE scanner, with
tight limits. Every way must give the same replies or the same
ProtocolError; any other exception is a finding. Run it with
scripts/fuzz.sh (or: python tests/fuzz/fuzz_memcache.py -runs=N [corpus]).
"""
import os
import sys

import atheris
import hypothesis  # noqa: F401 - imported (not instrumented) before the parsers
import pytest  # noqa: F401

with atheris.instrument_imports():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients"))
    from ringline.memcache import _proto
    from test_parser_properties import _mc_outcome     # noqa: E402

_LIMITS = dict(max_line=64, max_value=64, max_reply_bytes=2000)


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    cut = int.from_bytes(data[:2], "little") % (len(data) - 1)
    wire = data[2:]
    native = _proto._scan_values
    want = _mc_outcome([wire], **_LIMITS)
    try:
        for scan in (native, None):
            _proto._scan_values = scan
            got = _mc_outcome([wire[:cut], wire[cut:]], **_LIMITS)
            if got != want:
                raise AssertionError(f"scanner={scan is not None} split at {cut}: "
                                     f"{got!r} != {want!r}")
    finally:
        _proto._scan_values = native


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

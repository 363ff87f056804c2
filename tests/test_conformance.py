"""CPython test.test_asyncio conformance of the ringline loop.

Runs tests/conformance/run_conformance.py in a subprocess and checks
(1) at least *_MIN_PASS tests pass and (2) every failing test is listed with
a reason in tests/conformance/known_failures.txt.

* Foundation suite (219 tests): always runs.
* Full suite (443 tests): runs by default (under a minute on ringline);
  select it alone with ``pytest -m conformance_full``.

``RINGLINE_CONFORMANCE_LOOP=module:factory`` points both at another loop
(e.g. ``asyncio:SelectorEventLoop``) to sanity-check the harness.
"""
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNNER = HERE / "conformance" / "run_conformance.py"
KNOWN_FAILURES = HERE / "conformance" / "known_failures.txt"

LOOP = os.environ.get("RINGLINE_CONFORMANCE_LOOP", "ringline:new_event_loop")

# Raise these as ringline improves (asyncio passes 219 / 443, uvloop 214 / 386
# plus 1 skip).  ringline at the time of writing: 219 / 440-441 (+1 skip).
FOUNDATION_MIN_PASS = 219
FULL_MIN_PASS = 441

# Wall-clock bounds for the runner subprocess.  asyncio needs ~10 s / ~40 s,
# ringline ~10 s / ~50 s; every hanging test costs up to --timeout (45 s).
FOUNDATION_TIMEOUT = 900
FULL_TIMEOUT = 3600

sys.path.insert(0, str(RUNNER.parent))
from run_conformance import FAILING, known_reason, load_known_failures  # noqa: E402


def run_suite(suite, tmp_path, timeout):
    out = tmp_path / f"conformance-{suite}.json"
    cmd = [sys.executable, str(RUNNER), "--suite", suite, "--loop", LOOP,
           "--json", str(out), "--known-failures", str(KNOWN_FAILURES)]
    # Own session so that a timeout can kill the runner *and* its worker.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"conformance runner exceeded {timeout}s\n{output[-5000:]}")
    assert proc.returncode == 0, (
        f"runner broke (exit {proc.returncode}):\n{output[-5000:]}")
    with open(out) as f:
        return json.load(f), output


def check(doc, output, min_pass):
    entries = load_known_failures(KNOWN_FAILURES)
    missing_reason = [p for p, reason in entries if not reason]
    assert not missing_reason, (
        f"entries without a reason in {KNOWN_FAILURES.name}: {missing_reason}")

    failing = [t for t in doc["tests"] if t["outcome"] in FAILING]
    unexpected = [t for t in failing if known_reason(t["id"], entries) is None]
    fixtures = [t for t in doc.get("fixtures", []) if t["outcome"] in FAILING]
    listed = {p for p, _ in entries}
    flaky = {p for p, reason in entries if reason.lower().startswith("flaky")}
    stale = [t["id"] for t in doc["tests"] if t["id"] in listed - flaky
             and t["outcome"] not in FAILING]
    if stale:
        warnings.warn(f"listed in {KNOWN_FAILURES.name} but passing: {stale}")

    summary = doc["summary"]
    lines = [output.strip().splitlines()[-1] if output.strip() else ""]
    lines += [f"UNLISTED {t['id']} [{t['outcome']}]: {t['message'][:200]}"
              for t in unexpected]
    lines += [f"FIXTURE {t['id']}: {t['message'][:200]}" for t in fixtures]
    report = "\n".join(lines)
    assert not unexpected and not fixtures, report
    assert summary["passed"] >= min_pass, (
        f"passed={summary['passed']} < {min_pass}\n{report}")


@pytest.mark.conformance
@pytest.mark.timeout(FOUNDATION_TIMEOUT + 60)
def test_cpython_asyncio_foundation(tmp_path):
    doc, output = run_suite("foundation", tmp_path, FOUNDATION_TIMEOUT)
    assert doc["summary"]["run"] == 219, doc["summary"]
    check(doc, output, FOUNDATION_MIN_PASS)


@pytest.mark.conformance
@pytest.mark.conformance_full
@pytest.mark.timeout(FULL_TIMEOUT + 60)
def test_cpython_asyncio_full(tmp_path, request):
    doc, output = run_suite("full", tmp_path, FULL_TIMEOUT)
    assert doc["summary"]["run"] == 443, doc["summary"]
    check(doc, output, FULL_MIN_PASS)

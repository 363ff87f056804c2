#!/usr/bin/env python
"""Run CPython's own ``test.test_asyncio`` against an arbitrary event loop.

Usage::

    python tests/conformance/run_conformance.py [--suite foundation|full]
        [--loop module:factory] [--json OUT] [-k PATTERN] [-v]
        [--timeout SECONDS] [--min-pass N] [--list] [--in-process]

How the target loop is injected (see docs in README.md next to this file):

* Policy-driven modules (``asyncio.new_event_loop()``, ``asyncio.run()``,
  ``Runner``, ``IsolatedAsyncioTestCase``): ``asyncio.DefaultEventLoopPolicy``
  is replaced by a subclass whose ``new_event_loop()`` calls the factory.
  ``events._init_event_loop_policy()`` re-imports that name every time a
  module's ``tearDownModule`` resets the policy, so the swap survives.
* Mixin-driven modules: a ``TestCase`` subclass of each mixin is generated
  whose ``create_event_loop()`` / ``new_loop()`` calls the factory.
* ``test_utils.TestCase.close_loop`` reads ``loop._default_executor``; for
  loops that are not stdlib ``BaseEventLoop`` it is replaced by
  ``shutdown_default_executor()`` + ``close()``.

Robustness: every test gets a SIGALRM deadline (``--timeout``, default 45 s)
that raises ``TestTimeout`` (a ``SystemExit`` subclass, so neither asyncio's
``Handle._run`` nor ``Task`` swallows it, while unittest records it as an
error).  Tests run in a worker subprocess supervised by this process; if the
worker crashes (segfault in a native loop) or hangs past the deadline plus a
grace period, the supervisor records the test as an error, dumps the worker's
Python stacks, and restarts a worker with the remaining tests.

Exit status: 0 when the run completed (whatever the test outcomes), 1 when
``--min-pass`` is given and not reached, 2 when the runner itself broke
(e.g. the loop module cannot be imported).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import faulthandler
import fnmatch
import importlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

DEFAULT_LOOP = "ringline:new_event_loop"
PKG = "test.test_asyncio"

# Modules whose tests obtain their loop from the policy: run whole.
FOUNDATION_POLICY_MODULES = [
    "test_locks", "test_queues", "test_taskgroups", "test_timeouts",
    "test_waitfor", "test_threads", "test_futures2", "test_context",
    "test_eager_task_factory",          # 3.12+ (skipped where absent)
]
FULL_POLICY_MODULES = ["test_streams", "test_ssl"]

# (module, generated class name, mixin names, hook method) for mixins that
# construct their own loop.  The stdlib subclasses these once per selector;
# we subclass them once for the target loop.
FOUNDATION_MIXINS = [
    ("test_sock_lowlevel", "TargetSockTests", ["BaseSockTestsMixin"],
     "create_event_loop"),
]
FULL_MIXINS = [
    # EventLoopTestsMixin, not UnixEventLoopTestsMixin: the latter attaches
    # a SafeChildWatcher to the loop.
    ("test_events", "TargetEventLoopTests",
     ["EventLoopTestsMixin", "SubprocessTestsMixin"], "create_event_loop"),
    ("test_sendfile", "TargetSendfileTests", ["SendfileTestsBase"],
     "create_event_loop"),
    ("test_buffered_proto", "TargetBufferedProtocolTests",
     ["BaseTestBufferedProtocol"], "new_loop"),
    ("test_server", "TargetStartServerTests", ["BaseStartServer"], "new_loop"),
    ("test_sslproto", "TargetStartTLSTests", ["BaseStartTLS"], "new_loop"),
]
# Existing stdlib classes that are policy-driven (policy.new_event_loop()).
# Classes absent from a given Python's test package are left out (3.12 added
# test_server.TestServer2, 3.13 UnixServerCleanupTests and close_clients).
FULL_POLICY_CLASSES = [("test_subprocess", "SubprocessThreadedWatcherTests"),
                       ("test_server", "TestServer2"),
                       ("test_server", "UnixServerCleanupTests")]

# White-box tests (test_create_server_multiple_hosts_ipv4/_ipv6,
# test_timeout_rounding) are not skipped: stdlib loops pass them; list them in
# known_failures-X.Y.txt when a loop fails them.

HARD_GRACE = 30.0      # seconds past --timeout before the worker is killed
MAX_RESTARTS = 60      # worker restarts (crashes/hangs) before giving up
TB_LIMIT = 4000        # characters of traceback kept per test


class TestTimeout(SystemExit):
    """Raised from SIGALRM when a test exceeds its deadline."""


# --------------------------------------------------------------------------
# Loop spec and suite construction
# --------------------------------------------------------------------------

def resolve_factory(spec):
    """``module:attr[.attr]`` -> callable taking no arguments."""
    if ":" not in spec:
        raise SystemExit(f"--loop must look like module:factory, got {spec!r}")
    modname, attr = spec.split(":", 1)
    obj = importlib.import_module(modname)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise SystemExit(f"{spec} is not callable")
    return obj


class LazyFactory:
    """Imports the loop module on first call, so the supervisor can build
    the suite (to list test ids) without importing the target loop."""

    def __init__(self, spec):
        self.spec = spec
        self._factory = None

    def __call__(self):
        if self._factory is None:
            self._factory = resolve_factory(self.spec)
        return self._factory()


def install_policy(factory):
    base = asyncio.DefaultEventLoopPolicy
    if getattr(base, "_conformance_target", False):
        base = base.__mro__[1]

    class TargetEventLoopPolicy(base):
        _conformance_target = True

        def new_event_loop(self):
            return factory()

    TargetEventLoopPolicy.__name__ = "TargetEventLoopPolicy"
    asyncio.DefaultEventLoopPolicy = TargetEventLoopPolicy
    asyncio.set_event_loop_policy(None)


def patch_close_loop():
    from test.test_asyncio import utils as test_utils
    from test import support

    original = test_utils.TestCase.close_loop
    if getattr(original, "_conformance_patched", False):
        return

    def close_loop(loop):
        if isinstance(loop, asyncio.BaseEventLoop):
            return original(loop)
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        # Same watcher-thread wait as the original implementation.
        policy = support.maybe_get_event_loop_policy()
        if policy is None:
            return
        get_watcher = getattr(policy, "get_child_watcher", None)
        threaded = getattr(asyncio, "ThreadedChildWatcher", None)
        if get_watcher is None or threaded is None:
            return          # 3.14 removed child watchers
        try:
            watcher = get_watcher()
        except NotImplementedError:
            return
        if isinstance(watcher, threaded):
            for thread in list(watcher._threads.values()):
                thread.join(timeout=support.SHORT_TIMEOUT)
                if thread.is_alive():
                    raise RuntimeError(f"thread {thread} still alive: "
                                       "subprocess still running")

    close_loop._conformance_patched = True
    test_utils.TestCase.close_loop = staticmethod(close_loop)


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


def build_suite(suite_name, factory):
    """Return the ordered list of TestCase instances for the suite."""
    from test.test_asyncio import utils as test_utils

    loader = unittest.TestLoader()
    policy_modules = list(FOUNDATION_POLICY_MODULES)
    mixins = list(FOUNDATION_MIXINS)
    policy_classes = []
    if suite_name == "full":
        policy_modules += FULL_POLICY_MODULES
        mixins += FULL_MIXINS
        policy_classes += FULL_POLICY_CLASSES

    tests = []
    for name in policy_modules:
        try:
            mod = importlib.import_module(f"{PKG}.{name}")
        except ModuleNotFoundError:
            continue        # a module this Python's test package lacks
        tests.extend(_iter_tests(loader.loadTestsFromModule(mod)))

    for modname, clsname, mixin_names, hook in mixins:
        mod = importlib.import_module(f"{PKG}.{modname}")
        # Same TestCase base as the stdlib's own per-selector subclasses:
        # test_utils.TestCase for create_event_loop() mixins, plain
        # unittest.TestCase for the FunctionalTestCaseMixin (new_loop) ones.
        tc = (test_utils.TestCase if hook == "create_event_loop"
              else unittest.TestCase)
        bases = tuple(getattr(mod, m) for m in mixin_names) + (tc,)

        def make_hook():
            def hook_method(self):
                return factory()
            return hook_method

        ns = {hook: make_hook(), "__module__": mod.__name__,
              "__qualname__": clsname}
        cls = type(clsname, bases, ns)
        # Register on the module so unittest's module-fixture handling and
        # pickling-by-name work like for a class defined there.
        setattr(mod, clsname, cls)
        tests.extend(_iter_tests(loader.loadTestsFromTestCase(cls)))

    for modname, clsname in policy_classes:
        mod = importlib.import_module(f"{PKG}.{modname}")
        cls = getattr(mod, clsname, None)
        if cls is None:
            continue        # a class this Python's test package lacks
        tests.extend(_iter_tests(loader.loadTestsFromTestCase(cls)))
    return tests


def short_id(test_id):
    prefix = PKG + "."
    return test_id[len(prefix):] if test_id.startswith(prefix) else test_id


def select(tests, patterns):
    if not patterns:
        return tests
    out = []
    for t in tests:
        tid = short_id(t.id())
        for p in patterns:
            if any(c in p for c in "*?["):
                if fnmatch.fnmatchcase(tid, p if p.startswith("*") else "*" + p + "*"):
                    out.append(t)
                    break
            elif p in tid:
                out.append(t)
                break
    return out


# --------------------------------------------------------------------------
# Worker: runs tests in this process, streams JSON events to a file
# --------------------------------------------------------------------------

_SEVERITY = {"passed": 0, "skipped": 1, "expected_failure": 0,
             "unexpected_success": 2, "failed": 3, "error": 4}


def _truncate(text, limit=TB_LIMIT):
    if text and len(text) > limit:
        return "...[truncated]...\n" + text[-limit:]
    return text


def _last_line(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


class EventResult(unittest.TestResult):
    """Collects one outcome per test and emits it as a JSON line."""

    def __init__(self, emit, timeout):
        super().__init__()
        self.buffer = True      # capture each test's stdout/stderr
        self.emit = emit
        self.timeout = timeout
        self._cur = None
        self._pending = None

    # -- per-test guard and deadline -------------------------------------
    def _on_alarm(self, signum, frame):
        # Keep kicking every few seconds in case the first exception was
        # swallowed or cleanup hangs too; the supervisor kills us eventually.
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        raise TestTimeout(f"conformance runner: test exceeded "
                          f"{self.timeout:g}s (SIGALRM)")

    def guard(self, test):
        """Wrap ``test.run`` so that (a) the deadline covers everything the
        test does, including IsolatedAsyncioTestCase's runner teardown that
        happens after stopTest(), and (b) an exception escaping
        ``TestCase.run`` (a broken loop can make the asyncio runner teardown
        raise) is recorded as an error instead of aborting the whole run."""
        orig_run = test.run

        def run(result=None):
            if self.timeout:
                # test_events installs its own SIGALRM handler and resets it
                # to SIG_DFL afterwards: re-install ours for every test.
                signal.signal(signal.SIGALRM, self._on_alarm)
                signal.setitimer(signal.ITIMER_REAL, self.timeout)
            t0 = time.monotonic()
            try:
                return orig_run(result)
            except KeyboardInterrupt:
                raise
            except BaseException:
                err = sys.exc_info()
                if self._cur is None and self._pending is None:
                    self.startTest(test)
                if self._cur is not None:
                    self.stopTest(test)
                self._merge(self._pending, "error", err, test=test)
            finally:
                if self.timeout:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                pending, self._pending = self._pending, None
                if pending is not None:
                    pending["duration"] = round(time.monotonic() - t0, 3)
                    self.emit(dict(ev="result", **pending))

        test.run = run

    def startTest(self, test):
        super().startTest(test)
        self._cur = {"id": short_id(test.id()), "outcome": "passed",
                     "message": "", "traceback": "", "t0": time.monotonic()}
        self.emit({"ev": "start", "id": self._cur["id"]})

    def stopTest(self, test):
        super().stopTest(test)
        cur, self._cur = self._cur, None
        if cur is None:
            return
        cur["duration"] = round(time.monotonic() - cur.pop("t0"), 3)
        self._pending = cur     # emitted by guard() once run() returns

    # -- outcomes ---------------------------------------------------------
    def _merge(self, rec, outcome, err=None, message="", test=None):
        tb = ""
        if err is not None:
            if test is not None:
                # unittest's formatting: drops unittest-internal frames and,
                # with buffer=True, appends the test's captured stdout/stderr
                # (e.g. the contexts FunctionalTestCaseMixin prints for
                # "unexpected calls to loop.call_exception_handler()").
                tb = self._exc_info_to_string(err, test)
            else:
                tb = "".join(traceback.format_exception(*err))
            message = message or _last_line(
                "".join(traceback.format_exception_only(err[0], err[1])))
        if _SEVERITY[outcome] >= _SEVERITY[rec["outcome"]]:
            rec["outcome"] = outcome
            rec["message"] = message
        if tb:
            rec["traceback"] = _truncate((rec["traceback"] + "\n" + tb).strip())

    def _record(self, test, outcome, err=None, message=""):
        cur = self._cur
        if cur is None or short_id(test.id()) != cur["id"]:
            # Fixture errors (setUpClass, tearDownModule, ...) arrive outside
            # startTest/stopTest.
            rec = {"id": short_id(str(test.id())), "fixture": True,
                   "outcome": "passed", "duration": 0.0, "message": "",
                   "traceback": ""}
            self._merge(rec, outcome, err, message, test=test)
            self.emit(dict(ev="result", **rec))
            return
        self._merge(cur, outcome, err, message, test=test)

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failed", err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", message=str(reason))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "expected_failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected_success", message="unexpected success")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = ("failed" if issubclass(err[0], test.failureException)
                    else "error")
            self._record(test, kind, err, message=f"{subtest._subDescription()}: "
                         + _last_line("".join(traceback.format_exception_only(
                             err[0], err[1]))))


def worker_main(args):
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    events = open(args.events, "a", buffering=1)

    def emit(obj):
        events.write(json.dumps(obj) + "\n")
        events.flush()

    factory = LazyFactory(args.loop)
    try:
        # Fail fast (and clearly) if the loop cannot be created at all.
        probe = factory()
        probe_repr = repr(probe)
        probe.close()
    except BaseException:
        emit({"ev": "fatal", "message": "cannot create target loop",
              "traceback": traceback.format_exc()})
        return 2
    install_policy(factory)
    patch_close_loop()
    wanted = None
    if args.ids_file:
        with open(args.ids_file) as f:
            wanted = [ln.strip() for ln in f if ln.strip()]
    tests = build_suite(args.suite, factory)
    if wanted is not None:
        keep = set(wanted)
        tests = [t for t in tests if short_id(t.id()) in keep]
    emit({"ev": "ready", "loop": probe_repr, "count": len(tests)})
    result = EventResult(emit, args.timeout)
    for t in tests:
        result.guard(t)
    unittest.TestSuite(tests).run(result)
    emit({"ev": "done"})
    events.close()
    return 0


# --------------------------------------------------------------------------
# Known failures
# --------------------------------------------------------------------------

def known_failures_path(version=None):
    """known_failures-X.Y.txt for this (or the given) interpreter version:
    each Python's test.test_asyncio differs, so each has its own list."""
    major, minor = (version or sys.version_info)[:2]
    return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        f"known_failures-{major}.{minor}.txt")


KNOWN_FAILURES = known_failures_path()
FAILING = ("failed", "error", "unexpected_success")


def load_known_failures(path=KNOWN_FAILURES):
    """Parse ``<test id or glob> | <reason>`` lines ('#' starts a comment).

    Returns a list of (pattern, reason) in file order; reason may be '' when
    the line has none (the pytest wrapper rejects such entries).  A reason
    starting with "flaky" marks a test that may pass: it is not reported as
    "FIXED?" when it does."""
    entries = []
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            pattern, _, reason = line.partition("|")
            entries.append((pattern.strip(), reason.strip()))
    return entries


def known_reason(test_id, entries):
    """The reason of the first entry matching ``test_id`` (exact id or
    fnmatch glob), or None when the test is not listed."""
    for pattern, reason in entries:
        if pattern == test_id or fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


# --------------------------------------------------------------------------
# Supervisor
# --------------------------------------------------------------------------

class Supervisor:
    def __init__(self, args, ids):
        self.args = args
        self.ids = ids
        self.results = collections.OrderedDict()
        self.fixture_results = []
        self.restarts = 0
        self.loop_repr = None
        self.tmp = tempfile.mkdtemp(prefix="conformance-")

    def log(self, msg):
        print(msg, flush=True)

    def _print_result(self, r):
        if self.args.verbose:
            extra = f"  {r['message'][:150]}" if r["outcome"] not in (
                "passed", "expected_failure") else ""
            self.log(f"{r['outcome'].upper():8s} {r['id']} "
                     f"({r['duration']:.2f}s){extra}")
        elif r["outcome"] in ("failed", "error", "unexpected_success"):
            self.log(f"{r['outcome'].upper():8s} {r['id']}: {r['message'][:150]}")

    def run(self):
        remaining = list(self.ids)
        while remaining:
            if self.restarts > MAX_RESTARTS:
                for tid in remaining:
                    self._add({"id": tid, "outcome": "error", "duration": 0.0,
                               "message": "not run: too many worker restarts",
                               "traceback": ""})
                break
            status = self._run_worker(remaining)
            remaining = [t for t in remaining if t not in self.results]
            if status == "fatal":
                return False
            if remaining:
                self.restarts += 1
        return True

    def _add(self, r):
        r.pop("ev", None)
        if r.get("fixture"):
            self.fixture_results.append(r)
        else:
            self.results[r["id"]] = r
        self._print_result(r)

    @staticmethod
    def _watch(proc, drain, last_progress, deadline):
        while True:
            drain()
            if proc.poll() is not None:
                drain()
                return
            if time.monotonic() - last_progress() > deadline:
                # Hard hang: ask faulthandler for the stacks, then kill.
                try:
                    proc.send_signal(signal.SIGUSR1)
                    time.sleep(1.0)
                except OSError:
                    pass
                proc.kill()
                proc.wait()
                proc._conformance_killed = True
                drain()
                return
            time.sleep(0.05)

    def _run_worker(self, ids):
        n = self.restarts
        ids_file = os.path.join(self.tmp, f"ids-{n}.txt")
        ev_file = os.path.join(self.tmp, f"events-{n}.jsonl")
        err_file = os.path.join(self.tmp, f"stderr-{n}.txt")
        with open(ids_file, "w") as f:
            f.write("\n".join(ids) + "\n")
        open(ev_file, "w").close()
        cmd = [sys.executable, os.path.abspath(__file__), "--worker",
               "--suite", self.args.suite, "--loop", self.args.loop,
               "--timeout", str(self.args.timeout),
               "--events", ev_file, "--ids-file", ids_file]
        with open(err_file, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err)
            ev = open(ev_file)
            buf = ""
            current = None
            current_t0 = time.monotonic()
            last_progress = time.monotonic()
            produced = 0
            done = fatal = killed = False
            deadline = self.args.timeout + HARD_GRACE

            def drain():
                nonlocal buf, current, current_t0, last_progress, produced, done, fatal
                buf += ev.read()
                while "\n" in buf:
                    line, buf = buf.split("\n", 1)
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    last_progress = time.monotonic()
                    kind = e.get("ev")
                    if kind == "start":
                        current = e["id"]
                        current_t0 = time.monotonic()
                    elif kind == "result":
                        produced += 1
                        if not e.get("fixture"):
                            current = None
                        self._add(e)
                    elif kind == "ready":
                        self.loop_repr = e.get("loop")
                    elif kind == "done":
                        done = True
                    elif kind == "fatal":
                        fatal = True
                        self.log(f"FATAL: {e['message']}\n{e['traceback']}")

            try:
                self._watch(proc, drain, lambda: last_progress, deadline)
            finally:
                if proc.poll() is None:      # supervisor interrupted
                    proc.kill()
                    proc.wait()
            killed = getattr(proc, "_conformance_killed", False)
            ev.close()

        if fatal:
            return "fatal"
        if done:
            return "ok"
        with open(err_file, "rb") as f:
            tail = f.read()[-TB_LIMIT:].decode("utf-8", "replace")
        rc = proc.returncode
        why = (f"worker killed after {deadline:g}s without progress (hard hang)"
               if killed else f"worker died (exit status {rc}"
               + (f", signal {signal.Signals(-rc).name}" if rc < 0 else "") + ")")
        if current is not None:
            self._add({"id": current, "outcome": "error",
                       "duration": round(time.monotonic() - current_t0, 3),
                       "message": why, "traceback": tail})
        elif produced == 0 and ids:
            # No test even started: blame the first one so we make progress;
            # if nothing at all came out, the runner itself is broken.
            if self.loop_repr is None and not killed:
                self.log(f"FATAL: worker failed before running tests ({why})"
                         f"\n{tail}")
                return "fatal"
            self._add({"id": ids[0], "outcome": "error", "duration": 0.0,
                       "message": why + " before the test started",
                       "traceback": tail})
        else:
            self.log(f"note: {why} between tests; restarting")
        return "crashed"


def summarize(results, fixture_results):
    c = collections.Counter(r["outcome"] for r in results.values())
    run = len(results)
    failed = c["failed"] + c["unexpected_success"]
    errors = c["error"]
    skipped = c["skipped"]
    passed = run - failed - errors - skipped
    s = {"run": run, "passed": passed, "failed": failed, "errors": errors,
         "skipped": skipped}
    fx = sum(1 for r in fixture_results if r["outcome"] in ("error", "failed"))
    if fx:
        s["fixture_errors"] = fx
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=["foundation", "full"],
                    default="foundation")
    ap.add_argument("--loop", default=DEFAULT_LOOP,
                    help="module:factory, called with no arguments "
                         f"(default {DEFAULT_LOOP})")
    ap.add_argument("--json", metavar="OUT", help="write per-test results")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="only tests whose id contains PATTERN (or matches "
                         "it as a glob); repeatable")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--timeout", type=float, default=45.0,
                    help="per-test SIGALRM deadline in seconds (0: none)")
    ap.add_argument("--min-pass", type=int, default=None,
                    help="exit 1 if fewer tests pass")
    ap.add_argument("--known-failures", metavar="FILE", default=None,
                    help="annotate failures listed in FILE and report the "
                         "unlisted ones (default: known_failures-X.Y.txt for "
                         "this Python, next to this script, when the loop is "
                         "ringline's)")
    ap.add_argument("--list", action="store_true",
                    help="print the selected test ids and exit")
    ap.add_argument("--in-process", action="store_true",
                    help="run in this process without crash/hang isolation "
                         "(for debugging)")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the worker event/stderr files (path printed)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--events", help=argparse.SUPPRESS)
    ap.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return worker_main(args)

    factory = LazyFactory(args.loop)
    tests = select(build_suite(args.suite, factory), args.patterns)
    ids = [short_id(t.id()) for t in tests]
    if args.list:
        for tid in ids:
            print(tid)
        print(f"# {len(ids)} tests", file=sys.stderr)
        return 0

    t0 = time.monotonic()
    sup = Supervisor(args, ids)
    try:
        return _run_and_report(args, ids, sup, t0)
    finally:
        if args.keep_tmp:
            print(f"worker files kept in {sup.tmp}")
        else:
            shutil.rmtree(sup.tmp, ignore_errors=True)


def _run_and_report(args, ids, sup, t0):
    if args.in_process:
        events_path = os.path.join(sup.tmp, "events-inproc.jsonl")
        with open(os.path.join(sup.tmp, "ids-inproc.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        args.events = events_path
        args.ids_file = os.path.join(sup.tmp, "ids-inproc.txt")
        rc = worker_main(args)
        with open(events_path) as f:
            for line in f:
                e = json.loads(line)
                if e["ev"] == "result":
                    sup._add(e)
                elif e["ev"] == "ready":
                    sup.loop_repr = e["loop"]
                elif e["ev"] == "fatal":
                    print(f"FATAL: {e['message']}\n{e['traceback']}")
        ok = rc == 0
    else:
        ok = sup.run()
    elapsed = time.monotonic() - t0
    if not ok:
        print(f"runner error: could not run the suite against {args.loop}",
              file=sys.stderr)
        return 2

    summary = summarize(sup.results, sup.fixture_results)
    kf = args.known_failures
    if kf is None and args.loop.split(":")[0] == "ringline" \
            and os.path.exists(KNOWN_FAILURES):
        kf = KNOWN_FAILURES
    unexpected, fixed = [], []
    if kf:
        entries = load_known_failures(kf)
        for r in sup.results.values():
            reason = known_reason(r["id"], entries)
            r["known"] = reason
            if r["outcome"] in FAILING and reason is None:
                unexpected.append(r["id"])
            elif r["outcome"] not in FAILING and reason is not None \
                    and not reason.lower().startswith("flaky") \
                    and r["id"] in {p for p, _ in entries}:
                fixed.append(r["id"])
        for tid in unexpected:
            print(f"UNEXPECTED {tid}: {sup.results[tid]['message'][:150]}")
        for tid in fixed:
            print(f"FIXED?     {tid} passes but is listed in {kf}")
    line = " ".join(f"{k}={v}" for k, v in summary.items())
    print(f"{line}   [suite={args.suite} loop={args.loop} "
          f"{elapsed:.1f}s restarts={sup.restarts}"
          + (f" unexpected={len(unexpected)}" if kf else "") + "]")

    if args.json:
        by_module = collections.OrderedDict()
        for tid in ids:
            by_module.setdefault(tid.split(".", 1)[0], []).append(tid)
        doc = {
            "suite": args.suite, "loop": args.loop, "loop_repr": sup.loop_repr,
            "python": sys.version, "platform": platform.platform(),
            "timeout": args.timeout, "elapsed": round(elapsed, 1),
            "known_failures_file": kf, "unexpected_failures": unexpected,
            "listed_but_passing": fixed,
            "worker_restarts": sup.restarts, "summary": summary,
            "selected": by_module,
            "tests": list(sup.results.values()),
            "fixtures": sup.fixture_results,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if args.min_pass is not None and summary["passed"] < args.min_pass:
        print(f"passed={summary['passed']} < --min-pass {args.min_pass}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The registry of event loops the benchmarks can run on.

Owns: the mapping from a loop's name (``asyncio``, ``uvloop``, ``ringline``,
``ringline-poll``, ...) to how that loop is created and how its version is
reported.  The table is plain data (:data:`LOOPS`), so a new loop, or a new
configuration of an existing one, is one :func:`register_loop` call.

Lifecycle: a spec is resolved lazily, inside the process that will run the
loop (a benchmark server or a micro-benchmark subprocess); the harness itself
never imports a loop implementation, so a loop that cannot be imported or
crashes on creation costs its own cells only.

Invariants: names are unique; :func:`create_loop` returns a new loop that is
not running and not yet set as the current loop.
"""
from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable


@dataclass(frozen=True)
class LoopSpec:
    """How to make one named loop.

    ``factory`` is ``"module:attribute"``; the attribute is called with
    ``kwargs``.  ``distribution`` names the installed package whose version is
    reported (``None`` means the Python version, for the stdlib loop).
    """

    name: str
    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    distribution: str | None = None
    description: str = ""

    def resolve(self) -> Callable[[], asyncio.AbstractEventLoop]:
        module_name, _, attr = self.factory.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        kwargs = dict(self.kwargs)
        return lambda: target(**kwargs)

    def version(self) -> str:
        if self.distribution is None:
            import platform

            return "Python " + platform.python_version()
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "not installed"


LOOPS: dict[str, LoopSpec] = {}

#: Loops measured when ``--loops`` is not given.
DEFAULT_LOOPS = ("asyncio", "uvloop", "ringline")

#: The loop whose ratios against the others the report prints.
SUBJECT_LOOP = "ringline"


def register_loop(spec: LoopSpec) -> LoopSpec:
    """Add (or replace) a loop in the registry."""
    LOOPS[spec.name] = spec
    return spec


for _spec in (
    LoopSpec("asyncio", "asyncio:SelectorEventLoop", distribution=None,
             description="CPython's default selector (epoll) loop"),
    LoopSpec("uvloop", "uvloop:new_event_loop", distribution="uvloop",
             description="uvloop (libuv)"),
    LoopSpec("ringline", "ringline:new_event_loop", distribution="ringline",
             description="ringline, default backend (io_uring when usable)"),
    LoopSpec("ringline-poll", "ringline:new_event_loop", {"backend": "poll"},
             distribution="ringline",
             description="ringline, readiness (poll) backend"),
):
    register_loop(_spec)


def get_loop_spec(name: str) -> LoopSpec:
    try:
        return LOOPS[name]
    except KeyError:
        known = ", ".join(sorted(LOOPS))
        raise ValueError(f"unknown loop {name!r} (known: {known})") from None


def create_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new loop of the named kind (imports the implementation)."""
    return get_loop_spec(name).resolve()()

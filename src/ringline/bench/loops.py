"""The registry of event loops the benchmarks can run on.

Owns: the mapping from a loop's name (``asyncio``, ``uvloop``, ``ringline``,
``ringline-poll``, ...) to how that loop is created and how its version is
reported.  The table is plain data (:data:`LOOPS`), so a new loop, or a new
configuration of an existing one, is one :func:`register_loop` call.

Lifecycle: a spec is resolved lazily, inside the process that will run the
loop (a benchmark server or a micro-benchmark subprocess); the harness itself
never imports a loop implementation, so a loop that cannot be imported or
crashes on creation costs its own cells only.

The field: loops published on PyPI by others (zloop, talyn, blazio, rloop,
uringcore) are registered here too, as ``group="field"`` specs; the bench
extra installs each where its wheels exist for the running Python (an
environment marker per loop).  ``--loops field`` expands, through
:func:`expand_loop_names`, to asyncio, uvloop, ringline and every field loop
whose distribution is installed in the running interpreter.  A spec may set
environment variables (``env``) that the server process applies before the
loop's module is imported (zloop's io_uring backend is chosen that way).

Invariants: names are unique; :func:`create_loop` returns a new loop that is
not running and not yet set as the current loop.
"""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
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
    env: dict[str, str | None] = field(default_factory=dict)
    group: str = "core"

    def apply_env(self) -> None:
        """Set (``None``: unset) this spec's environment variables in this
        process; called before the loop's module is imported."""
        for key, value in self.env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def installed(self) -> bool:
        """Whether the loop's module can be found, without importing it."""
        module_name = self.factory.partition(":")[0]
        try:
            return importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError):
            return False

    def resolve(self) -> Callable[[], asyncio.AbstractEventLoop]:
        self.apply_env()
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


for _spec in (
    LoopSpec("zloop", "zloop:new_event_loop", distribution="zloop", group="field",
             env={"ZLOOP_IO_URING": None},
             description="zloop (Zig), readiness backend (epoll)"),
    LoopSpec("zloop-uring", "zloop:new_event_loop", distribution="zloop", group="field",
             env={"ZLOOP_IO_URING": "completion"},
             description="zloop (Zig), io_uring completion backend"),
    LoopSpec("talyn", "talyn:Loop", distribution="talyn", group="field",
             description="talyn (Zig)"),
    LoopSpec("blazio", "blazio:new_event_loop", distribution="blazio", group="field",
             description="blazio (Zig, zio.ev)"),
    LoopSpec("rloop", "rloop:new_event_loop", distribution="rloop", group="field",
             description="rloop (Rust, mio)"),
    LoopSpec("uringcore", "uringcore:UringEventLoop", distribution="uringcore",
             group="field", description="uringcore (Rust, io_uring)"),
):
    register_loop(_spec)

#: What ``--loops field`` stands for: the regular loops, then the field.
FIELD_BASE = ("asyncio", "uvloop")


def field_loops(installed_only: bool = True) -> list[str]:
    """The field loops (``group="field"``), those installed here by default."""
    return [name for name, spec in LOOPS.items()
            if spec.group == "field" and (not installed_only or spec.installed())]


def expand_loop_names(names: list[str]) -> list[str]:
    """``--loops`` as given, with ``field`` expanded; duplicates dropped, order kept.

    ``field`` is asyncio, uvloop, every installed field loop, then ringline
    (the subject last, as in the default order).
    """
    out: list[str] = []
    for name in names:
        if name == "field":
            group = [*FIELD_BASE, *field_loops(), SUBJECT_LOOP]
        else:
            group = [name]
        for item in group:
            if item not in out:
                out.append(item)
    return out


def get_loop_spec(name: str) -> LoopSpec:
    try:
        return LOOPS[name]
    except KeyError:
        known = ", ".join(sorted(LOOPS))
        raise ValueError(f"unknown loop {name!r} (known: {known})") from None


def create_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new loop of the named kind (imports the implementation)."""
    return get_loop_spec(name).resolve()()

"""The ``ringline`` command: a dispatcher to sub-commands.

Owns: ``ringline <command> [args]`` (console script, entry point
``ringline.__main__:main``) and ``python -m ringline <command> [args]``.
Sub-commands are imported only when called, so ``ringline --help`` works
even when a sub-command's dependencies are missing.

Commands: ``bench`` (``ringline.bench``, see docs/benchmarks.md).

Lifecycle: one ``main()`` per process: it reads the command name, imports
that command's module and returns its exit status.

Invariants: ``--help`` (or no argument) prints the usage and exits 0; an
unknown command prints the usage on stderr and exits 2.
"""
from __future__ import annotations

import sys

_COMMANDS = {
    "bench": ("ringline.bench.cli", "main",
              "side-by-side benchmark against asyncio and uvloop"),
}


def _usage() -> str:
    lines = ["usage: ringline <command> [args...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in _COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in _COMMANDS:
        print(f"ringline: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = _COMMANDS[command]
    import importlib

    func = getattr(importlib.import_module(module_name), func_name)
    return func(rest)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m ringline.bench``: the same as ``ringline bench``.

Owns nothing: one run of :func:`ringline.bench.cli.main` with this process's
arguments (its lifecycle), whose return value is the exit status (the one
invariant: the same status as ``ringline bench``).
"""
import sys

from .cli import main

sys.exit(main())

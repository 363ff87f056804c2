"""``python -m ringline.bench``: the same as ``ringline bench``."""
import sys

from .cli import main

sys.exit(main())

"""Type stubs of ringline.memcache._speedups (the native VALUE scanner)."""
from typing import Any, List, Tuple


def scan_values(buf: bytes, pos: int, max_value: int,
                items: List[Tuple[Any, ...]]) -> int:
    """Append (key, flags, value, cas or None) for each complete VALUE record
    of buf from pos; return the position after the last one consumed."""
    ...

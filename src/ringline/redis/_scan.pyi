"""Type stubs of ringline.redis._scan (the native vetting scanner of RESP2
replies for the hiredis path)."""
from typing import Any


def vetted_end(buf: Any, max_depth: int, max_elements: int, max_bulk: int,
               max_line: int, max_reply_bytes: int, big_bulk: int) -> int:
    """The position after the last complete reply at the start of buf (a
    bytes-like object) that hiredis may parse; 0 when the first is not one."""
    ...

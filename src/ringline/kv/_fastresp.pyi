"""Type stubs of ringline.kv._fastresp (ringline.kv's native request path:
the request scanner and the per-connection receive callback)."""
from typing import Any, Callable, List, Optional, Tuple

from .resp import Limits, ProtocolError


class Scanner:
    """resp.RequestParser's native twin (same contract, bounds and errors)."""
    want: int
    error: Optional[ProtocolError]

    def __init__(self, limits: Limits, *args: Any) -> None: ...

    def feed(self, data: Any) -> Tuple[List[List[bytes]], int]:
        """(complete commands at the start of data, bytes used)."""
        ...


class FastConn(Scanner):
    """One connection's receive callback: GET / plain SET natively (SET not
    on a read-only shard), every other command through run_one (bytes, or a
    gate.Deferred for WAIT), the batch's replies in one gate push; after a
    REPLICATE every receive goes to the session's replication link."""

    def __init__(self, limits: Limits, shard: Any, session: Any, gate: Any,
                 journal: Any, run_one: Callable[[Any, List[bytes]], Any],
                 failure_reply: Callable[[Any, Optional[List[bytes]], BaseException], bytes],
                 need_at_least: Callable[[int], Any], rec_journal: Any = None,
                 rec_hook: Any = None) -> None: ...

    def on_data(self, view: memoryview) -> Any:
        """Bytes consumed, or need_at_least(n)."""
        ...

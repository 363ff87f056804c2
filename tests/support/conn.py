"""Helpers over the native connection API (``ringline.Conn``) shared by the
conn and runtime tests: ``echo`` (a handler sending back every byte it
receives until the peer closes) and ``read_exactly`` (``n`` bytes through
``with_data``; fewer only if the connection ends first).

Only public ``Conn`` methods are used; neither helper closes the connection.
"""


async def echo(conn):
    """Send back everything received on ``conn`` until it ends."""
    def on_data(view):
        conn.send_nowait(bytes(view))
        return len(view)
    while await conn.with_data(on_data):
        pass


async def read_exactly(conn, n):
    """``n`` bytes from ``conn``, or what came before it ended."""
    out = bytearray()

    def take(view):
        k = min(len(view), n - len(out))
        out.extend(view[:k])
        return k
    while len(out) < n:
        if not await conn.with_data(take):
            break
    return bytes(out)

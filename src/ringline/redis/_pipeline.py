"""Explicit Redis pipelines: `Pipeline` and the shaping of its replies.

Owns: `Pipeline` (commands queued by the `Commands` helpers, sent in one
write by `execute()`, optionally wrapped in MULTI/EXEC) and
`_finish_pipeline`, which turns the raw replies of a batch into the list the
caller gets (post-conversions applied, errors raised or kept as values).

Lifecycle: a Pipeline collects ``(encoded command, key, post)`` triples;
`execute()` hands them to its owner's ``_execute_pipeline`` (a `Client`, a
pool, a sharded client or a cluster: each decides where they go) and resets
itself; leaving ``async with`` discards what was not executed.

Invariants: replies come back in the order the commands were queued, one per
command; with ``raise_on_error`` the first error reply is raised only after
every reply arrived (nothing is left unread on the connection); an aborted
EXEC (a watched key changed) raises ResponseError EXECABORT.
"""
from __future__ import annotations

from typing import Any, List, Tuple

from ._commands import Commands
from ._errors import ResponseError
from ._resp import encode_command

__all__ = ["Pipeline"]


class Pipeline(Commands):
    """Commands queued on the pipeline go out in one write by execute(),
    which returns their replies in order. ``async with`` runs nothing by
    itself: call ``await p.execute()`` (leaving the block discards what was
    not executed). With transaction=True the batch is wrapped in
    MULTI/EXEC."""

    __slots__ = ("_client", "_transaction", "_cmds")

    def __init__(self, client: Any, transaction: bool = False) -> None:
        self._client = client
        self._transaction = transaction
        self._cmds: List[Tuple[bytes, Any, Any]] = []

    def _dispatch(self, data: bytes, key: Any, post: Any) -> "Pipeline":
        self._cmds.append((data, key, post))
        return self

    def command(self, *args: Any) -> "Pipeline":
        """Queue any command."""
        self._cmds.append((encode_command(args), None, None))
        return self

    execute_command = command

    def __len__(self) -> int:
        return len(self._cmds)

    def reset(self) -> None:
        self._cmds = []

    async def execute(self, raise_on_error: bool = True) -> list:
        """Send everything queued; the list of replies (converted like the
        helpers do). With raise_on_error the first error reply is raised
        after every reply arrived; otherwise errors are in the list."""
        cmds, self._cmds = self._cmds, []
        if not cmds:
            return []
        return await self._client._execute_pipeline(cmds, self._transaction, raise_on_error)

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._cmds = []


_MULTI = encode_command((b"MULTI",))
_EXEC = encode_command((b"EXEC",))


def _finish_pipeline(cmds: list, replies: list, transaction: bool, raise_on_error: bool) -> list:
    if transaction:
        head = replies[:-1]
        for r in head:
            if isinstance(r, BaseException):
                if raise_on_error:
                    raise r
        replies = replies[-1]
        if isinstance(replies, BaseException):
            raise replies
        if replies is None:
            raise ResponseError("EXEC aborted: a watched key changed", "EXECABORT")
    out = []
    first_error = None
    for (_data, _key, post), reply in zip(cmds, replies):
        if isinstance(reply, BaseException):
            if first_error is None:
                first_error = reply
            out.append(reply)
        elif post is not None:
            try:
                out.append(post(reply))
            except Exception as exc:                  # pragma: no cover
                out.append(exc)
        else:
            out.append(reply)
    if first_error is not None and raise_on_error:
        raise first_error
    return out

"""Messages between the portal and the handler.

Every message is a small frozen record that carries the ``sessid`` it is
about. Input and output use Evennia's commandtuple shape: a command name with
positional and keyword arguments, so ``text=(["look"], {})`` arrives as
``DataIn(sessid, "text", ("look",), {})``.

Portal -> handler: :class:`Connect`, :class:`DataIn`, :class:`Disconnect`,
:class:`SessionUpdate`. Handler -> portal: :class:`DataOut`,
:class:`Disconnect`, :class:`SessionUpdate`.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

SyncData = dict[str, Any]


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, list):
        return tuple(value)
    return (value,)


@frozen
class Connect:
    """A new connection, with the sync data of its portal session."""

    sessid: int
    sync_data: SyncData


@frozen
class DataIn:
    """Input from a client: ``cmdname(*args, **kwargs)``."""

    sessid: int
    cmdname: str
    args: tuple[Any, ...] = field(default=(), converter=_as_tuple)
    kwargs: dict[str, Any] = field(factory=dict)


@frozen
class DataOut:
    """Output for a client: ``text``, ``prompt`` or an out-of-band command."""

    sessid: int
    cmdname: str
    args: tuple[Any, ...] = field(default=(), converter=_as_tuple)
    kwargs: dict[str, Any] = field(factory=dict)


@frozen
class Disconnect:
    """Portal -> handler: the connection is gone.

    Handler -> portal: close the connection, showing ``reason`` first.
    """

    sessid: int
    reason: str = ""


@frozen
class SessionUpdate:
    """Some of a session's sync data changed on the sending side."""

    sessid: int
    sync_data: SyncData


PortalMessage = Connect | DataIn | Disconnect | SessionUpdate
ServerMessage = DataOut | Disconnect | SessionUpdate

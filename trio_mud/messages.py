"""Messages between the portal and the handler.

Every message is a small frozen record that carries the ``sessid`` it is
about. Input and output use Evennia's commandtuple shape: a command name with
positional and keyword arguments, so ``text=(["look"], {})`` arrives as
``DataIn(sessid, "text", ("look",), {})``.

Portal -> handler: :class:`Connect`, :class:`DataIn`, :class:`Disconnect`,
:class:`SessionUpdate`, and the controls :class:`Pause` and :class:`Resume`.
Handler -> portal: :class:`DataOut`, :class:`Broadcast`, :class:`Disconnect`,
:class:`SessionUpdate`, and the controls :class:`Done`, :class:`Paused`,
:class:`Loaded` and :class:`ReloadRequest`.

Every message the portal sends a handler carries a ``txid``. The handler
answers each with :class:`Done` once it has handled it, and tags the output it
produced meanwhile with the same ``txid``; the portal holds such output until
the ``Done`` arrives. So if a handler dies half-way, the portal can drop what
it said and give the input to the next handler: nothing is lost, nothing is
said twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attrs import field, frozen

SyncData = dict[str, Any]


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, list):
        return tuple(value)
    return (value,)


def _int_tuple(value: Iterable[int]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else tuple(value)


@frozen
class Connect:
    """A new connection, with the sync data of its portal session."""

    sessid: int
    sync_data: SyncData
    txid: int = 0


@frozen
class DataIn:
    """Input from a client: ``cmdname(*args, **kwargs)``."""

    sessid: int
    cmdname: str
    args: tuple[Any, ...] = field(default=(), converter=_as_tuple)
    kwargs: dict[str, Any] = field(factory=dict)
    txid: int = 0


@frozen
class DataOut:
    """Output for a client: ``text``, ``prompt`` or an out-of-band command.

    ``txid`` names the portal message whose handling produced it (0: none).
    """

    sessid: int
    cmdname: str
    args: tuple[Any, ...] = field(default=(), converter=_as_tuple)
    kwargs: dict[str, Any] = field(factory=dict)
    txid: int = 0


@frozen
class Broadcast:
    """Output for many clients at once: the same ``cmdname(*args, **kwargs)``.

    One message, however many recipients: it travels the handler's queues
    and the portal-server link once, and the portal renders it once per
    distinct way of showing it (colour level, screen reader, encoding,
    protocol), then queues the bytes to each connection. A recipient that
    has gone is skipped; one that is too slow is disconnected alone.
    """

    sessids: tuple[int, ...] = field(converter=_int_tuple)
    cmdname: str
    args: tuple[Any, ...] = field(default=(), converter=_as_tuple)
    kwargs: dict[str, Any] = field(factory=dict)
    txid: int = 0
    #: What the portal rendered for each kind of client (never sent).
    rendered: dict[Any, Any] = field(factory=dict, eq=False, repr=False, init=False)


@frozen
class Disconnect:
    """Portal -> handler: the connection is gone.

    Handler -> portal: close the connection, showing ``reason`` first.
    """

    sessid: int
    reason: str = ""
    txid: int = 0


@frozen
class SessionUpdate:
    """Some of a session's sync data changed on the sending side."""

    sessid: int
    sync_data: SyncData
    txid: int = 0


# -- controls --------------------------------------------------------------------------


@frozen
class Done:
    """Handler -> portal: the message ``txid`` has been handled.

    ``sync_data`` carries what that changed in the session's counters.
    """

    txid: int
    sessid: int = 0
    sync_data: SyncData = field(factory=dict)


@frozen
class Pause:
    """Portal -> handler: finish everything you have, save, then say Paused."""


@frozen
class Paused:
    """Handler -> portal: everything sent before Pause is handled and saved."""


@frozen
class Resume:
    """Portal -> handler: the reload failed; carry on serving."""


@frozen
class Loaded:
    """Handler -> portal: the snapshot is loaded; ready to take over."""


@frozen
class ReloadRequest:
    """Handler -> portal: an admin (``sessid``) asked for a reload."""

    sessid: int = 0


@frozen
class ShutdownRequest:
    """Handler -> portal: an admin (``sessid``) asked for a shutdown."""

    sessid: int = 0
    message: str | None = None


@frozen
class BanList:
    """Handler -> portal: the addresses and networks now banned (all of them).

    The portal refuses their connections at accept time, before any telnet
    negotiation. A new handler sends it as soon as it has loaded.
    """

    addresses: tuple[str, ...] = ()


@frozen
class Counters:
    """Handler -> portal: how much some counters grew since the last one
    (``failed_logins``, ``input_errors``, ...), for the metrics."""

    values: dict[str, int] = field(factory=dict)


SNAPSHOT_VERSION = 1


@frozen
class Snapshot:
    """Every live session's sync data, for a handler that is starting."""

    sessions: tuple[SyncData, ...] = ()
    version: int = SNAPSHOT_VERSION


#: The version of the portal-server link (:mod:`trio_mud.wire`).
LINK_VERSION = 2


@frozen
class Hello:
    """Server process -> portal, first thing: code imported, database open.

    ``version`` is the link version the server process speaks.
    """

    pid: int
    version: int = LINK_VERSION


PortalMessage = Connect | DataIn | Disconnect | SessionUpdate
ServerMessage = DataOut | Broadcast | Disconnect | SessionUpdate
ToHandler = PortalMessage | Pause | Resume
FromHandler = (
    ServerMessage | Done | Paused | Loaded | ReloadRequest | ShutdownRequest | BanList | Counters
)


def describe(message: object) -> str:
    """A message for the log: its kind, session and command, never its data.

    Input can hold a password (typed at a prompt, or GMCP ``Char.Login``),
    so no log line shows what a client sent, at any level.
    """
    kind = type(message).__name__
    sessid = getattr(message, "sessid", None)
    cmdname = getattr(message, "cmdname", None)
    parts = [kind]
    if sessid is not None:
        parts.append(f"sessid={sessid}")
    if cmdname is not None:
        parts.append(f"cmdname={str(cmdname)[:64]!r}")
    return " ".join(parts)


def normalize(kwargs: dict[str, Any]) -> list[tuple[str, tuple[tuple[Any, ...], dict[str, Any]]]]:
    """Evennia's loose ``cmdname=value`` forms, as ``(args, kwargs)`` pairs.

    ``text="hi"``, ``text=["hi"]`` and ``text=(["hi"], {})`` all mean the same.
    """
    result = []
    for cmdname, value in kwargs.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
            args, cmd_kwargs = value
            args = tuple(args) if isinstance(args, list | tuple) else (args,)
        elif isinstance(value, list | tuple):
            args, cmd_kwargs = tuple(value), {}
        else:
            args, cmd_kwargs = (value,), {}
        result.append((cmdname, (args, dict(cmd_kwargs))))
    return result

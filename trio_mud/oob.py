"""Out-of-band input functions every handler has: client options and MSDP.

GMCP and MSDP reach the handler as Evennia commandtuples (see
:mod:`trio_mud.mudtelnet`). This module answers the ones a server core should
answer whatever the game: ``client_options`` (GMCP ``Core.Hello`` and the web
client's settings), ``core_supports_*`` (already tracked by the portal), and
MSDP's ``LIST``, ``REPORT``, ``UNREPORT``, ``SEND`` and ``RESET`` over the
variables a game registers with :class:`MsdpVariables`.

Outbound, MSDP values go out as the ``msdp`` command, which the portal sends
only as MSDP. A game sends GMCP packages (``Room.Info``) itself; to keep to
one encoding per message, :meth:`MsdpVariables.changed` sends nothing
unasked to a client that has GMCP on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class OOBSession(Protocol):
    """What these input functions use of a session (the handler's ServerSession)."""

    protocol_flags: dict[str, Any]
    server_data: dict[str, Any]

    def sync(self) -> None:
        """Send the session's sync data to the portal."""
        ...

    def data_out(self, **kwargs: Any) -> None:
        """Send output to the client (``cmdname=(args, kwargs)``)."""
        ...


#: An input function: ``func(session, *args, **kwargs)``, plain or async.
InputFunc = Callable[..., Awaitable[None] | None]

Getter = Callable[[Any], Any]

MSDP_COMMANDS = ["LIST", "REPORT", "UNREPORT", "SEND", "RESET"]
MSDP_LISTS = [
    "COMMANDS",
    "LISTS",
    "CONFIGURABLE_VARIABLES",
    "REPORTABLE_VARIABLES",
    "REPORTED_VARIABLES",
    "SENDABLE_VARIABLES",
]
MSDP_CONFIGURABLE = ["CLIENT_NAME", "CLIENT_VERSION", "XTERM_256_COLORS", "UTF_8", "ANSI_COLORS"]

#: Flags a client may set through ``client_options`` (lower-case keys as the
#: web client sends them), and how values are read.
CLIENT_OPTIONS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "ansi": ("ANSI", bool),
    "xterm256": ("XTERM256", bool),
    "truecolor": ("TRUECOLOR", bool),
    "utf-8": ("UTF-8", bool),
    "screenreader": ("SCREENREADER", bool),
    "nocolor": ("NOCOLOR", bool),
    "raw": ("RAW", bool),
    "localecho": ("LOCALECHO", bool),
    "inputdebug": ("INPUTDEBUG", bool),
    "screenwidth": ("SCREENWIDTH", lambda v: {0: max(1, int(v))}),
    "screenheight": ("SCREENHEIGHT", lambda v: {0: max(1, int(v))}),
    "client": ("CLIENTNAME", lambda v: str(v)[:64]),
    "version": ("CLIENTVERSION", lambda v: str(v)[:64]),
}


def client_options(session: OOBSession, *args: Any, **kwargs: Any) -> None:
    """Set protocol flags the client tells us about (Core.Hello, web client).

    Unknown or malformed options are ignored; the portal's copy of the
    session is updated so that rendering follows at once. With nothing to
    set, the answer is a ``client_options`` message with the current
    options (what Evennia's web client asks for to fill its settings).
    """
    if not args and not kwargs:
        flags = session.protocol_flags
        current: dict[str, Any] = {}
        for key, (flag, _) in CLIENT_OPTIONS.items():
            value = flags.get(flag)
            if isinstance(value, dict):  # SCREENWIDTH is {0: width}
                value = value.get(0, next(iter(value.values()), None))
            if value is not None:
                current[key] = value
        session.data_out(client_options=((), current))
        return
    changed: dict[str, Any] = {}
    for key, value in kwargs.items():
        option = CLIENT_OPTIONS.get(key.lower())
        if option is None:
            continue
        flag, convert = option
        try:
            changed[flag] = convert(value)
        except (TypeError, ValueError):
            continue
    if changed:
        session.protocol_flags.update(changed)
        session.sync()


def _ignore(session: OOBSession, *args: Any, **kwargs: Any) -> None:
    """The portal already acted on this (GMCP Core.Supports.*)."""


class MsdpVariables:
    """The MSDP variables a game offers, and who asked to hear of them.

    Register a variable with a getter that reads its value for a session;
    call :meth:`changed` when it may have changed. Which variables a session
    REPORTs is kept in its ``server_data`` (so it is synced with the portal).
    """

    def __init__(self) -> None:
        self.reportable: dict[str, Getter] = {}
        self.sendable: dict[str, Getter] = {}

    def add(self, name: str, getter: Getter, *, reportable: bool = True) -> None:
        """Offer ``name`` to MSDP clients (for SEND, and REPORT if reportable)."""
        self.sendable[name.upper()] = getter
        if reportable:
            self.reportable[name.upper()] = getter

    def inputfuncs(self) -> dict[str, InputFunc]:
        """The MSDP input functions (LIST, REPORT, UNREPORT, SEND, RESET) for a handler."""
        return {
            "msdp_list": self.msdp_list,
            "msdp_report": self.msdp_report,
            "msdp_unreport": self.msdp_unreport,
            "msdp_send": self.msdp_send,
            "msdp_reset": self.msdp_reset,
            "msdp_var": _ignore,
        }

    @staticmethod
    def reported(session: OOBSession) -> list[str]:
        value = session.server_data.get("msdp_reported")
        return list(value) if isinstance(value, list) else []

    def _set_reported(self, session: OOBSession, names: list[str]) -> None:
        session.server_data["msdp_reported"] = names
        session.sync()

    def _values(self, session: OOBSession, names: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in names:
            getter = self.sendable.get(name)
            if getter is not None:
                values[name] = getter(session)
        return values

    def changed(self, session: OOBSession, *names: str) -> None:
        """Send these variables' values if the session REPORTs them.

        Sent only to MSDP clients without GMCP: a GMCP client gets the same
        news as GMCP packages from the game, never twice.
        """
        flags = session.protocol_flags
        if not flags.get("MSDP") or flags.get("GMCP"):
            return
        reported = set(self.reported(session))
        values = self._values(session, [n.upper() for n in names if n.upper() in reported])
        if values:
            session.data_out(msdp=((), values))

    # -- MSDP commands ------------------------------------------------------------

    def msdp_list(self, session: OOBSession, *names: str, **kwargs: Any) -> None:
        """MSDP ``LIST``: the lists of commands and variables a client may ask for."""
        lists = {
            "COMMANDS": MSDP_COMMANDS,
            "LISTS": MSDP_LISTS,
            "CONFIGURABLE_VARIABLES": MSDP_CONFIGURABLE,
            "REPORTABLE_VARIABLES": sorted(self.reportable),
            "REPORTED_VARIABLES": self.reported(session),
            "SENDABLE_VARIABLES": sorted(self.sendable),
        }
        answer = {name.upper(): lists[name.upper()] for name in names if name.upper() in lists}
        if answer:
            session.data_out(msdp=((), answer))

    def msdp_report(self, session: OOBSession, *names: str, **kwargs: Any) -> None:
        """MSDP ``REPORT``: send these variables now and whenever they change."""
        wanted = [n.upper() for n in names if n.upper() in self.reportable]
        reported = self.reported(session)
        new = reported + [n for n in wanted if n not in reported]
        if new != reported:
            self._set_reported(session, new)
        # REPORT answers with the current value at once.
        values = self._values(session, wanted)
        if values:
            session.data_out(msdp=((), values))

    def msdp_unreport(self, session: OOBSession, *names: str, **kwargs: Any) -> None:
        """MSDP ``UNREPORT``: stop reporting these variables."""
        dropped = {n.upper() for n in names}
        reported = self.reported(session)
        kept = [n for n in reported if n not in dropped]
        if kept != reported:
            self._set_reported(session, kept)

    def msdp_send(self, session: OOBSession, *names: str, **kwargs: Any) -> None:
        """MSDP ``SEND``: these variables' values, once."""
        values = self._values(session, [n.upper() for n in names])
        if values:
            session.data_out(msdp=((), values))

    def msdp_reset(self, session: OOBSession, *names: str, **kwargs: Any) -> None:
        """MSDP ``RESET``: forget what was reported."""
        if any(n.upper() in ("REPORTABLE_VARIABLES", "REPORTED_VARIABLES") for n in names):
            self._set_reported(session, [])


def default_inputfuncs(msdp: MsdpVariables) -> dict[str, InputFunc]:
    """What every handler answers unless the game gives its own."""
    return {
        "client_options": client_options,
        "core_supports_set": _ignore,
        "core_supports_add": _ignore,
        "core_supports_remove": _ignore,
        **msdp.inputfuncs(),
    }

"""The session: one connected client, as Evennia models it.

Portal and handler each hold their own copy of a session (``PortalSession`` in
:mod:`trio_mud.nursery_portal`, ``ServerSession`` in :mod:`trio_mud.handler`).
They stay in step by exchanging :meth:`Session.get_sync_data` dictionaries;
the portal's copy is the one that survives a restart of the handler.
"""

from __future__ import annotations

import time
from typing import Any

from attrs import Factory, define, field

from .settings import DEFAULT_SESSION_SYNC_ATTRS


def default_protocol_flags() -> dict[str, Any]:
    """The flags every session starts with, before the client says more."""
    return {
        "ENCODING": "utf-8",
        "SCREENREADER": False,
        "INPUTDEBUG": False,
        "RAW": False,
        "NOCOLOR": False,
        "LOCALECHO": False,
    }


@define(eq=False)
class Session:
    """State of one connection that both portal and handler know.

    Fields are the ones of Evennia's ``Session``; ``sync_attrs`` names those
    that travel between portal and handler (the configured
    ``session_sync_attrs``).
    """

    protocol_key: str = "telnet"
    address: str = ""
    sessid: int = 0
    #: A hex key some protocols use.
    suid: str | None = None
    #: Client-side session id, if the client gave one (websocket resume).
    csessid: str | None = None
    #: Database id of the account, once logged in.
    uid: int | None = None
    uname: str | None = None
    logged_in: bool = False
    #: Database id of the puppeted character, if any.
    puid: int | None = None
    conn_time: float = Factory(time.time)
    cmd_last_visible: float = Factory(lambda self: self.conn_time, takes_self=True)
    cmd_last: float = Factory(lambda self: self.conn_time, takes_self=True)
    cmd_total: int = 0
    protocol_flags: dict[str, Any] = Factory(default_protocol_flags)
    server_data: dict[str, Any] = Factory(dict)
    sync_attrs: tuple[str, ...] = field(default=DEFAULT_SESSION_SYNC_ATTRS, kw_only=True)

    def get_sync_data(self) -> dict[str, Any]:
        """The attributes named in ``sync_attrs`` that this session has.

        Mutable values are copied, so that the caller may send the result
        elsewhere while this session goes on changing.
        """
        data: dict[str, Any] = {}
        for name in self.sync_attrs:
            if hasattr(self, name):
                value = getattr(self, name)
                if isinstance(value, dict):
                    value = dict(value)
                data[name] = value
        return data

    def load_sync_data(self, sessdata: dict[str, Any]) -> None:
        """Set attributes from a :meth:`get_sync_data` dictionary.

        A ``protocol_flags`` dictionary updates the existing flags rather
        than replacing them, so a partial update keeps the other flags.
        """
        for name, value in sessdata.items():
            if (
                name == "protocol_flags"
                and isinstance(value, dict)
                and isinstance(self.protocol_flags, dict)
            ):
                self.protocol_flags.update(value)
            else:
                setattr(self, name, value)

    def update_session_counters(self, idle: bool = False, now: float | None = None) -> None:
        """Record that the client sent a command, as Evennia counts it.

        ``cmd_last`` (used for idle timeouts) moves on every input.
        ``cmd_total`` and the player-visible ``cmd_last_visible`` move only for
        real commands, not for keepalives (``idle=True``).
        """
        self.cmd_last = time.time() if now is None else now
        if not idle:
            self.cmd_total += 1
            self.cmd_last_visible = self.cmd_last

    # -- hooks that each side fills in ----------------------------------------

    def at_sync(self) -> None:
        """Called once the session has been fully synced from the other side."""

    def disconnect(self, reason: str | None = None) -> None:
        """Close this session, telling the client ``reason``."""

    def data_out(self, **kwargs: Any) -> None:
        """Send ``cmdname=(args, kwargs)`` data towards the client."""

    def data_in(self, **kwargs: Any) -> None:
        """Pass ``cmdname=(args, kwargs)`` data from the client to the game."""

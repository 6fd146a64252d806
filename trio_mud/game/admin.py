"""The starter game's admin commands: who (in full), boot, wall, ban, unban, shutdown.

Only accounts made admin (``python -m trio_mud --make-admin NAME``) may use
them (they carry the ``admin`` permission of :mod:`trio_mud.commands`);
anyone else is answered as for a command that does not exist, so the
commands stay unknown to them. Every admin action is logged with who did it.

Bans are kept in the database and so survive reloads and restarts: address
and network bans go to the portal, which refuses those connections at
accept time with one line (``ban_message``); account bans are checked at
login.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .. import markup
from ..admission import AddressSet
from ..handler import ServerSession
from .security import ban_target
from .store import AccountRecord, name_key

if TYPE_CHECKING:
    from .game import Game

log = logging.getLogger("trio_mud.admin")

ADMIN_HELP = {
    "who": "who\n  (admins) Every session: name, address, protocol, client, idle"
    " and connected time.",
    "boot": "boot <name|sessid> [reason]\n  Disconnect a player (or a session at the"
    " login screen).",
    "wall": "wall <message>\n  Announce something to everyone connected.",
    "ban": "ban [<name|address|network> [reason]]\n  Ban an account, an address or a network"
    " (203.0.113.0/24); alone, list the bans.",
    "unban": "unban <name|address|network>\n  Lift a ban.",
    "shutdown": "shutdown [message]\n  Stop the server gracefully, saying goodbye to everyone.",
    "reload": "reload\n  Restart the game with fresh code and settings; nobody is disconnected.",
}

AdminFunc = Callable[[ServerSession, str], Awaitable[None] | None]


def is_admin(session: ServerSession) -> bool:
    """Whether ``session``'s account is an admin."""
    account = session.account
    return isinstance(account, AccountRecord) and account.is_admin


class Admin:
    """The admin commands, over the game they act on."""

    def __init__(self, game: Game) -> None:
        self.game = game

    def commands(self) -> dict[str, AdminFunc]:
        """The commands by name (the game gives them the ``admin`` permission)."""
        return {
            "boot": self.cmd_boot,
            "wall": self.cmd_wall,
            "ban": self.cmd_ban,
            "unban": self.cmd_unban,
            "shutdown": self.cmd_shutdown,
        }

    @property
    def _sessions(self) -> dict[int, ServerSession]:
        handler = self.game.handler
        return {} if handler is None else handler.sessions

    def who(self, session: ServerSession) -> None:
        """The admin's ``who``: every session, logged in or not."""
        now = time.time()
        rows = []
        for other in sorted(self._sessions.values(), key=lambda s: s.sessid):
            flags = other.protocol_flags
            rows.append(
                f"  {other.sessid:>5} {(other.uname or '(login screen)'):<20} "
                f"{other.address:<39} {other.protocol_key:<11} "
                f"{str(flags.get('CLIENTNAME', '?'))[:20]:<20} "
                f"idle {duration(now - other.cmd_last_visible):>4}  "
                f"on {duration(now - other.conn_time):>4}"
            )
        header = (
            f"Sessions ({len(rows)}):\n  {'id':>5} {'name':<20} {'address':<39} "
            f"{'protocol':<11} {'client':<20}"
        )
        session.msg(markup.escape("\n".join([header, *rows])))

    def _find(self, target: str) -> ServerSession | None:
        if target.isdigit():
            return self._sessions.get(int(target))
        wanted = name_key(target)
        for other in self._sessions.values():
            if other.uname is not None and name_key(other.uname) == wanted:
                return other
        return None

    def cmd_boot(self, session: ServerSession, args: str) -> None:
        """``boot <name|sessid> [reason]``: disconnect a session, saying who and why."""
        target, _, reason = args.partition(" ")
        if not target:
            session.msg("Usage: boot <name|sessid> [reason]")
            return
        victim = self._find(target)
        if victim is None:
            session.msg(f"No session {target!r} is connected.")
            return
        if victim is session:
            session.msg("You cannot boot yourself; use quit.")
            return
        who = victim.uname or f"session {victim.sessid}"
        log.warning(
            "admin %s booted %s (sessid %d, %s): %s",
            session.uname,
            who,
            victim.sessid,
            victim.address,
            reason.strip() or "no reason given",
        )
        text = f"You have been booted by {session.uname}."
        if reason.strip():
            text += f" Reason: {reason.strip()}"
        victim.disconnect(markup.escape(text))
        session.msg(f"Booted {who}.")

    def cmd_wall(self, session: ServerSession, args: str) -> None:
        """``wall <message>``: an announcement to every session."""
        message = args.strip()
        if not message:
            session.msg("Usage: wall <message>")
            return
        log.warning("admin %s announced: %s", session.uname, message)
        handler = self.game.handler
        if handler is not None:
            handler.broadcast(
                list(self._sessions.values()),
                f"|wAnnouncement from {session.uname}:|n {markup.escape(message)}",
            )

    async def cmd_ban(self, session: ServerSession, args: str) -> None:
        """``ban [<name|address|network> [reason]]``: ban, or list the bans."""
        target, _, reason = args.strip().partition(" ")
        if not target:
            await self._list_bans(session)
            return
        parsed = ban_target(target)
        if parsed is None:
            session.msg(f"{target!r} is neither an account name nor an address or network.")
            return
        kind, value = parsed
        ban = await self.game.store.add_ban(kind, value, reason.strip(), session.uname or "?")
        if ban is None:
            session.msg(f"{target} is banned already.")
            return
        log.warning(
            "admin %s banned %s %s: %s", session.uname, kind, value, ban.reason or "no reason given"
        )
        await self.game.load_bans()
        # Whoever is connected as that account or from those addresses goes now.
        banned = AddressSet([value]) if kind == "address" else None
        for other in list(self._sessions.values()):
            hit = (
                other.address in banned
                if banned is not None
                else other.uname is not None and name_key(other.uname) == value
            )
            if hit and other is not session:
                other.disconnect(self.game.settings.ban_message)
        session.msg(f"Banned {kind} {value}.")

    async def _list_bans(self, session: ServerSession) -> None:
        bans = await self.game.store.bans()
        if not bans:
            session.msg("Nobody is banned.")
            return
        lines = [f"Bans ({len(bans)}):"]
        for ban in bans:
            when = time.strftime("%Y-%m-%d", time.gmtime(ban.created_at))
            lines.append(
                f"  {ban.kind:<7} {ban.value:<24} by {ban.banned_by} on {when}"
                + (f": {ban.reason}" if ban.reason else "")
            )
        session.msg(markup.escape("\n".join(lines)))

    async def cmd_unban(self, session: ServerSession, args: str) -> None:
        """``unban <name|address|network>``: lift a ban."""
        parsed = ban_target(args.strip())
        if parsed is None:
            session.msg("Usage: unban <name|address|network>")
            return
        kind, value = parsed
        if not await self.game.store.remove_ban(kind, value):
            session.msg(f"{args.strip()} is not banned.")
            return
        log.warning("admin %s lifted the ban on %s %s", session.uname, kind, value)
        await self.game.load_bans()
        session.msg(f"Unbanned {kind} {value}.")

    def cmd_shutdown(self, session: ServerSession, args: str) -> None:
        """``shutdown [message]``: ask the portal for a graceful shutdown."""
        log.warning("admin %s asked for a shutdown", session.uname)
        handler = self.game.handler
        if handler is None:
            session.msg("This server cannot be shut down from here.")
            return
        session.msg("Shutting down...")
        handler.request_shutdown(session, args.strip() or None)


def duration(seconds: float) -> str:
    """``seconds`` in the largest whole unit: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"

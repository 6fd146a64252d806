"""The handler: the one task that owns game state.

It reads the portal's inbound channel, keeps a :class:`ServerSession` for
every connection, and calls an *input function* for each input by its command
name (``text`` for typed lines, other names for out-of-band data). Output goes
back through the portal's ``send_nowait``, which never blocks: a client that
cannot keep up is the portal's problem, never the handler's.

An input function is ``func(session, *args, **kwargs)``. It may be a plain
function or an async one. Async input functions (the ones that hash a password
or touch the database) run as child tasks, so other sessions carry on; the
inputs of the *same* session wait until it finishes, so every session's
commands run in the order they were typed.

Error handling:
    An exception from an input function or hook is logged with the sessid;
    that session is told something went wrong, and nothing else is affected.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import trio
from attrs import define, field, frozen

from .generations import PortalLink, queued_nowait
from .messages import (
    BanList,
    Broadcast,
    Connect,
    Counters,
    DataIn,
    DataOut,
    Disconnect,
    Done,
    FromHandler,
    Loaded,
    Pause,
    Paused,
    PortalMessage,
    ReloadRequest,
    Resume,
    SessionUpdate,
    ShutdownRequest,
    SyncData,
    describe,
    normalize,
)
from .oob import InputFunc as InputFunc
from .oob import MsdpVariables, default_inputfuncs
from .session import Session
from .settings import Settings

log = logging.getLogger("trio_mud.handler")

#: The portal message being handled (its txid tags the output it causes).
_TXID: ContextVar[int] = ContextVar("trio_mud_txid", default=0)


class Attachable(Protocol):
    """A portal, in this process or reached over a link."""

    async def attach(self) -> PortalLink:
        """Hand this handler its link (see :meth:`trio_mud.generations.Generations.attach`)."""
        ...


ERROR_MESSAGE = "Something went wrong running that command. It has been logged."


class HandlerHooks:
    """What a game tells the handler about sessions coming and going.

    Subclass it and override what you need; every method may be left alone.
    """

    def at_session_connect(self, session: ServerSession) -> None:
        """A new client connected (show it the connection screen)."""

    def at_session_disconnect(self, session: ServerSession, reason: str) -> None:
        """A session ended, whichever side ended it."""

    def at_session_sync(self, session: ServerSession) -> None:
        """A session was rebuilt from a snapshot after a handler restart."""

    async def at_handler_start(self, sessions: Sequence[ServerSession]) -> None:
        """The sessions of a snapshot are loaded; link them up (may await).

        The default calls :meth:`at_session_sync` for each.
        """
        for session in sessions:
            self.at_session_sync(session)

    async def at_handler_pause(self) -> None:
        """Everything given so far is handled: save what must survive."""


@define(eq=False)
class ServerSession(Session):
    """The handler's copy of a session, with what the game hangs on it."""

    handler: Handler | None = field(default=None, kw_only=True, repr=False)
    #: The game's account and puppet objects (their ids are ``uid``/``puid``).
    account: Any = field(default=None, kw_only=True)
    puppet: Any = field(default=None, kw_only=True)
    #: Scratch space for the game, not synced (Evennia's ``ndb``).
    ndb: dict[str, Any] = field(factory=dict, kw_only=True)
    _pending: deque[tuple[str, tuple[Any, ...], dict[str, Any], int]] = field(
        factory=deque, kw_only=True, repr=False
    )
    _busy: bool = field(default=False, kw_only=True, repr=False)

    @property
    def connected(self) -> bool:
        """False once the session has ended (check it after an ``await``)."""
        return self.handler is not None

    def data_out(self, **kwargs: Any) -> None:
        """Send ``cmdname=(args, kwargs)`` to the client. Never blocks."""
        if self.handler is None:
            return
        txid = _TXID.get()
        for cmdname, (args, cmd_kwargs) in normalize(kwargs):
            self.handler.send_nowait(DataOut(self.sessid, cmdname, args, cmd_kwargs, txid))

    def msg(self, text: str | None = None, **kwargs: Any) -> None:
        """Evennia's shortcut: ``session.msg("Hello")``."""
        if text is not None:
            kwargs["text"] = text
        self.data_out(**kwargs)

    def data_in(self, **kwargs: Any) -> None:
        """Run input for this session, as if the client had sent it."""
        if self.handler is None:
            return
        for cmdname, (args, cmd_kwargs) in normalize(kwargs):
            self.handler._queue_input(self, cmdname, args, cmd_kwargs, 0)

    def disconnect(self, reason: str | None = None) -> None:
        """Close the client's connection, showing ``reason`` first."""
        if self.handler is not None:
            self.handler.disconnect(self, reason or "")

    def sync(self) -> None:
        """Tell the portal this session's sync data (after login, say)."""
        if self.handler is not None:
            self.handler.send_nowait(SessionUpdate(self.sessid, self.get_sync_data()))

    def at_sync(self) -> None:
        if self.handler is not None:
            self.handler._call_hook("at_session_sync", self)


@frozen
class HandlerStatistics:
    """A snapshot of the handler's counters."""

    sessions: int
    inputs_handled: int
    input_errors: int
    busy_sessions: int


class Handler:
    """Dispatches every session's input to input functions.

    Args:
        settings: the server's configuration.
        inputfuncs: command name -> input function. ``"text"`` receives typed
            lines; ``"default"``, if given, receives anything unnamed. They
            go on top of :func:`trio_mud.oob.default_inputfuncs` (client
            options, GMCP Core.Supports, MSDP), which they may replace.
        hooks: session lifecycle callbacks (a :class:`HandlerHooks`).
    """

    def __init__(
        self,
        settings: Settings,
        inputfuncs: Mapping[str, InputFunc],
        *,
        hooks: HandlerHooks | None = None,
    ) -> None:
        self.settings = settings
        #: MSDP variables the game offers (see :class:`trio_mud.oob.MsdpVariables`).
        self.msdp = MsdpVariables()
        self.inputfuncs = {**default_inputfuncs(self.msdp), **inputfuncs}
        self.hooks = hooks if hooks is not None else HandlerHooks()
        self.sessions: dict[int, ServerSession] = {}
        self._link: PortalLink | None = None
        self._nursery: trio.Nursery | None = None
        self._idle = trio.lowlevel.ParkingLot()
        self._inputs_handled = 0
        self._input_errors = 0

    # -- running -------------------------------------------------------------------

    async def run(
        self,
        portal: Attachable,
        *,
        task_status: trio.TaskStatus[Handler] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Attach to ``portal`` and handle its messages until it lets go.

        Loads the snapshot the portal gives (the sessions a previous handler
        served), tells the portal it is ready, then handles messages. Returns
        when the portal closes the link: at shutdown, or when a newer handler
        has taken over.
        """
        link = await portal.attach()
        self._link = link
        async with link.inbound, trio.open_nursery() as nursery:
            self._nursery = nursery
            sessions = [self._new_session(sync_data) for sync_data in link.snapshot]
            await self.hooks.at_handler_start(sessions)
            link.send_nowait(Loaded())
            task_status.started(self)
            async for first in link.inbound:
                # Everything queued already is handled before yielding: the
                # output of a burst of commands then reaches each client's
                # writer together, as one write instead of one each.
                for message in [first, *queued_nowait(link.inbound, _BATCH)]:
                    if isinstance(message, Pause):
                        await self._pause()
                    elif not isinstance(message, Resume):
                        self.handle_message(message)
            with trio.move_on_after(self.settings.shutdown_grace):
                await self.wait_idle()
            nursery.cancel_scope.cancel()

    async def _pause(self) -> None:
        """Finish every input given so far, save, and tell the portal."""
        await self.wait_idle()
        await self.hooks.at_handler_pause()
        for session in self.sessions.values():
            self.send_nowait(SessionUpdate(session.sessid, session.get_sync_data()))
        self.send_nowait(Paused())

    async def wait_idle(self) -> None:
        """Wait until no session has input running or waiting."""
        while any(s._busy or s._pending for s in self.sessions.values()):
            await self._idle.park()

    def broadcast(
        self, sessions: Iterable[ServerSession], text: str | None = None, **kwargs: Any
    ) -> None:
        """Send the same output to many sessions at once (a room's ``say``).

        Takes what :meth:`ServerSession.msg` takes. It travels as one message
        however many recipients it has, and the portal renders it once per
        kind of client; each recipient gets it in order with its other
        output, exactly once across reloads and crashes like any output.
        Sessions that have ended are left out. Never blocks.
        """
        sessids = tuple(session.sessid for session in sessions if session.handler is self)
        if not sessids:
            return
        if text is not None:
            kwargs["text"] = text
        txid = _TXID.get()
        for cmdname, (args, cmd_kwargs) in normalize(kwargs):
            self.send_nowait(Broadcast(sessids, cmdname, args, cmd_kwargs, txid))

    def request_reload(self, session: ServerSession | None = None) -> None:
        """Ask the portal for a reload (the game's ``reload`` command)."""
        self.send_nowait(ReloadRequest(0 if session is None else session.sessid))

    def request_shutdown(
        self, session: ServerSession | None = None, message: str | None = None
    ) -> None:
        """Ask the portal to shut the whole server down, saying ``message``."""
        self.send_nowait(ShutdownRequest(0 if session is None else session.sessid, message))

    def set_banned_addresses(self, addresses: Iterable[str]) -> None:
        """Tell the portal every address and network now banned: it refuses
        their connections at accept time, before any negotiation."""
        self.send_nowait(BanList(tuple(addresses)))

    def count(self, name: str, amount: int = 1) -> None:
        """Add to the counter ``name`` in the server's metrics (``failed_logins``, say)."""
        self.send_nowait(Counters({name: amount}))

    def statistics(self) -> HandlerStatistics:
        """A snapshot of the handler's counters."""
        return HandlerStatistics(
            sessions=len(self.sessions),
            inputs_handled=self._inputs_handled,
            input_errors=self._input_errors,
            busy_sessions=sum(1 for s in self.sessions.values() if s._busy),
        )

    # -- messages from the portal ------------------------------------------------------

    def handle_message(self, message: PortalMessage) -> None:
        """Act on one message from the portal."""
        txid = message.txid
        session = self.sessions.get(message.sessid)
        token = _TXID.set(txid)
        try:
            if isinstance(message, DataIn):
                if session is not None:
                    self._queue_input(session, message.cmdname, message.args, message.kwargs, txid)
                    return  # Done when the input has run
                log.debug("sessid %d is gone; dropped %s", message.sessid, describe(message))
            elif isinstance(message, Connect):
                if session is not None:  # already known from the snapshot
                    session.load_sync_data(message.sync_data)
                else:
                    self._call_hook("at_session_connect", self._new_session(message.sync_data))
            elif session is None:
                log.debug("sessid %d is gone; dropped %s", message.sessid, describe(message))
            elif isinstance(message, Disconnect):
                del self.sessions[message.sessid]
                self._call_hook("at_session_disconnect", session, message.reason)
                session.handler = None
                self._idle.unpark_all()
            else:
                session.load_sync_data(message.sync_data)
        finally:
            _TXID.reset(token)
        self._done(txid, message.sessid)

    def _done(self, txid: int, sessid: int, sync_data: SyncData | None = None) -> None:
        if txid:
            self.send_nowait(Done(txid, sessid, sync_data or {}))

    def _new_session(self, sync_data: SyncData) -> ServerSession:
        session = ServerSession(handler=self, sync_attrs=self.settings.session_sync_attrs)
        session.load_sync_data(sync_data)
        self.sessions[session.sessid] = session
        return session

    # -- towards the portal --------------------------------------------------------------

    def send_nowait(self, message: FromHandler) -> None:
        """Send ``message`` to the portal; never blocks (dropped if no portal is attached)."""
        if self._link is not None:
            self._link.send_nowait(message)

    def disconnect(self, session: ServerSession, reason: str = "") -> None:
        """End ``session``: the game forgets it now, the client after ``reason``."""
        if self.sessions.pop(session.sessid, None) is None:
            return
        self._call_hook("at_session_disconnect", session, reason)
        self.send_nowait(Disconnect(session.sessid, reason))
        session.handler = None

    # -- input dispatch ------------------------------------------------------------------

    def _queue_input(
        self,
        session: ServerSession,
        cmdname: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        txid: int,
    ) -> None:
        session._pending.append((cmdname, args, kwargs, txid))
        self._run_pending(session)

    def _run_pending(self, session: ServerSession) -> None:
        while session._pending and not session._busy and session.handler is self:
            cmdname, args, kwargs, txid = session._pending.popleft()
            token = _TXID.set(txid)
            try:
                result = self._run_input(session, cmdname, args, kwargs)
                if result is not None:
                    assert self._nursery is not None, "Handler.run() is not running"
                    session._busy = True
                    self._nursery.start_soon(self._finish, session, cmdname, result, txid)
            finally:
                _TXID.reset(token)
            if not session._busy:
                self._done(txid, session.sessid, _counters(session))
        if session.handler is not self:
            for _, _, _, txid in session._pending:
                self._done(txid, session.sessid)
            session._pending.clear()
        self._idle.unpark_all()

    def _run_input(
        self, session: ServerSession, cmdname: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[None] | None:
        """Call the input function; an awaitable if it is async."""
        func = self.inputfuncs.get(cmdname) or self.inputfuncs.get("default")
        if cmdname == "text":
            typed = str(args[0]).strip() if args else ""
            session.update_session_counters(idle=typed == self.settings.idle_command)
        else:
            session.update_session_counters(idle=True)
        if func is None:
            log.debug("sessid %d: no input function for %r", session.sessid, cmdname)
            return None
        self._inputs_handled += 1
        try:
            result = func(session, *args, **kwargs)
        except Exception:
            self._report_error(session, cmdname)
            return None
        return result if inspect.isawaitable(result) else None

    async def _finish(
        self, session: ServerSession, cmdname: str, result: Awaitable[None], txid: int
    ) -> None:
        try:
            await result
        except Exception:
            self._report_error(session, cmdname)
        finally:
            session._busy = False
            self._done(txid, session.sessid, _counters(session))
        self._run_pending(session)

    def _report_error(self, session: ServerSession, cmdname: str) -> None:
        self._input_errors += 1
        self.count("input_errors")
        log.exception("sessid %d: input function %r failed", session.sessid, cmdname)
        session.msg(ERROR_MESSAGE)

    def _call_hook(self, name: str, session: ServerSession, *args: Any) -> None:
        try:
            getattr(self.hooks, name)(session, *args)
        except Exception:
            log.exception("sessid %d: hook %s failed", session.sessid, name)


#: Most queued messages the handler takes in one go before it lets others run.
_BATCH = 256


def _counters(session: ServerSession) -> SyncData:
    """The sync data an input changes: the command counters."""
    return {
        "cmd_total": session.cmd_total,
        "cmd_last": session.cmd_last,
        "cmd_last_visible": session.cmd_last_visible,
    }

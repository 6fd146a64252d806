"""The portal: listeners and one supervised task per connection.

The portal owns every socket. Each connection runs in its own task, which owns
a :class:`PortalSession`, a sans-I/O :class:`~trio_mud.telnet.TelnetProtocol`,
one reader task and one writer task. Input becomes :class:`DataIn` messages on
the inbound channel; the handler's messages come back through
:meth:`Portal.send_nowait` into a bounded queue per connection, which only that
connection's writer drains.

Error handling:
    Whatever goes wrong inside one connection (bad bytes, a stalled client, a
    bug) ends that connection only, and is logged with its sessid. Listener
    errors from running out of file descriptors are logged and retried.

Resource handling:
    :meth:`Portal.run` owns the listeners and every connection; when it
    returns, all of them are closed. :meth:`Portal.shutdown` says goodbye to
    every client and waits at most ``settings.shutdown_grace`` for it to be
    written.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any, Protocol

import attrs
import trio
from attrs import Factory, define, field, frozen

from . import markup
from ._version import __version__
from .admission import AdmittingListener, RateLimitedLog, open_listeners
from .messages import (
    Broadcast,
    Connect,
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
    SyncData,
    ToHandler,
)
from .mudtelnet import (
    BadInput,
    FlagsChanged,
    MSSPRequest,
    MudEvent,
    MudTelnet,
    OOBInput,
    Settled,
    gmcp_package,
)
from .session import Session
from .settings import Settings
from .telnet import Opt, TelnetProtocol, TelnetProtocolError, TextLine

log = logging.getLogger("trio_mud.portal")

#: Control characters a player may not send on to others: C0 (tab becomes a
#: space), DEL and C1. ESC is among them, so no raw escape sequence passes.
_INPUT_CONTROLS: dict[int, str | None] = {c: None for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_INPUT_CONTROLS[0x09] = " "


def clean_input(text: str) -> str:
    """Remove control characters from a line a player typed."""
    return text.translate(_INPUT_CONTROLS)


#: Command names only the server sends, or that only typed lines may carry:
#: out-of-band input under one of these names is renamed, never run as typed.
_RESERVED_CMDNAMES = frozenset({"text", "prompt", "default"})

#: Events one read is handled in before the reader lets other tasks run.
_EVENTS_PER_CHECKPOINT = 64


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


@frozen
class PortalStatistics:
    """A snapshot of the portal's counters."""

    connections_open: int
    connections_total: int
    connections_refused: int
    slow_client_disconnects: int
    #: Messages waiting for a handler (queued during a restart, say).
    pending_input: int
    #: Messages a handler has but has not finished.
    in_flight: int
    #: Handler generations started so far (1 + reloads + restarts).
    generations: int
    #: Whether a handler is taking input right now.
    live: bool
    #: Sockets open on every listener (counted against ``max_connections``).
    open_sockets: int = 0
    #: Messages dropped because two handlers in a row died with them in hand.
    poisoned_messages: int = 0


@define
class PortalLink:
    """What a handler gets when it attaches to a portal.

    ``snapshot`` holds the sync data of every session a handler already knew
    at attach time; ``inbound`` carries everything after that; ``send_nowait``
    takes the handler's messages and never blocks.
    """

    inbound: trio.MemoryReceiveChannel[ToHandler]
    snapshot: list[SyncData]
    send_nowait: Callable[[FromHandler], None]


class Starter(Protocol):
    """Runs one handler generation (in this process or another).

    It must call ``await portal.attach()``, have the handler load the snapshot
    and send :class:`~trio_mud.messages.Loaded`, then call
    ``task_status.started()``; it returns when the generation ends.
    """

    def __call__(self, portal: Portal, *, task_status: trio.TaskStatus[Any]) -> Awaitable[None]: ...


@define(eq=False)
class _Generation:
    """One handler's time at the helm, from attach to retirement."""

    number: int
    send: trio.MemorySendChannel[ToHandler]
    receive: trio.MemoryReceiveChannel[ToHandler]
    paused: trio.Event = Factory(trio.Event)
    ended: bool = False
    started_at: float = Factory(time.monotonic)


@define(eq=False)
class _Slot:
    """Lets a generation's runner learn which generation it became."""

    generation: _Generation | None = None


_SLOT: ContextVar[_Slot] = ContextVar("trio_mud_generation_slot")


class StatusTap:
    """Wraps a task status: remembers ``started()``, and can run a callback then."""

    def __init__(
        self, inner: trio.TaskStatus[Any], on_started: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self.on_started = on_started
        self.done = False

    def started(self, value: Any = None) -> None:
        self.done = True
        if self.on_started is not None:
            self.on_started()
        self.inner.started(value)


@define(eq=False)
class PortalSession(Session):
    """The portal's copy of a session; it survives handler restarts."""

    connection: _Connection | None = field(default=None, kw_only=True, repr=False)

    def data_out(self, **kwargs: Any) -> None:
        """Queue ``cmdname=(args, kwargs)`` output for this client."""
        if self.connection is None:
            return
        for cmdname, (args, cmd_kwargs) in _normalize(kwargs):
            self.connection.send_nowait(DataOut(self.sessid, cmdname, args, cmd_kwargs))

    def data_in(self, **kwargs: Any) -> None:
        """Pass input to the handler without waiting (it is queued).

        The connection's reader uses the waiting path instead, so that a busy
        handler slows that client down rather than dropping its input.
        """
        if self.connection is None:
            return
        for cmdname, (args, cmd_kwargs) in _normalize(kwargs):
            self.connection.portal.queue_nowait(
                self.connection, DataIn(self.sessid, cmdname, args, cmd_kwargs)
            )

    def disconnect(self, reason: str | None = None) -> None:
        if self.connection is not None:
            self.connection.close(reason or "")


def _normalize(kwargs: dict[str, Any]) -> list[tuple[str, tuple[tuple[Any, ...], dict[str, Any]]]]:
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


class _TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


#: Most output held back for one unfinished message; beyond it, output flows.
_MAX_HELD = 10_000


def _describe(exc: BaseException) -> str:
    """An exception as one line for an admin: its type and message."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__


class _Flush:
    """Tells the writer to send what the protocol has queued."""


_FLUSH = _Flush()

_Outgoing = DataOut | Broadcast | Disconnect | _Flush


class _Outbox:
    """A connection's bounded output queue: many senders, one reader (its writer).

    Lighter than a memory channel (a list, and the waiting writer task), as
    every connection has one. The writer takes everything queued at once, so
    a burst becomes one write.
    """

    __slots__ = ("_items", "_waiter", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[_Outgoing] = []
        self._waiter: trio.lowlevel.Task | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: _Outgoing) -> bool:
        """Queue ``item``; False (nothing queued) when the queue is full."""
        if len(self._items) >= self.limit:
            return False
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)
        return True

    async def get_all(self) -> list[_Outgoing]:
        """Everything queued, waiting until there is something (one reader only)."""
        if not self._items:
            self._waiter = trio.lowlevel.current_task()

            def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        items, self._items = self._items, []
        return items


class _Connection:
    """One client connection, whatever its transport: session and queues.

    Subclasses own the transport (telnet here, WebSocket in
    :mod:`trio_mud.websocket`): they run a reader and a single writer that
    drains the outbox.
    """

    protocol_key = "telnet"

    def __init__(self, portal: Portal, session: PortalSession) -> None:
        self.portal = portal
        self.settings = portal.settings
        self.session = session
        self._outbox = _Outbox(self.settings.max_output_queue)
        #: The connection's one cancel scope. While a write is under way its
        #: deadline is ``write_timeout`` away: a stalled client is dropped.
        self._cancel_scope = trio.CancelScope()
        self._stalled = False
        #: When the client last sent anything (for ``idle_timeout``; the
        #: portal's sweeper closes idle connections, no timer per read).
        self.last_input = trio.current_time()
        self._closing = False
        self._settled = trio.Event()
        self._announced = False
        #: Input that arrived before negotiation settled.
        self._early: list[PortalMessage] = []
        #: Messages for the handler that wait for one (owned by the portal).
        self.pending: list[PortalMessage] = []
        #: A handler has been sent this session's Connect ...
        self.introduced = False
        #: ... and has finished handling it.
        self.known = False
        self.told_input_dropped = False
        self._commands = _TokenBucket(
            self.settings.max_command_rate, self.settings.command_rate_burst, trio.current_time()
        )
        #: Inputs dropped in a row for going over the command rate.
        self._dropped_in_row = 0
        self.close_reason = "connection closed"

    async def run(self) -> None:
        raise NotImplementedError

    @property
    def is_closing(self) -> bool:
        """Whether the connection is on its way out."""
        return self._closing

    # -- called from outside the connection's tasks (never blocks) ------------------

    def send_nowait(self, message: _Outgoing) -> None:
        """Queue a message for the writer; a full queue means the client is stuck."""
        if self._closing:
            return
        if not self._outbox.put_nowait(message):
            self.portal._slow_client_disconnects += 1
            self.abort(
                f"output queue full ({self.settings.max_output_queue} messages): "
                "client is not reading"
            )

    def close(self, reason: str) -> None:
        """Close after everything queued so far, with ``reason`` as the last words."""
        if self._closing:
            return
        if not self._outbox.put_nowait(Disconnect(self.session.sessid, reason)):
            self.abort(f"closing with a full output queue: {reason}")
            return
        self._closing = True
        if reason:
            self.close_reason = reason

    def check_idle(self, now: float) -> None:
        """Close the connection if the client has been silent for ``idle_timeout``."""
        idle = self.settings.idle_timeout
        if idle and not self._closing and now - self.last_input >= idle:
            log.info("sessid %d: idle for %.0f s", self.session.sessid, now - self.last_input)
            self.close("Idle timeout exceeded, disconnecting.")

    def abort(self, reason: str) -> None:
        """Drop the connection now, without writing anything more."""
        if not self._closing:
            log.warning("sessid %d (%s): %s", self.session.sessid, self.session.address, reason)
        self._closing = True
        self.close_reason = reason
        self._cancel_scope.cancel()

    # -- the connection's tasks ------------------------------------------------------

    async def _announce(self) -> None:
        """Tell the handler about this session once negotiation has settled.

        Waits at most ``negotiation_timeout``: a client that answers nothing
        (a raw TCP client, say) still gets the game, just without extras.
        """
        with trio.move_on_after(self.settings.negotiation_timeout):
            await self._settled.wait()
        connect = Connect(self.session.sessid, self.session.get_sync_data())
        await self.portal.to_handler(self, connect)
        # The reader never waits for this: what it got meanwhile is held here,
        # and goes on in order.
        while self._early:
            await self.portal.to_handler(self, self._early.pop(0))
        self._announced = True

    async def _to_handler(self, message: PortalMessage) -> None:
        if self._announced:
            await self.portal.to_handler(self, message)
        else:
            self._early.append(message)

    def _rate_ok(self) -> bool:
        """Take a command token; False (and the player warned) when there is none.

        The first input dropped in a row gets the warning; a client that goes
        on sending far past the rate (``max_dropped_commands`` in a row) is
        closed, so that a flood costs the server a bounded amount of work.
        """
        if self._commands.take(trio.current_time()):
            self._dropped_in_row = 0
            return True
        self._dropped_in_row += 1
        if self._dropped_in_row == 1:
            self.session.data_out(text=self.settings.command_rate_warning)
        elif self._dropped_in_row > self.settings.max_dropped_commands:
            self.portal.log_limited(
                logging.WARNING,
                f"flood {self.session.address}",
                "sessid %d (%s): over %d commands dropped in a row for the command rate; closing",
                self.session.sessid,
                self.session.address,
                self.settings.max_dropped_commands,
            )
            self.close("You sent far more input than the server takes; closing the connection.")
        return False

    def tell_bad_input(self, reason: str) -> None:
        """Tell the player some input was ignored, and why (and log it)."""
        log.info("sessid %d: input ignored: %s", self.session.sessid, reason)
        self.session.data_out(text=markup.escape(reason))

    async def _handle_text(self, text: str) -> None:
        """A line the player typed: checked, cleaned and passed on."""
        settings = self.settings
        text = clean_input(text)
        if len(text) > settings.max_char_limit:
            log.info("sessid %d: dropped a %d-character line", self.session.sessid, len(text))
            self.session.data_out(
                text=f"Your input was too long ({len(text)} characters; the limit is "
                f"{settings.max_char_limit}) and was ignored."
            )
            return
        if not self._rate_ok():
            return
        if text.strip() == "MSSP-REQUEST" and not self.session.logged_in:
            self.session.data_out(text=_mssp_text(self.portal.mssp_variables()))
            return
        await self._to_handler(DataIn(self.session.sessid, "text", (text,), {}))

    async def _handle_oob(
        self, cmdname: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Out-of-band input (GMCP, MSDP, WebSocket commands), rate-limited like lines.

        It can never pass for a typed line: a reserved name is renamed
        (``text`` becomes ``oob_text``), so control characters, the line
        limit and the command rate cannot be dodged that way.
        """
        if not self._rate_ok():
            return
        cmdname = cmdname.lower()
        if cmdname in _RESERVED_CMDNAMES:
            cmdname = f"oob_{cmdname}"
        await self._to_handler(DataIn(self.session.sessid, cmdname, args, kwargs))


class TelnetConnection(_Connection):
    """A telnet connection: MudTelnet over a TCP stream."""

    def __init__(self, portal: Portal, stream: trio.SocketStream, session: PortalSession) -> None:
        super().__init__(portal, session)
        self.stream = stream
        self.protocol = MudTelnet(
            max_partial_line=self.settings.max_partial_line,
            max_subnegotiation=self.settings.max_subnegotiation,
            max_inflated=self.settings.max_inflated,
            mccp=self.settings.mccp,
            max_json_depth=self.settings.max_json_depth,
            max_gmcp_supports=self.settings.max_gmcp_supports,
        )

    async def run(self) -> None:
        with self._cancel_scope:
            async with trio.open_nursery() as nursery:
                self.protocol.start()
                nursery.start_soon(self._writer)
                self.send_nowait(_FLUSH)
                nursery.start_soon(self._announce)
                await self._reader()
                if not self._closing:
                    # The client hung up: nothing left to write.
                    nursery.cancel_scope.cancel()
        if self._stalled:
            self.abort(f"one write took over {self.settings.write_timeout:g} s: client stalled")

    async def _reader(self) -> None:
        while not self._closing:
            try:
                data = await self.stream.receive_some(self.settings.max_read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.last_input = trio.current_time()
            if not data:
                self.close_reason = "client closed the connection"
                return
            try:
                events = self.protocol.receive_data(data)
            except TelnetProtocolError as exc:
                log.warning("sessid %d: telnet protocol error: %s", self.session.sessid, exc)
                self.close(exc.reply)
                return
            self.send_nowait(_FLUSH)  # negotiation replies
            for number, event in enumerate(events, 1):
                if self.is_closing:
                    return
                await self._handle_event(event)
                if number % _EVENTS_PER_CHECKPOINT == 0:
                    # A read can hold thousands of lines: let others run.
                    await trio.lowlevel.checkpoint()

    async def _handle_event(self, event: MudEvent) -> None:
        if isinstance(event, TextLine):
            await self._handle_line(event.data)
        elif isinstance(event, FlagsChanged):
            self.session.protocol_flags.update(event.flags)
            if self._announced:
                await self.portal.to_handler(
                    self, SessionUpdate(self.session.sessid, {"protocol_flags": event.flags})
                )
        elif isinstance(event, OOBInput):
            await self._handle_oob(event.cmdname, event.args, event.kwargs)
        elif isinstance(event, BadInput):
            self.tell_bad_input(event.reason)
        elif isinstance(event, Settled):
            self._settled.set()
        elif isinstance(event, MSSPRequest):
            self.protocol.send_mssp(self.portal.mssp_variables())
            self.send_nowait(_FLUSH)

    async def _handle_line(self, data: bytes) -> None:
        encoding = self.session.protocol_flags.get("ENCODING", "utf-8")
        try:
            text = data.decode(encoding, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        await self._handle_text(text)

    async def _writer(self) -> None:
        keepalive = self.settings.telnet_keepalive
        while True:
            if keepalive:
                with trio.move_on_after(keepalive) as quiet:
                    batch = await self._outbox.get_all()
                if quiet.cancelled_caught:
                    self.protocol.send_keepalive()
                    await self._write(self.protocol.data_to_send())
                    continue
            else:
                batch = await self._outbox.get_all()
            # Everything queued goes out in one write.
            for message in batch:
                if isinstance(message, Disconnect):
                    if message.reason:
                        self._render_text(message.reason)
                    await self._write(self.protocol.data_to_send() + self.protocol.close())
                    self._cancel_scope.cancel()
                    return
                if not isinstance(message, _Flush):
                    self._render(message)
            del batch  # nothing of it is kept while the writer waits
            data = self.protocol.data_to_send()
            if data:
                await self._write(data)
            del data

    async def _write(self, data: bytes) -> None:
        """Send ``data``; within ``write_timeout``, or the connection is dropped.

        The connection's own cancel scope times the write: its deadline is set
        for the write and lifted after, which costs far less than a new scope
        per write (and a stalled client is dropped whole anyway).
        """
        scope = self._cancel_scope
        scope.deadline = trio.current_time() + self.settings.write_timeout
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close_reason = "client connection broke"
            scope.cancel()
        except trio.Cancelled:
            if trio.current_time() >= scope.deadline:
                self._stalled = True
            raise
        finally:
            scope.deadline = math.inf

    # -- output rendering --------------------------------------------------------------

    def _render(self, message: DataOut | Broadcast) -> None:
        """Queue ``message`` in the protocol, in this client's form."""
        cmdname, args, kwargs = message.cmdname, message.args, message.kwargs
        if cmdname == "text":
            if type(message) is Broadcast:
                self._render_shared_text(message)
            else:
                self._render_text(str(args[0]) if args else "")
        elif cmdname == "prompt":
            flags = self.session.protocol_flags
            self.protocol.send_prompt(
                markup.render(
                    str(args[0]) if args else "",
                    markup.level_for(flags),
                    screenreader=bool(flags.get("SCREENREADER")),
                ),
                flags.get("ENCODING", "utf-8"),
                password=bool(kwargs.get("password")),
            )
        elif cmdname == "msdp":
            self.protocol.send_msdp(kwargs)
        else:
            payload: Any = kwargs or (args[0] if len(args) == 1 else list(args) or None)
            if self.protocol.telnet.local_enabled(Opt.GMCP):
                self.protocol.send_gmcp(gmcp_package(cmdname), payload)
            elif "." not in cmdname:
                self.protocol.send_msdp({cmdname.upper(): payload})

    def _render_text(self, text: str) -> None:
        self.protocol.send_encoded(self._encode_text(text))

    def _encode_text(self, text: str) -> bytes:
        """``text`` rendered for this client, as the bytes telnet sends."""
        flags = self.session.protocol_flags
        rendered = markup.render(
            text, markup.level_for(flags), screenreader=bool(flags.get("SCREENREADER"))
        )
        if not rendered.endswith(("\n", "\r")):
            rendered += "\n"
        return TelnetProtocol.encode_text(rendered, flags.get("ENCODING", "utf-8"))

    def _render_shared_text(self, message: Broadcast) -> None:
        """Text for many clients: encoded once per kind of client, then reused."""
        flags = self.session.protocol_flags
        key = (
            "telnet",
            markup.level_for(flags),
            bool(flags.get("SCREENREADER")),
            flags.get("ENCODING", "utf-8"),
        )
        data = message.rendered.get(key)
        if data is None:
            data = message.rendered[key] = self._encode_text(
                str(message.args[0]) if message.args else ""
            )
        self.protocol.send_encoded(data)


async def _refuse_telnet(stream: trio.SocketStream, refusal: str) -> None:
    """A refused telnet client is told why, in one line."""
    await stream.send_all(TelnetProtocol.encode_text(refusal + "\n"))


def _mssp_text(variables: list[tuple[str, str]]) -> str:
    """The plain-text MSSP reply that crawlers read at the login screen."""
    lines = ["MSSP-REPLY-START", *(f"{name}\t{value}" for name, value in variables)]
    return "\n".join(markup.escape(line) for line in [*lines, "MSSP-REPLY-END"])


class Portal:
    """Listens, runs every connection, and talks to one handler at a time.

    Handlers come and go in *generations*. A generation calls :meth:`attach`;
    if another is serving, that one is paused first (it finishes and saves
    what it has), and the new one gets a snapshot of every session. Once it
    sends ``Loaded`` it takes over and the old one is retired; if it fails
    first, the old one resumes. While no handler takes input, what players
    type waits in a bounded queue per session, in order.

    Args:
        settings: the server's configuration.
        starter: how to run a handler generation (see :class:`Starter`). With
            one, :meth:`run` starts the first generation, :meth:`reload`
            replaces it, and a generation that dies is restarted. Without
            one, handlers are started by hand (``handler.run(portal)``).
    """

    def __init__(self, settings: Settings, *, starter: Starter | None = None) -> None:
        self.settings = settings
        self.starter = starter
        self._connections: dict[int, _Connection] = {}
        self._sessids = itertools.count(1)
        self._buckets: dict[str, _TokenBucket] = {}
        self._accept_scope: trio.CancelScope | None = None
        self._connections_nursery: trio.Nursery | None = None
        self._connection_closed = trio.lowlevel.ParkingLot()
        self._connections_total = 0
        self._connections_refused = 0
        self._slow_client_disconnects = 0
        #: Sockets accepted and not yet closed, on every listener.
        self._open_sockets = 0
        self._log_limiter = RateLimitedLog(log)
        self.telnet_addresses: list[tuple[str, int]] = []
        self.websocket_addresses: list[tuple[str, int]] = []
        self.web_addresses: list[tuple[str, int]] = []
        #: Resume token -> WebSocket session (see trio_mud.websocket).
        self.websocket_tokens: dict[str, Any] = {}
        self.started = time.time()
        # -- handler generations
        self._system: trio.Nursery | None = None
        self._gen: _Generation | None = None
        self._candidate: _Generation | None = None
        self._live = False
        self._numbers = itertools.count(1)
        self._takeover = trio.Semaphore(1)
        self._reload_lock = trio.Lock()
        self._running_generations = 0
        self._generation_ended = trio.lowlevel.ParkingLot()
        self._stopping = False
        #: Players were told of a restart and await word of its end.
        self._restart_notice = False
        self._recovering = False
        #: Restarts since the last generation that stayed up.
        self._failures = 0
        # -- messages on their way
        self._txids = itertools.count(1)
        self._inflight: dict[int, tuple[_Connection, PortalMessage]] = {}
        #: Messages that were in hand when a handler died, by id (the message
        #: is kept too, so the id stays its own): if the next one dies with
        #: one of them in hand as well, it is dropped, never replayed again.
        self._suspects: dict[int, PortalMessage] = {}
        self._poisoned = 0
        self._held: dict[int, list[DataOut | Broadcast]] = {}
        self._ready: deque[_Connection] = deque()
        self._ready_ids: set[int] = set()
        self._wakeup = trio.lowlevel.ParkingLot()
        self._progress = trio.lowlevel.ParkingLot()

    # -- input towards the handler -------------------------------------------------------

    async def to_handler(self, conn: _Connection, message: PortalMessage) -> None:
        """Pass ``message`` on, waiting while the handler is busy.

        While no handler is live, or the session has input queued already,
        the message joins the session's queue instead, so order is kept.
        """
        gen = self._gen
        if self._live and gen is not None and not conn.pending:
            if not await self._send_to(gen, conn, message):
                conn.pending.insert(0, message)
                self._mark_ready(conn)
        else:
            self.queue_nowait(conn, message)

    def queue_nowait(self, conn: _Connection, message: PortalMessage) -> None:
        """Queue ``message`` for the handler; never blocks.

        Typed input beyond ``max_pending_input`` waiting messages is dropped,
        and the player is told.
        """
        if isinstance(message, DataIn) and len(conn.pending) >= self.settings.max_pending_input:
            if not conn.told_input_dropped:
                conn.told_input_dropped = True
                notice = self.settings.input_dropped_message
                conn.send_nowait(DataOut(conn.session.sessid, "text", (notice,)))
            log.warning("sessid %d: input queue full; input dropped", conn.session.sessid)
            return
        conn.pending.append(message)
        self._mark_ready(conn)

    def _mark_ready(self, conn: _Connection) -> None:
        if conn.session.sessid not in self._ready_ids:
            self._ready_ids.add(conn.session.sessid)
            self._ready.append(conn)
        self._wakeup.unpark_all()

    async def _send_to(self, gen: _Generation, conn: _Connection, message: PortalMessage) -> bool:
        """Give ``message`` to ``gen``, numbered; False if that handler is gone."""
        txid = next(self._txids)
        self._inflight[txid] = (conn, message)
        if isinstance(message, Connect):
            conn.introduced = True
        try:
            await gen.send.send(attrs.evolve(message, txid=txid))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._inflight.pop(txid, None)
            self._generation_lost(gen, "its input channel closed")
            return False
        return True

    async def _pump(self) -> None:
        """Feed queued input to the live handler, a message per session in turn."""
        while True:
            while self._live and self._ready and self._gen is not None:
                conn = self._ready.popleft()
                self._ready_ids.discard(conn.session.sessid)
                if not conn.pending:
                    continue
                if await self._send_to(self._gen, conn, conn.pending[0]):
                    del conn.pending[0]
                    conn.told_input_dropped = False
                if conn.pending:
                    self._mark_ready(conn)
            self._progress.unpark_all()
            await self._wakeup.park()

    # -- the handler's side --------------------------------------------------------------

    async def attach(self) -> PortalLink:
        """Let a handler generation take over; returns once it may.

        A generation serving now is paused first: it finishes everything it
        was given, saves, and says ``Paused``. The link's snapshot holds the
        sync data of every session a handler already knew. The caller must
        load it and send ``Loaded`` (or fail, and the old one resumes).
        """
        await self._takeover.acquire()
        send, receive = trio.open_memory_channel[ToHandler](self.settings.inbound_queue_size)
        gen = _Generation(next(self._numbers), send, receive)
        slot = _SLOT.get(None)
        if slot is not None:
            slot.generation = gen
        self._candidate = gen
        old = self._gen
        if old is not None and not old.ended:
            await self._pause(old)
        snapshot = [c.session.get_sync_data() for c in self._connections.values() if c.known]
        log.info("handler generation %d attaching (%d sessions)", gen.number, len(snapshot))
        return PortalLink(receive, snapshot, partial(self._from_handler, gen))

    async def _pause(self, gen: _Generation) -> None:
        self._live = False
        self._notice(self.settings.reload_message)
        self._restart_notice = True  # so "restarted" (or "failed") follows
        with trio.move_on_after(self.settings.pause_timeout):
            try:
                await gen.send.send(Pause())
                await gen.paused.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if not gen.paused.is_set():
            self._generation_lost(gen, "it did not pause in time")

    def _from_handler(self, gen: _Generation, message: FromHandler) -> None:
        """Act on a message from handler generation ``gen``. Never blocks."""
        if gen.ended:
            return  # a retired or dead generation: not listened to
        if isinstance(message, Done):
            entry = self._inflight.pop(message.txid, None)
            if entry is not None:
                self._suspects.pop(id(entry[1]), None)
                if isinstance(entry[1], Connect):
                    entry[0].known = True
            conn = self._connections.get(message.sessid)
            if message.sync_data and conn is not None:
                conn.session.load_sync_data(message.sync_data)
            for held in self._held.pop(message.txid, ()):
                self.send_nowait(held)
            self._progress.unpark_all()
        elif isinstance(message, DataOut | Broadcast) and message.txid in self._inflight:
            waiting = self._held.setdefault(message.txid, [])
            if len(waiting) < _MAX_HELD:
                waiting.append(message)
            else:
                self.send_nowait(message)
        elif isinstance(message, Paused):
            gen.paused.set()
        elif isinstance(message, Loaded):
            self._take_over(gen)
        elif isinstance(message, ReloadRequest):
            if self._system is not None:
                self._system.start_soon(self._reload_for, message.sessid)
        else:
            self.send_nowait(message)

    def send_nowait(self, message: DataOut | Broadcast | Disconnect | SessionUpdate) -> None:
        """Route a message to its connection(s) at once. Never blocks.

        A broadcast goes to every recipient still connected, each in order
        with the rest of its output; one that is gone is skipped.
        """
        if type(message) is Broadcast:
            connections = self._connections
            for sessid in message.sessids:
                target = connections.get(sessid)
                if target is not None:
                    target.send_nowait(message)
            return
        assert not isinstance(message, Broadcast)
        conn = self._connections.get(message.sessid)
        if conn is None:
            return  # that client left already
        if isinstance(message, SessionUpdate):
            conn.session.load_sync_data(message.sync_data)
        elif isinstance(message, Disconnect):
            conn.close(message.reason)
        else:
            conn.send_nowait(message)

    def _take_over(self, gen: _Generation) -> None:
        if gen is not self._candidate:
            return
        old, self._gen, self._candidate = self._gen, gen, None
        if old is not None and not old.ended:
            old.ended = True
            old.send.close()  # the old handler returns
        self._live = True
        self._takeover.release()
        self._wakeup.unpark_all()
        log.info("handler generation %d is live", gen.number)
        if self._restart_notice:
            self._restart_notice = False
            self._notice(self.settings.reload_done_message)

    def _candidate_failed(self, gen: _Generation | None) -> None:
        """A generation died before taking over: the old one carries on."""
        if gen is None or gen is not self._candidate:
            return
        gen.ended = True
        gen.send.close()
        self._candidate = None
        old = self._gen
        if old is not None and not old.ended:
            if old.paused.is_set():
                old.paused = trio.Event()
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    old.send.send_nowait(Resume())
            self._live = True
            self._wakeup.unpark_all()
            if self._restart_notice:
                self._restart_notice = False
                self._notice(self.settings.reload_failed_message)
        self._takeover.release()

    def _generation_lost(self, gen: _Generation, why: str) -> None:
        """``gen`` is gone unasked: take back what it had not finished."""
        if gen.ended:
            return
        gen.ended = True
        gen.send.close()
        if gen is not self._gen:
            return
        self._live = False
        log.error("handler generation %d lost: %s", gen.number, why)
        # What it was given and had not finished goes back, in order, to be
        # handled by the next generation; what it said about it is dropped.
        # Unless the generation before died with it in hand too: then it may
        # be what kills them, and it is dropped instead.
        returned: dict[int, tuple[_Connection, list[PortalMessage]]] = {}
        suspects: dict[int, PortalMessage] = {}
        for _, (conn, message) in sorted(self._inflight.items()):
            if id(message) in self._suspects:
                self._drop_poisoned(conn, message)
                continue
            suspects[id(message)] = message
            returned.setdefault(conn.session.sessid, (conn, []))[1].append(message)
        self._suspects = suspects
        for conn, messages in returned.values():
            conn.pending[0:0] = messages
            self._mark_ready(conn)
        self._inflight.clear()
        self._held.clear()
        if self._stopping:
            return
        self._notice(self.settings.crash_message)
        self._restart_notice = True
        if self.starter is not None and self._system is not None and not self._recovering:
            self._system.start_soon(self._recover)

    def _drop_poisoned(self, conn: _Connection, message: PortalMessage) -> None:
        """Two handlers in a row died with ``message`` in hand: never replay it."""
        self._poisoned += 1
        log.error(
            "sessid %d: %s was in hand when two handlers in a row died; dropped, not replayed",
            conn.session.sessid,
            describe(message),
        )
        if isinstance(message, DataIn):
            conn.send_nowait(
                DataOut(conn.session.sessid, "text", (self.settings.poisoned_input_message,))
            )
        elif isinstance(message, Connect | SessionUpdate):
            # The game cannot know this session as it is: end it, cleanly.
            conn.close(self.settings.poisoned_input_message)

    # -- generations under the portal's care ----------------------------------------------

    async def start_generation(self) -> None:
        """Start a handler generation with the starter; return once it is live.

        Raises whatever the generation raised if it could not take over (the
        one serving before goes on serving).
        """
        if self.starter is None or self._system is None:
            raise RuntimeError("this portal has no starter, or is not running")
        await self._system.start(self._run_generation)

    async def _run_generation(self, *, task_status: trio.TaskStatus[None]) -> None:
        assert self.starter is not None
        slot = _Slot()
        _SLOT.set(slot)
        status = StatusTap(task_status)
        self._running_generations += 1
        try:
            await self.starter(self, task_status=status)
        except Exception as exc:
            if not status.done:
                self._candidate_failed(slot.generation)
                raise
            log.error("handler generation failed: %r", exc, exc_info=exc)
        finally:
            self._running_generations -= 1
            self._generation_ended.unpark_all()
        if not status.done:
            self._candidate_failed(slot.generation)
            raise RuntimeError("the handler generation ended before it took over")
        if slot.generation is not None:
            self._generation_lost(slot.generation, "it ended")

    async def reload(self) -> str | None:
        """Replace the handler generation; None, or why it failed.

        Players see ``reload_message`` and then ``reload_done_message`` (or
        ``reload_failed_message``); if the new generation cannot start, the
        old one never stops serving.
        """
        async with self._reload_lock:
            try:
                await self.start_generation()
            except Exception as exc:
                log.error("reload failed: %s", _describe(exc))
                return _describe(exc)
        return None

    async def _reload_for(self, sessid: int) -> None:
        error = await self.reload()
        conn = self._connections.get(sessid)
        if error is not None and conn is not None:
            conn.send_nowait(DataOut(sessid, "text", (markup.escape(f"Reload failed: {error}"),)))

    async def _recover(self) -> None:
        """Start a new generation after a crash, backing off while it keeps failing."""
        self._recovering = True
        try:
            while not self._stopping:
                delay = self._restart_delay()
                if delay:
                    log.warning("restarting the handler in %.1f s", delay)
                    await trio.sleep(delay)
                async with self._reload_lock:
                    if self._live or self._stopping:
                        return
                    try:
                        await self.start_generation()
                        return
                    except Exception as exc:
                        log.error("handler restart failed: %s", _describe(exc))
        finally:
            self._recovering = False

    def _restart_delay(self) -> float:
        """How long to wait before the next restart; counts it.

        At once the first time, then ``restart_backoff`` doubling up to
        ``restart_backoff_max``, whether the restarts fail to start or start
        and die again; a generation that stayed up ``restart_stable_after``
        seconds starts the count afresh.
        """
        gen = self._gen
        if (
            gen is not None
            and time.monotonic() - gen.started_at > self.settings.restart_stable_after
        ):
            self._failures = 0
        restarts, self._failures = self._failures, self._failures + 1
        if restarts == 0:
            return 0.0
        delay = self.settings.restart_backoff * 2 ** (restarts - 1)
        return float(min(self.settings.restart_backoff_max, delay))

    def _notice(self, text: str) -> None:
        """Tell every connected player something (restart notices)."""
        if text and self._connections:
            self.send_nowait(Broadcast(tuple(self._connections), "text", (text,)))

    # -- running -------------------------------------------------------------------------

    @property
    def sessions(self) -> dict[int, PortalSession]:
        return {sessid: conn.session for sessid, conn in self._connections.items()}

    @property
    def live(self) -> bool:
        """Whether a handler is taking input now."""
        return self._live

    def statistics(self) -> PortalStatistics:
        pending = sum(len(c.pending) for c in self._connections.values())
        return PortalStatistics(
            connections_open=len(self._connections),
            connections_total=self._connections_total,
            connections_refused=self._connections_refused,
            slow_client_disconnects=self._slow_client_disconnects,
            pending_input=pending,
            in_flight=len(self._inflight),
            generations=self._generation_count(),
            live=self._live,
            open_sockets=self._open_sockets,
            poisoned_messages=self._poisoned,
        )

    def _generation_count(self) -> int:
        current = self._candidate or self._gen
        return 0 if current is None else current.number

    def mssp_variables(self) -> list[tuple[str, str]]:
        """What MUD listings read: name, players, uptime, ports, protocols."""
        players = sum(1 for conn in self._connections.values() if conn.session.logged_in)
        ports = sorted({port for _, port in self.telnet_addresses})
        mccp = "1" if self.settings.mccp else "0"
        variables = [
            ("NAME", self.settings.server_name),
            ("PLAYERS", str(players)),
            ("UPTIME", str(int(self.started))),
            *(("PORT", str(port)) for port in ports),
            ("CODEBASE", f"trio_mud {__version__}"),
            ("ANSI", "1"),
            ("UTF-8", "1"),
            ("XTERM 256 COLORS", "1"),
            ("XTERM TRUE COLORS", "1"),
            ("GMCP", "1"),
            ("MSDP", "1"),
            ("MSSP", "1"),
            ("MCCP", mccp),
            ("MXP", "0"),
            ("SSL", "0"),
        ]
        return variables + [(str(k), str(v)) for k, v in self.settings.mssp_extra]

    # -- running -------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled or :meth:`shutdown`; report the bound addresses.

        ``task_status.started`` receives ``[(host, port), ...]`` for the telnet
        listeners, so that a caller that asked for port 0 learns the real port.
        With a starter, the first handler generation is live before that.
        """
        listeners: list[trio.SocketListener] = []
        try:
            for interface in self.settings.telnet_interfaces:
                for port in self.settings.telnet_ports:
                    listeners += await open_listeners(
                        "telnet", port, interface, option="--telnet-port"
                    )
            self.telnet_addresses = [lst.socket.getsockname()[:2] for lst in listeners]
            async with trio.open_nursery() as system:
                self._system = system
                system.start_soon(self._pump)
                if self.settings.idle_timeout:
                    system.start_soon(self._sweep_idle)
                if self.starter is not None:
                    await self.start_generation()
                # Connections live in their own nursery, apart from the accept
                # loops: when shutdown() stops accepting, they carry on until
                # they have said goodbye.
                async with trio.open_nursery() as connections, trio.open_nursery() as accepting:
                    self._connections_nursery = connections
                    self._accept_scope = accepting.cancel_scope
                    for listener in listeners:
                        accepting.start_soon(self._accept_loop, listener, connections)
                    for host, port in self.telnet_addresses:
                        log.info("telnet listening on %s port %d", host, port)
                    task_status.started(self.telnet_addresses)
                await self._retire_handlers()
                system.cancel_scope.cancel()
        finally:
            self._stopping = True
            for listener in listeners:
                await listener.aclose()
            if self._gen is not None:
                self._gen.send.close()

    async def _sweep_idle(self) -> None:
        """Close connections whose clients have been silent for ``idle_timeout``.

        One task looks at every connection now and then (a tenth of the
        timeout, at most a minute), instead of a timer on every read.
        """
        interval = min(60.0, self.settings.idle_timeout / 10)
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            for conn in list(self._connections.values()):
                conn.check_idle(now)

    async def _retire_handlers(self) -> None:
        """After the last connection: let the handler finish, then stop it."""
        self._stopping = True
        with trio.move_on_after(self.settings.shutdown_grace):
            while self._live and (self._ready or self._inflight):
                await self._progress.park()  # the pump and the handler finish up
        for gen in (self._gen, self._candidate):
            if gen is not None and not gen.ended:
                gen.ended = True
                gen.send.close()
        with trio.move_on_after(self.settings.shutdown_grace):
            while self._running_generations:
                await self._generation_ended.park()

    async def shutdown(self, message: str | None = None) -> None:
        """Stop accepting, say goodbye to every client and close them all.

        Waits at most ``settings.shutdown_grace`` for the goodbyes to be
        written; connections still open then are dropped. The handler then
        finishes what it has (disconnects, saves) and stops.
        """
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        reason = self.settings.shutdown_message if message is None else message
        for conn in list(self._connections.values()):
            conn.close(reason)
        with trio.move_on_after(self.settings.shutdown_grace):
            await self.wait_connections_below(1)
        for conn in list(self._connections.values()):
            conn.abort("shutdown grace period over")

    async def wait_connections_below(self, count: int) -> None:
        """Wait until fewer than ``count`` connections are open."""
        while len(self._connections) >= count:
            await self._connection_closed.park()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        admitting = self.admitting(listener, refuse=_refuse_telnet)
        while True:
            stream = await admitting.accept()
            nursery.start_soon(self._serve, stream)

    def admitting(
        self,
        listener: trio.SocketListener,
        *,
        refuse: Callable[[trio.SocketStream, str], Awaitable[None]] | None = None,
    ) -> AdmittingListener:
        """``listener``, admitting each socket at accept time (any transport).

        Every admitted socket counts against ``max_connections`` until it is
        closed; ``refuse(stream, text)`` may tell a refused one why.
        """
        return AdmittingListener(
            listener, admit=self._admit_socket, refuse=refuse, log=self._log_limiter
        )

    def _admit_socket(self, address: str) -> str | None:
        refusal = self.admit(address)
        if refusal is None:
            self._open_sockets += 1
        return refusal

    def release_socket(self) -> None:
        """An admitted socket is closed: its place is free (call once per socket)."""
        self._open_sockets -= 1

    def log_limited(self, level: int, key: str, message: str, *args: object) -> None:
        """Log a line that may recur often, at most once per 10 s per ``key``."""
        self._log_limiter.log(level, key, message, *args)

    def _admit(self, address: str) -> str | None:
        """Why a new connection from ``address`` must be refused, or None."""
        cap = self.settings.max_connections
        if len(self._connections) >= cap or self._open_sockets >= cap:
            return "The server is full; please try again later."
        now = trio.current_time()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) > 4 * self.settings.max_connections:
                self._buckets = {a: b for a, b in self._buckets.items() if not b.full(now)}
            bucket = self._buckets[address] = _TokenBucket(
                self.settings.max_connection_rate, self.settings.connection_rate_burst, now
            )
        if not bucket.take(now):
            return "Too many connections from your address; please wait a moment."
        return None

    async def _serve(self, stream: trio.SocketStream) -> None:
        """Run an admitted telnet socket as a connection; close it after."""
        try:
            address = str(stream.socket.getpeername()[0])
        except OSError:
            address = "?"
        session = self.new_session("telnet", address)
        try:
            await self.run_connection(TelnetConnection(self, stream, session))
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self.release_socket()

    def admit(self, address: str) -> str | None:
        """Why a new connection from ``address`` must be refused (logged), or None.

        Listeners made with :meth:`admitting` ask this at accept time; a
        transport with listeners of its own must ask it too.
        """
        refusal = self._admit(address)
        if refusal is not None:
            self._connections_refused += 1
            self.log_limited(
                logging.WARNING,
                f"refused {address}",
                "refused a connection from %s: %s",
                address,
                refusal,
            )
        return refusal

    def new_session(self, protocol_key: str, address: str) -> PortalSession:
        """A session with a fresh sessid, for a connection about to run."""
        return PortalSession(
            protocol_key=protocol_key,
            address=address,
            sessid=next(self._sessids),
            sync_attrs=self.settings.session_sync_attrs,
        )

    def start_connection(self, conn: _Connection) -> None:
        """Run ``conn`` among the portal's connections (another transport's)."""
        if self._connections_nursery is None:
            raise RuntimeError("the portal is not running")
        self._connections_nursery.start_soon(self.run_connection, conn)

    async def run_connection(self, conn: _Connection) -> None:
        """Run ``conn`` as one of the portal's connections, supervised.

        Whatever goes wrong inside it is logged with its sessid and ends that
        connection only.
        """
        session = conn.session
        sessid = session.sessid
        session.connection = conn
        self._connections[sessid] = conn
        self._connections_total += 1
        log.info("sessid %d: %s connection from %s", sessid, session.protocol_key, session.address)
        try:
            await conn.run()
        except Exception:
            conn.close_reason = "internal error"
            log.exception("sessid %d: connection failed", sessid)
        finally:
            del self._connections[sessid]
            session.connection = None
            log.info("sessid %d: disconnected (%s)", sessid, conn.close_reason)
            if conn.introduced:
                self.queue_nowait(conn, Disconnect(sessid, conn.close_reason))
            else:
                conn.pending.clear()  # no handler ever heard of it
            self._connection_closed.unpark_all()

"""What every connection is, whatever its transport: the shared base.

A :class:`Connection` owns one client's :class:`PortalSession`, a bounded
output queue drained by a single writer, the command-rate bucket, and the
checks every typed line passes (length, rate, control characters) before it
goes to the handler. A transport (:mod:`trio_mud.transports.telnet`,
:mod:`trio_mud.transports.websocket`)
subclasses it with its reader and writer.

A connection needs little of the portal: :class:`ConnectionHost` names it
(the settings, the way to the handler, MSSP data, a rate-limited log), so
transports never import the portal.

Error handling:
    Nothing a client sends raises out of a connection's checks; input that is
    refused is answered with a message (:meth:`Connection.tell_bad_input`).
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import trio
from attrs import define, field

from .. import markup
from ..messages import (
    Broadcast,
    Connect,
    DataIn,
    DataOut,
    Disconnect,
    PortalMessage,
    normalize,
)
from ..protocols import proxy
from ..session import Session
from ..settings import Settings

log = logging.getLogger("trio_mud.portal")


class ConnectionHost(Protocol):
    """What a connection needs of the portal."""

    settings: Settings

    async def to_handler(self, conn: Connection, message: PortalMessage) -> None:
        """Pass ``message`` on, waiting while the handler is busy."""
        ...

    def queue_nowait(self, conn: Connection, message: PortalMessage) -> None:
        """Queue ``message`` for the handler; never blocks."""
        ...

    def mssp_variables(self) -> list[tuple[str, str]]:
        """What MUD listings read (the plain-text ``MSSP-REQUEST`` answer)."""
        ...

    def log_limited(self, level: int, key: str, message: str, *args: object) -> None:
        """Log a line that may recur often, at most once in a while per ``key``."""
        ...

    def count_slow_client(self) -> None:
        """A client was disconnected for not reading its output."""
        ...

    @property
    def write_pump(self) -> WritePump:
        """The task that writes for connections without a writer of their own."""
        ...


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A stream that first yields ``prefix`` (bytes read past a PROXY header)."""

    def __init__(self, inner: trio.SocketStream, prefix: bytes) -> None:
        self.inner = inner
        self.socket = inner.socket
        self._prefix = prefix

    def take_prefix(self) -> bytes:
        """The bytes read past the header, once (for a reader of the socket itself)."""
        prefix, self._prefix = self._prefix, b""
        return prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ListenerHost(ConnectionHost, Protocol):
    """What a transport with listeners of its own needs of the portal."""

    websocket_tokens: dict[str, Any]
    ajax_sessions: dict[str, Any]
    websocket_addresses: list[tuple[str, int]]
    web_addresses: list[tuple[str, int]]
    ssh_addresses: list[tuple[str, int]]
    metrics_addresses: list[tuple[str, int]]

    def metrics(self, *, openmetrics: bool = False) -> tuple[bytes, str]:
        """The Prometheus exposition of the server's numbers, and its content type."""
        ...

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for new connections (None when nothing uses TLS)."""
        ...

    def admitting(self, listener: trio.SocketListener) -> trio.abc.Listener[trio.SocketStream]:
        """``listener``, admitting each socket at accept time."""
        ...

    def release_socket(self, address: str) -> None:
        """An admitted socket from ``address`` (its peer) is closed."""
        ...

    def admit_forwarded(self, address: str) -> str | None:
        """Why the client a trusted proxy names may not connect now, or None."""
        ...

    async def behind_proxy(
        self, stream: trio.SocketStream, address: str
    ) -> tuple[trio.abc.Stream, str] | None:
        """The stream and client address for a new socket, past any PROXY
        header from a trusted proxy; None when it must be closed."""
        ...

    def new_session(self, protocol_key: str, address: str) -> PortalSession:
        """A session with a fresh sessid."""
        ...

    def start_connection(self, conn: Connection) -> None:
        """Run ``conn`` among the portal's connections."""
        ...


@define(eq=False)
class PortalSession(Session):
    """The portal's copy of a session; it survives handler restarts."""

    connection: Connection | None = field(default=None, kw_only=True, repr=False)

    def data_out(self, **kwargs: Any) -> None:
        """Queue ``cmdname=(args, kwargs)`` output for this client."""
        if self.connection is None:
            return
        for cmdname, (args, cmd_kwargs) in normalize(kwargs):
            self.connection.send_nowait(DataOut(self.sessid, cmdname, args, cmd_kwargs))

    def data_in(self, **kwargs: Any) -> None:
        """Pass input to the handler without waiting (it is queued).

        The connection's reader uses the waiting path instead, so that a busy
        handler slows that client down rather than dropping its input.
        """
        if self.connection is None:
            return
        for cmdname, (args, cmd_kwargs) in normalize(kwargs):
            self.connection.portal.queue_nowait(
                self.connection, DataIn(self.sessid, cmdname, args, cmd_kwargs)
            )

    def disconnect(self, reason: str | None = None) -> None:
        if self.connection is not None:
            self.connection.close(reason or "")


#: Control characters a player may not send on to others: C0 (tab becomes a
#: space), DEL and C1. ESC is among them, so no raw escape sequence passes.
_INPUT_CONTROLS: dict[int, str | None] = {c: None for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_INPUT_CONTROLS[0x09] = " "


def show_controls(text: str) -> str:
    """``text`` with control characters spelled out (``^C``, ``<ESC>``, ``\\x9b``)."""
    out = []
    for char in text:
        code = ord(char)
        if char == "\x1b":
            out.append("<ESC>")
        elif code < 0x20:
            out.append("^" + chr(code + 64))
        elif code == 0x7F:
            out.append("^?")
        elif 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return repr("".join(out))


def clean_input(text: str) -> str:
    """Remove control characters from a line a player typed."""
    return text.translate(_INPUT_CONTROLS)


#: Command names only the server sends, or that only typed lines may carry:
#: out-of-band input under one of these names is renamed, never run as typed.
_RESERVED_CMDNAMES = frozenset({"text", "prompt", "default"})

#: Events one read is handled in before the reader lets other tasks run.
EVENTS_PER_CHECKPOINT = 64

#: Connections the write pump writes for before it lets other tasks run.
WRITES_PER_CHECKPOINT = 64


class TokenBucket:
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


class _Parking(Protocol):
    """Something one task at a time waits on (an outbox, the write pump)."""

    _waiter: trio.lowlevel.Task | None


async def _park(owner: _Parking) -> None:
    """Wait until :func:`_unpark` is called on ``owner`` (lighter than an Event,
    and nothing to reset: every connection has an outbox)."""
    owner._waiter = trio.lowlevel.current_task()

    def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        owner._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)


def _unpark(owner: _Parking) -> None:
    """Wake the task waiting on ``owner``, if there is one."""
    waiter = owner._waiter
    if waiter is not None:
        owner._waiter = None
        trio.lowlevel.reschedule(waiter)


class Flush:
    """Tells the writer to send what the protocol has queued."""


FLUSH = Flush()

Outgoing = DataOut | Broadcast | Disconnect | Flush


class Outbox:
    """A connection's bounded output queue: many senders, one reader (its writer).

    Lighter than a memory channel (a list, and the waiting writer task), as
    every connection has one. The writer takes everything queued at once, so
    a burst becomes one write.
    """

    __slots__ = ("_items", "_waiter", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[Outgoing] = []
        self._waiter: trio.lowlevel.Task | None = None

    def put_nowait(self, item: Outgoing) -> bool:
        """Queue ``item``; False (nothing queued) when the queue is full."""
        if len(self._items) >= self.limit:
            return False
        self._items.append(item)
        _unpark(self)
        return True

    @property
    def queued(self) -> int:
        return len(self._items)

    def take_nowait(self) -> list[Outgoing]:
        """Everything queued now (perhaps nothing), without waiting."""
        items, self._items = self._items, []
        return items

    async def get_all(self) -> list[Outgoing]:
        """Everything queued, waiting until there is something (one reader only)."""
        if not self._items:
            await _park(self)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        items, self._items = self._items, []
        return items


class WritePump:
    """One task that writes for every connection that has no writer task of its own.

    A telnet connection on a plain socket keeps no task waiting to write: its
    output is queued, the connection is put on this pump's list, and the pump
    renders and writes it without waiting (the socket is non-blocking). Only
    a write that does not fit the socket's buffer gets a task of its own, the
    connection's *drain*, which waits for the client under ``write_timeout``
    and ends once everything queued is written; the pump's nursery runs it.

    One task for all also makes the writes of a busy room cheap: a broadcast
    queued to a hundred connections is written by one task in one go, not by
    a hundred tasks each woken to write one line.

    Error handling:
        A connection whose flush raises is logged and dropped; the pump and
        every other connection go on.
    """

    def __init__(self) -> None:
        self._ready: list[Connection] = []
        self._waiter: trio.lowlevel.Task | None = None
        self._nursery: trio.Nursery | None = None

    def schedule(self, conn: Connection) -> None:
        """Have ``conn.flush()`` called soon (call once until it is)."""
        self._ready.append(conn)
        _unpark(self)

    def start_drain(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Run a connection's drain (a write that must wait) in the pump's nursery."""
        if self._nursery is None:
            raise RuntimeError("the write pump is not running")
        self._nursery.start_soon(drain)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write for scheduled connections until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                if not self._ready:
                    await _park(self)
                # Let whatever else is ready run once (the rest of a burst of
                # output may be on its way): then one write carries it all.
                await trio.lowlevel.checkpoint()
                ready, self._ready = self._ready, []
                for number, conn in enumerate(ready, 1):
                    try:
                        conn.flush()
                    except Exception:
                        log.exception(
                            "sessid %d: connection failed while writing", conn.session.sessid
                        )
                        conn.abort("internal error")
                    if number % WRITES_PER_CHECKPOINT == 0:
                        await trio.lowlevel.checkpoint()
                del ready


class Connection:
    """One client connection, whatever its transport: session and queues.

    Subclasses own the transport (:mod:`trio_mud.transports.telnet`,
    :mod:`trio_mud.transports.websocket`, ...): they run a reader, and either
    a single writer task that drains the outbox or, for telnet, a
    :meth:`flush` that the portal's :class:`WritePump` calls.
    """

    protocol_key = "telnet"

    # Slots: a server holds thousands of connections (a transport's subclass
    # may leave them out and have a __dict__ as well).
    __slots__ = (
        "_announced",
        "_cancel_scope",
        "_closing",
        "_commands",
        "_dropped_in_row",
        "_early",
        "_hidden_line",
        "_outbox",
        "_stalled",
        "close_reason",
        "introduced",
        "known",
        "last_input",
        "pending",
        "portal",
        "received",
        "sent",
        "session",
        "told_input_dropped",
    )

    def __init__(self, portal: ConnectionHost, session: PortalSession) -> None:
        self.portal = portal
        self.session = session
        self._outbox = Outbox(self.settings.max_output_queue)
        #: The connection's one cancel scope. While a write is under way its
        #: deadline is ``write_timeout`` away: a stalled client is dropped.
        self._cancel_scope = trio.CancelScope()
        self._stalled = False
        #: When the client last sent anything (for ``idle_timeout``; the
        #: portal's sweeper closes idle connections, no timer per read).
        self.last_input = trio.current_time()
        self._closing = False
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
        self._commands = TokenBucket(
            self.settings.max_command_rate, self.settings.command_rate_burst, trio.current_time()
        )
        #: The next line answers a hidden (password) prompt: never echoed.
        self._hidden_line = False
        #: Inputs dropped in a row for going over the command rate.
        self._dropped_in_row = 0
        self.close_reason = "connection closed"
        #: Bytes as they crossed the wire (after TLS is undone, before MCCP is).
        self.received = 0
        self.sent = 0

    def traffic(self) -> tuple[int, int, int, int]:
        """Bytes received and sent on the wire, and the same without MCCP
        compression (the same numbers where nothing is compressed)."""
        return self.received, self.sent, self.received, self.sent

    @property
    def settings(self) -> Settings:
        """The portal's settings now (a SIGHUP may change them while we run)."""
        return self.portal.settings

    async def run(self) -> None:
        raise NotImplementedError

    @property
    def queued(self) -> int:
        """Messages waiting in the output queue now."""
        return self._outbox.queued

    @property
    def is_closing(self) -> bool:
        """Whether the connection is on its way out."""
        return self._closing

    # -- called from outside the connection's tasks (never blocks) ------------------

    def send_nowait(self, message: Outgoing) -> None:
        """Queue a message for the writer; a full queue means the client is stuck."""
        if self._closing:
            return
        if type(message) is DataOut and message.cmdname == "prompt":
            self._hidden_line = bool(message.kwargs.get("password"))
        if not self._outbox.put_nowait(message):
            self.portal.count_slow_client()
            self.abort(
                f"output queue full ({self.settings.max_output_queue} messages): "
                "client is not reading"
            )
        else:
            self._output_queued()

    def _output_queued(self) -> None:
        """Something was queued: a transport whose writer is not a task of its
        own (a waiting writer task is woken by the outbox) has it written."""

    def flush(self) -> None:
        """Write what is queued, for the :class:`WritePump` (connections it
        writes for override this)."""
        raise NotImplementedError

    def close(self, reason: str) -> None:
        """Close after everything queued so far, with ``reason`` as the last words."""
        if self._closing:
            return
        if not self._outbox.put_nowait(Disconnect(self.session.sessid, reason)):
            self.abort(f"closing with a full output queue: {reason}")
            return
        self._output_queued()
        self._closing = True
        if reason:
            self.close_reason = reason

    def tick(self, now: float) -> None:
        """Called by the portal's sweeper now and then: what is due by the clock."""
        self.check_idle(now)

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

    @contextmanager
    def write_deadline(self) -> Iterator[None]:
        """Around a wait for the client to take output: ``write_timeout`` from
        now, the connection's own scope is cancelled and it counts as stalled.

        Setting the deadline of the one scope for the wait (and lifting it
        after) costs far less than a new scope per write.
        """
        scope = self._cancel_scope
        scope.deadline = trio.current_time() + self.settings.write_timeout
        try:
            yield
        except trio.Cancelled:
            if trio.current_time() >= scope.deadline:
                self._stalled = True
            raise
        finally:
            scope.deadline = math.inf

    # -- the connection's tasks ------------------------------------------------------

    async def _announce(self) -> None:
        """Tell the handler about this session (once whatever the transport
        negotiates has settled), then pass on the input held meanwhile."""
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
        """A line the player typed: checked, cleaned and passed on.

        With the ``INPUTDEBUG`` option the player is shown the line as it
        came, control characters spelled out; with ``LOCALECHO``, the line
        (for clients that do not show what was typed).
        """
        settings = self.settings
        flags = self.session.protocol_flags
        if flags.get("INPUTDEBUG"):
            self.session.data_out(text=markup.escape(f"INPUT: {show_controls(text)}"))
        text = clean_input(text)
        hidden, self._hidden_line = self._hidden_line, False
        if flags.get("LOCALECHO") and not hidden:
            self.session.data_out(text=markup.escape(text))
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


def _mssp_text(variables: list[tuple[str, str]]) -> str:
    """The plain-text MSSP reply that crawlers read at the login screen."""
    lines = ["MSSP-REPLY-START", *(f"{name}\t{value}" for name, value in variables)]
    return "\n".join(markup.escape(line) for line in [*lines, "MSSP-REPLY-END"])


def forwarded_address(
    host: ListenerHost, peer: str, forwarded: str | None
) -> tuple[str, tuple[int, str] | None]:
    """The client's address for a request with ``X-Forwarded-For`` ``forwarded``,
    and a refusal (HTTP status, text) or None.

    The header is believed only from the proxies in ``upstream_ips`` (and the
    client it names is then rate-limited as itself); from anyone else it is
    refused, as is one that names no IP address.
    """
    if forwarded is None:
        return peer, None
    if not proxy.trusted(peer, host.settings.upstream_ips):
        host.log_limited(
            logging.WARNING,
            f"xff {peer}",
            "refused a request from %s: X-Forwarded-For is only taken from upstream_ips",
            peer,
        )
        return peer, (403, "X-Forwarded-For is only taken from the game's own proxies.")
    address = proxy.forwarded_for(forwarded)
    if address is None:
        return peer, (400, "X-Forwarded-For names no IP address.")
    refusal = host.admit_forwarded(address)
    return address, None if refusal is None else (429, refusal)

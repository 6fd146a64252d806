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
import errno
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import trio
from attrs import define, field, frozen

from . import markup
from ._version import __version__
from .messages import (
    Connect,
    DataIn,
    DataOut,
    Disconnect,
    PortalMessage,
    ServerMessage,
    SessionUpdate,
    SyncData,
)
from .mudtelnet import (
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

#: accept() errors that mean "out of resources, try again shortly".
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: Control characters a player may not send on to others: C0 (tab becomes a
#: space), DEL and C1. ESC is among them, so no raw escape sequence passes.
_INPUT_CONTROLS: dict[int, str | None] = {c: None for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_INPUT_CONTROLS[0x09] = " "


def clean_input(text: str) -> str:
    """Remove control characters from a line a player typed."""
    return text.translate(_INPUT_CONTROLS)


@frozen
class PortalStatistics:
    """A snapshot of the portal's counters."""

    connections_open: int
    connections_total: int
    connections_refused: int
    slow_client_disconnects: int
    inbound_queue: int


@define
class PortalLink:
    """What a handler gets when it attaches to a portal.

    ``snapshot`` holds the sync data of every session live at attach time;
    ``inbound`` carries everything after that; ``send_nowait`` takes the
    handler's messages and never blocks.
    """

    inbound: trio.MemoryReceiveChannel[PortalMessage]
    snapshot: list[SyncData]
    send_nowait: Callable[[ServerMessage], None]


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
        """Pass input to the handler without waiting.

        The connection's reader uses the waiting path instead, so that a busy
        handler slows that client down rather than dropping its input.
        """
        if self.connection is None:
            return
        for cmdname, (args, cmd_kwargs) in _normalize(kwargs):
            self.connection.portal.send_inbound_nowait(
                DataIn(self.sessid, cmdname, args, cmd_kwargs), self
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


class _Flush:
    """Tells the writer to send what the protocol has queued."""


_FLUSH = _Flush()

_Outgoing = DataOut | Disconnect | _Flush


class _Connection:
    """One telnet connection: its session, protocol, reader and writer."""

    def __init__(self, portal: Portal, stream: trio.SocketStream, session: PortalSession) -> None:
        self.portal = portal
        self.settings = portal.settings
        self.stream = stream
        self.session = session
        self.protocol = MudTelnet(
            max_partial_line=self.settings.max_partial_line,
            max_subnegotiation=self.settings.max_subnegotiation,
            max_inflated=self.settings.max_inflated,
            mccp=self.settings.mccp,
        )
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[_Outgoing](
            self.settings.max_output_queue
        )
        self._cancel_scope = trio.CancelScope()
        self._closing = False
        self._settled = trio.Event()
        self._announced = False
        #: Input that arrived before the handler heard of this session.
        self._early: list[DataIn] = []
        self._commands = _TokenBucket(
            self.settings.max_command_rate, self.settings.command_rate_burst, trio.current_time()
        )
        self.close_reason = "connection closed"

    # -- called from outside the connection's tasks (never blocks) ------------------

    def send_nowait(self, message: _Outgoing) -> None:
        """Queue a message for the writer; a full queue means the client is stuck."""
        if self._closing:
            return
        try:
            self._outbox_send.send_nowait(message)
        except trio.WouldBlock:
            self.portal._slow_client_disconnects += 1
            self.abort(
                f"output queue full ({self.settings.max_output_queue} messages): "
                "client is not reading"
            )
        except trio.ClosedResourceError:
            pass

    def close(self, reason: str) -> None:
        """Close after everything queued so far, with ``reason`` as the last words."""
        if self._closing:
            return
        try:
            self._outbox_send.send_nowait(Disconnect(self.session.sessid, reason))
        except trio.WouldBlock:
            self.abort(f"closing with a full output queue: {reason}")
            return
        except trio.ClosedResourceError:
            return
        self._closing = True
        if reason:
            self.close_reason = reason

    def abort(self, reason: str) -> None:
        """Drop the connection now, without writing anything more."""
        if not self._closing:
            log.warning("sessid %d (%s): %s", self.session.sessid, self.session.address, reason)
        self._closing = True
        self.close_reason = reason
        self._cancel_scope.cancel()

    # -- the connection's tasks ------------------------------------------------------

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

    async def _announce(self) -> None:
        """Tell the handler about this session once negotiation has settled.

        Waits at most ``negotiation_timeout``: a client that answers nothing
        (a raw TCP client, say) still gets the game, just without extras.
        """
        with trio.move_on_after(self.settings.negotiation_timeout):
            await self._settled.wait()
        await self.portal._send_inbound(Connect(self.session.sessid, self.session.get_sync_data()))
        # The reader never waits for this: what it got meanwhile is held here,
        # and goes on in order.
        while self._early:
            await self.portal._send_inbound(self._early.pop(0))
        self._announced = True

    async def _to_handler(self, message: DataIn) -> None:
        if self._announced:
            await self.portal._send_inbound(message)
        else:
            self._early.append(message)

    async def _reader(self) -> None:
        idle = self.settings.idle_timeout or math.inf
        while not self._closing:
            with trio.move_on_after(idle) as idle_scope:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            if idle_scope.cancelled_caught:
                log.info("sessid %d: idle for %.0f s", self.session.sessid, idle)
                self.close("Idle timeout exceeded, disconnecting.")
                return
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
            for event in events:
                await self._handle_event(event)

    async def _handle_event(self, event: MudEvent) -> None:
        if isinstance(event, TextLine):
            await self._handle_line(event.data)
        elif isinstance(event, FlagsChanged):
            self.session.protocol_flags.update(event.flags)
            if self._announced:
                await self.portal._send_inbound(
                    SessionUpdate(self.session.sessid, {"protocol_flags": event.flags})
                )
        elif isinstance(event, OOBInput):
            await self._to_handler(
                DataIn(self.session.sessid, event.cmdname, event.args, event.kwargs)
            )
        elif isinstance(event, Settled):
            self._settled.set()
        elif isinstance(event, MSSPRequest):
            self.protocol.send_mssp(self.portal.mssp_variables())
            self.send_nowait(_FLUSH)

    async def _handle_line(self, data: bytes) -> None:
        settings = self.settings
        encoding = self.session.protocol_flags.get("ENCODING", "utf-8")
        try:
            text = data.decode(encoding, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        text = clean_input(text)
        if len(text) > settings.max_char_limit:
            log.info("sessid %d: dropped a %d-character line", self.session.sessid, len(text))
            self.session.data_out(
                text=f"Your input was too long ({len(text)} characters; the limit is "
                f"{settings.max_char_limit}) and was ignored."
            )
            return
        if not self._commands.take(trio.current_time()):
            self.session.data_out(text=settings.command_rate_warning)
            return
        if text.strip() == "MSSP-REQUEST" and not self.session.logged_in:
            self.session.data_out(text=_mssp_text(self.portal.mssp_variables()))
            return
        await self._to_handler(DataIn(self.session.sessid, "text", (text,), {}))

    async def _writer(self) -> None:
        keepalive = self.settings.telnet_keepalive or math.inf
        while True:
            with trio.move_on_after(keepalive) as quiet:
                try:
                    message = await self._outbox_recv.receive()
                except trio.EndOfChannel:
                    return
            if quiet.cancelled_caught:
                self.protocol.send_keepalive()
                await self._write(self.protocol.data_to_send())
                continue
            if isinstance(message, Disconnect):
                if message.reason:
                    self._render_text(message.reason)
                await self._write(self.protocol.data_to_send() + self.protocol.close())
                self._cancel_scope.cancel()
                return
            if isinstance(message, DataOut):
                self._render(message)
            data = self.protocol.data_to_send()
            if data:
                await self._write(data)

    async def _write(self, data: bytes) -> None:
        with trio.move_on_after(self.settings.write_timeout) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.close_reason = "client connection broke"
                self._cancel_scope.cancel()
        if scope.cancelled_caught:
            self.abort(f"one write took over {self.settings.write_timeout:g} s: client stalled")

    # -- output rendering --------------------------------------------------------------

    def _render(self, message: DataOut) -> None:
        """Queue ``message`` in the protocol, in this client's form."""
        cmdname, args, kwargs = message.cmdname, message.args, message.kwargs
        if cmdname == "text":
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
        flags = self.session.protocol_flags
        rendered = markup.render(
            text, markup.level_for(flags), screenreader=bool(flags.get("SCREENREADER"))
        )
        if not rendered.endswith(("\n", "\r")):
            rendered += "\n"
        self.protocol.send_text(rendered, flags.get("ENCODING", "utf-8"))


def _mssp_text(variables: list[tuple[str, str]]) -> str:
    """The plain-text MSSP reply that crawlers read at the login screen."""
    lines = ["MSSP-REPLY-START", *(f"{name}\t{value}" for name, value in variables)]
    return "\n".join(markup.escape(line) for line in [*lines, "MSSP-REPLY-END"])


class Portal:
    """Listens, runs every connection, and talks to one handler at a time.

    Args:
        settings: the server's configuration.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connections: dict[int, _Connection] = {}
        self._sessids = itertools.count(1)
        self._inbound_send, self._inbound_recv = trio.open_memory_channel[PortalMessage](
            settings.inbound_queue_size
        )
        self._buckets: dict[str, _TokenBucket] = {}
        self._accept_scope: trio.CancelScope | None = None
        self._connection_closed = trio.lowlevel.ParkingLot()
        self._connections_total = 0
        self._connections_refused = 0
        self._slow_client_disconnects = 0
        self.telnet_addresses: list[tuple[str, int]] = []
        self.started = time.time()

    # -- the handler's side ----------------------------------------------------------

    def attach(self) -> PortalLink:
        """Give a (new) handler the live sessions and the inbound channel."""
        snapshot = [conn.session.get_sync_data() for conn in self._connections.values()]
        return PortalLink(self._inbound_recv.clone(), snapshot, self.send_nowait)

    def send_nowait(self, message: ServerMessage) -> None:
        """Route a handler's message to its connection. Never blocks."""
        conn = self._connections.get(message.sessid)
        if conn is None:
            return  # that client left already
        if isinstance(message, SessionUpdate):
            conn.session.load_sync_data(message.sync_data)
        elif isinstance(message, Disconnect):
            conn.close(message.reason)
        else:
            conn.send_nowait(message)

    async def _send_inbound(self, message: PortalMessage) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._inbound_send.send(message)  # these errors: shutting down

    def send_inbound_nowait(self, message: PortalMessage, session: PortalSession) -> None:
        try:
            self._inbound_send.send_nowait(message)
        except trio.WouldBlock:
            session.data_out(text="The server is busy; your input was dropped.")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

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

    @property
    def sessions(self) -> dict[int, PortalSession]:
        return {sessid: conn.session for sessid, conn in self._connections.items()}

    def statistics(self) -> PortalStatistics:
        return PortalStatistics(
            connections_open=len(self._connections),
            connections_total=self._connections_total,
            connections_refused=self._connections_refused,
            slow_client_disconnects=self._slow_client_disconnects,
            inbound_queue=self._inbound_send.statistics().current_buffer_used,
        )

    async def run(
        self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled or :meth:`shutdown`; report the bound addresses.

        ``task_status.started`` receives ``[(host, port), ...]`` for the telnet
        listeners, so that a caller that asked for port 0 learns the real port.
        """
        listeners: list[trio.SocketListener] = []
        try:
            for interface in self.settings.telnet_interfaces:
                for port in self.settings.telnet_ports:
                    listeners += await trio.open_tcp_listeners(port, host=interface)
            self.telnet_addresses = [lst.socket.getsockname()[:2] for lst in listeners]
            # Connections live in their own nursery, apart from the accept
            # loops: when shutdown() stops accepting, they carry on until
            # they have said goodbye.
            async with trio.open_nursery() as connections, trio.open_nursery() as accepting:
                self._accept_scope = accepting.cancel_scope
                for listener in listeners:
                    accepting.start_soon(self._accept_loop, listener, connections)
                for host, port in self.telnet_addresses:
                    log.info("telnet listening on %s port %d", host, port)
                task_status.started(self.telnet_addresses)
        finally:
            for listener in listeners:
                await listener.aclose()
            self._inbound_send.close()

    async def shutdown(self, message: str | None = None) -> None:
        """Stop accepting, say goodbye to every client and close them all.

        Waits at most ``settings.shutdown_grace`` for the goodbyes to be
        written; connections still open then are dropped.
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
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                    log.error("accept() failed (%s); pausing 0.1 s", errno.errorcode[exc.errno])
                    await trio.sleep(0.1)
                    continue
                raise
            nursery.start_soon(self._serve, stream)

    def _admit(self, address: str) -> str | None:
        """Why a new connection from ``address`` must be refused, or None."""
        if len(self._connections) >= self.settings.max_connections:
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
        try:
            address = str(stream.socket.getpeername()[0])
        except OSError:
            address = "?"
        refusal = self._admit(address)
        if refusal is not None:
            self._connections_refused += 1
            log.warning("refused a connection from %s: %s", address, refusal)
            with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(TelnetProtocol.encode_text(refusal + "\n"))
            await trio.aclose_forcefully(stream)
            return
        sessid = next(self._sessids)
        session = PortalSession(
            protocol_key="telnet",
            address=address,
            sessid=sessid,
            sync_attrs=self.settings.session_sync_attrs,
        )
        conn = _Connection(self, stream, session)
        session.connection = conn
        self._connections[sessid] = conn
        self._connections_total += 1
        log.info("sessid %d: connected from %s", sessid, address)
        try:
            await conn.run()
        except Exception:
            conn.close_reason = "internal error"
            log.exception("sessid %d: connection failed", sessid)
        finally:
            del self._connections[sessid]
            session.connection = None
            self._connection_closed.unpark_all()
            log.info("sessid %d: disconnected (%s)", sessid, conn.close_reason)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1.0):
                    await self._send_inbound(Disconnect(sessid, conn.close_reason))
                await trio.aclose_forcefully(stream)

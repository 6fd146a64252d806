"""The portal: listeners, the connection nursery, and routing.

The portal owns every socket. Each admitted socket becomes a connection of its
transport (:mod:`trio_mud.transports`) running as one supervised task among the
portal's connections; input goes to the handler through the portal's
:class:`~trio_mud.generations.Generations` (which also runs hot restarts), and
the handler's messages come back through :meth:`Portal.send_nowait` into each
connection's bounded queue, which only that connection's writer drains.

Error handling:
    Whatever goes wrong inside one connection (bad bytes, a stalled client, a
    bug) ends that connection only, and is logged with its sessid. Listener
    errors from running out of file descriptors are logged (at most once in a
    while) and retried.

Resource handling:
    :meth:`Portal.run` owns the listeners and every connection; when it
    returns, all of them are closed. :meth:`Portal.shutdown` says goodbye to
    every client and waits at most ``settings.shutdown_grace`` for it to be
    written.
"""

from __future__ import annotations

import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio
from attrs import frozen

from ._version import __version__
from .admission import (
    AddressSet,
    AdmittingListener,
    RateLimitedLog,
    Tally,
    open_listeners,
    peer_address,
)
from .generations import Generations, PortalLink, Starter, StatusTap
from .messages import (
    BanList,
    Broadcast,
    Counters,
    DataOut,
    Disconnect,
    PortalMessage,
    SessionUpdate,
    ShutdownRequest,
)
from .protocols import proxy
from .settings import Settings
from .transports import tls
from .transports.connection import (
    Connection,
    PortalSession,
    PrefixedStream,
    TokenBucket,
    WritePump,
)
from .transports.telnet import TelnetConnection, refuse_telnet

__all__ = [
    "Connection",
    "Portal",
    "PortalLink",
    "PortalSession",
    "PortalStatistics",
    "Starter",
    "StatusTap",
    "TelnetConnection",
]

log = logging.getLogger("trio_mud.portal")


Traffic = tuple[int, int, int, int]


def _summed(a: Traffic, b: Traffic) -> Traffic:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


class Refusal(str):
    """What a refused client is told; ``reason`` is its short name for the
    metrics (``full``, ``banned``, ``per_address``, ``rate``)."""

    reason: str

    def __new__(cls, text: str, reason: str) -> Refusal:
        refusal = super().__new__(cls, text)
        refusal.reason = reason
        return refusal


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


class Portal:
    """Listens, runs every connection, and talks to one handler at a time.

    Handlers come and go in *generations* (:mod:`trio_mud.generations`). A
    generation calls :meth:`attach`; if another is serving, that one is
    paused first (it finishes and saves what it has), and the new one gets a
    snapshot of every session. Once it sends ``Loaded`` it takes over and the
    old one is retired; if it fails first, the old one resumes. While no
    handler takes input, what players type waits in a bounded queue per
    session, in order.

    Args:
        settings: the server's configuration.
        starter: how to run a handler generation (see
            :class:`~trio_mud.generations.Starter`). With one, :meth:`run`
            starts the first generation, :meth:`reload` replaces it, and a
            generation that dies is restarted. Without one, handlers are
            started by hand (``handler.run(portal)``).
    """

    def __init__(self, settings: Settings, *, starter: Starter | None = None) -> None:
        #: The sweeper waits here too: new settings may change its interval.
        self._settings_changed = trio.lowlevel.ParkingLot()
        self.settings = settings
        self.starter = starter
        self._connections: dict[int, Connection] = {}
        self._sessids = itertools.count(1)
        self._buckets: dict[str, TokenBucket] = {}
        self._accept_scope: trio.CancelScope | None = None
        self._connections_nursery: trio.Nursery | None = None
        self._connection_closed = trio.lowlevel.ParkingLot()
        self._write_pump = WritePump()
        self._connections_total = 0
        self._connections_refused = 0
        self._slow_client_disconnects = 0
        #: Sockets accepted and not yet closed, on every listener.
        self._open_sockets = 0
        self._log_limiter = RateLimitedLog(log)
        self.telnet_addresses: list[tuple[str, int]] = []
        #: Telnet-over-TLS listeners' addresses (``ssl_ports``).
        self.tls_addresses: list[tuple[str, int]] = []
        self._tls_context: ssl.SSLContext | None = None
        self.websocket_addresses: list[tuple[str, int]] = []
        self.web_addresses: list[tuple[str, int]] = []
        #: SSH listeners' addresses (``ssh_ports``), and the metrics' own.
        self.ssh_addresses: list[tuple[str, int]] = []
        self.metrics_addresses: list[tuple[str, int]] = []
        #: Resume token -> WebSocket session (see trio_mud.transports.websocket).
        self.websocket_tokens: dict[str, Any] = {}
        #: csessid -> AJAX session (see trio_mud.transports.ajax).
        self.ajax_sessions: dict[str, Any] = {}
        self.started = time.time()
        #: Called when an admin asks for a shutdown (with the goodbye text).
        self.on_shutdown_request: Callable[[str | None], None] | None = None
        #: Addresses and networks refused at accept time (the game's bans).
        self.bans = AddressSet(())
        #: Sessions open now per client address, and sockets open per peer
        #: (handshakes included): ``max_connections_per_address`` caps both.
        self._per_address = Tally()
        self._sockets_per_address = Tally()
        #: What handlers counted (failed logins, input errors, ...), for the metrics.
        self.counters: dict[str, int] = {}
        #: Sessions started by protocol, and connections refused by reason.
        self.accepted_by_protocol: dict[str, int] = {}
        self.refused_by_reason: dict[str, int] = {}
        #: Bytes of connections that have closed, by protocol (see traffic()).
        self._closed_traffic: dict[str, tuple[int, int, int, int]] = {}
        #: The handler generations: input towards them, hot restarts.
        self.generations = Generations(settings, self, starter=starter)

    # -- towards the handler (the generations do the work) ------------------------------

    async def to_handler(self, conn: Connection, message: PortalMessage) -> None:
        """Pass ``message`` on, waiting while the handler is busy (see
        :meth:`Generations.to_handler`)."""
        await self.generations.to_handler(conn, message)

    def queue_nowait(self, conn: Connection, message: PortalMessage) -> None:
        """Queue ``message`` for the handler; never blocks."""
        self.generations.queue_nowait(conn, message)

    async def attach(self) -> PortalLink:
        """Let a handler generation take over (see :meth:`Generations.attach`)."""
        return await self.generations.attach()

    async def start_generation(self) -> None:
        """Start a handler generation with the starter; return once it is live."""
        await self.generations.start_generation()

    async def reload(self) -> str | None:
        """Replace the handler generation; None, or why it failed.

        The TLS certificate and key are read again too, for the connections
        that come after (a renewed certificate needs no restart).
        """
        await self.reload_tls()
        return await self.generations.reload()

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for new connections (None when nothing uses TLS)."""
        return self._tls_context

    async def reload_tls(self) -> None:
        """Read the TLS certificate and key again; keep the old ones if they fail."""
        if self._tls_context is None:
            return
        try:
            context = await trio.to_thread.run_sync(tls.server_context, self.settings)
        except tls.TLSSetupError as exc:
            log.error("TLS certificate not reloaded (the old one stays): %s", exc)
            return
        self._tls_context = context
        log.info("TLS certificate reloaded for new connections")

    @property
    def live(self) -> bool:
        """Whether a handler is taking input now."""
        return self.generations.live

    # -- towards the clients -------------------------------------------------------------

    @property
    def connections(self) -> Mapping[int, Connection]:
        """The connections open now, by sessid."""
        return self._connections

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload may replace them)."""
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = settings
        self._settings_changed.unpark_all()

    def route(self, message: DataOut | Broadcast | Disconnect | SessionUpdate) -> None:
        """Deliver a handler's message (what :meth:`send_nowait` does)."""
        self.send_nowait(message)

    def control(self, message: ShutdownRequest | BanList | Counters) -> None:
        """A handler's request: a shutdown, the banned addresses, counters."""
        if isinstance(message, ShutdownRequest):
            log.warning("sessid %d asked for a shutdown", message.sessid)
            if self.on_shutdown_request is not None:
                self.on_shutdown_request(message.message)
        elif isinstance(message, BanList):
            self.bans = AddressSet(message.addresses)
            log.info("%d addresses or networks banned", len(message.addresses))
        else:
            for name, count in message.values.items():
                self.counters[name] = self.counters.get(name, 0) + count

    @property
    def write_pump(self) -> WritePump:
        """The task that writes for telnet connections (see :class:`WritePump`)."""
        return self._write_pump

    def count_slow_client(self) -> None:
        """A client was disconnected for not reading its output."""
        self._slow_client_disconnects += 1

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

    def metrics(self, *, openmetrics: bool = False) -> tuple[bytes, str]:
        """The Prometheus exposition of the server's numbers (:mod:`trio_mud.metrics`)."""
        from . import metrics  # prometheus_client loads when first scraped

        return metrics.render(self, openmetrics=openmetrics)

    def count_refused(self, reason: str) -> None:
        """A connection was refused (or failed its handshake) for ``reason``."""
        self.refused_by_reason[reason] = self.refused_by_reason.get(reason, 0) + 1

    def traffic(self) -> dict[str, tuple[int, int, int, int]]:
        """Bytes by protocol, of every connection so far: received and sent on
        the wire, then the same without MCCP (see :meth:`Connection.traffic`)."""
        totals = dict(self._closed_traffic)
        for conn in self._connections.values():
            key = conn.session.protocol_key
            before = totals.get(key, (0, 0, 0, 0))
            totals[key] = _summed(before, conn.traffic())
        return totals

    def address_of(self, sessid: int) -> str | None:
        """The address of session ``sessid`` if it is connected (for the logs)."""
        conn = self._connections.get(sessid)
        return None if conn is None else conn.session.address

    @property
    def sessions(self) -> dict[int, PortalSession]:
        return {sessid: conn.session for sessid, conn in self._connections.items()}

    def statistics(self) -> PortalStatistics:
        """A snapshot of the portal's counters."""
        pending = sum(len(c.pending) for c in self._connections.values())
        return PortalStatistics(
            connections_open=len(self._connections),
            connections_total=self._connections_total,
            connections_refused=self._connections_refused,
            slow_client_disconnects=self._slow_client_disconnects,
            pending_input=pending,
            in_flight=self.generations.in_flight,
            generations=self.generations.number,
            live=self.generations.live,
            open_sockets=self._open_sockets,
            poisoned_messages=self.generations.poisoned,
        )

    def mssp_variables(self) -> list[tuple[str, str]]:
        """What MUD listings read: name, players, uptime, ports, protocols."""
        players = sum(1 for conn in self._connections.values() if conn.session.logged_in)
        ports = sorted({port for _, port in self.telnet_addresses})
        tls_ports = sorted({port for _, port in self.tls_addresses})
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
            ("SSL", str(tls_ports[0]) if tls_ports else "0"),
            ("TLS", str(tls_ports[0]) if tls_ports else "0"),
        ]
        return variables + [(str(k), str(v)) for k, v in self.settings.mssp_extra]

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
            tls_listeners: list[trio.SocketListener] = []
            if self.settings.ssl_ports or self.settings.web_tls:
                self._tls_context = await trio.to_thread.run_sync(tls.server_context, self.settings)
            if self.settings.ssl_ports:
                for interface in self.settings.telnet_interfaces:
                    for port in self.settings.ssl_ports:
                        tls_listeners += await open_listeners(
                            "telnet over TLS", port, interface, option="--ssl-port"
                        )
                self.tls_addresses = [lst.socket.getsockname()[:2] for lst in tls_listeners]
            listeners += tls_listeners
            async with trio.open_nursery() as system:
                await system.start(self.generations.run)
                await system.start(self._write_pump.run)
                system.start_soon(self._sweep)
                # Connections live in their own nursery, apart from the accept
                # loops: when shutdown() stops accepting, they carry on until
                # they have said goodbye.
                async with trio.open_nursery() as connections, trio.open_nursery() as accepting:
                    self._connections_nursery = connections
                    self._accept_scope = accepting.cancel_scope
                    for listener in listeners:
                        secure = listener in tls_listeners
                        accepting.start_soon(self._accept_loop, listener, connections, secure)
                    for host, port in self.telnet_addresses:
                        log.info("telnet listening on %s port %d", host, port)
                    for host, port in self.tls_addresses:
                        log.info("telnet over TLS listening on %s port %d", host, port)
                    task_status.started(self.telnet_addresses)
                await self.generations.retire()
                system.cancel_scope.cancel()
        finally:
            self.generations.close()
            for listener in listeners:
                await listener.aclose()

    async def _sweep(self) -> None:
        """Close connections whose clients have been silent for ``idle_timeout``,
        and send telnet keepalives (``telnet_keepalive``).

        One task looks at every connection now and then (a tenth of the idle
        timeout, half the keepalive interval, at most a minute apart), instead
        of a timer on every connection. New settings (a reload's) take effect
        at once.
        """
        while True:
            settings = self.settings
            interval = 60.0
            if settings.idle_timeout:
                interval = min(interval, settings.idle_timeout / 10)
            if settings.telnet_keepalive:
                interval = min(interval, settings.telnet_keepalive / 2)
            with trio.move_on_after(interval):
                await self._settings_changed.park()
                continue  # new settings: work the interval out again
            now = trio.current_time()
            for conn in list(self._connections.values()):
                conn.tick(now)

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

    async def _accept_loop(
        self, listener: trio.SocketListener, nursery: trio.Nursery, secure: bool = False
    ) -> None:
        # A refusal is told in plain text only where the client speaks it.
        admitting = self.admitting(listener, refuse=None if secure else refuse_telnet)
        while True:
            stream = await admitting.accept()
            nursery.start_soon(self._serve, stream, secure)

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
            if not proxy.trusted(address, self.settings.upstream_ips):  # a proxy is many
                self._sockets_per_address.add(address)
        return refusal

    def release_socket(self, address: str) -> None:
        """An admitted socket from ``address`` (its peer) is closed: its place
        is free (call once per socket)."""
        self._open_sockets -= 1
        self._sockets_per_address.remove(address)

    def log_limited(self, level: int, key: str, message: str, *args: object) -> None:
        """Log a line that may recur often, at most once per 10 s per ``key``."""
        self._log_limiter.log(level, key, message, *args)

    def _admit(self, address: str) -> str | None:
        """Why a new connection from ``address`` must be refused, or None.

        A trusted proxy (``upstream_ips``) is not rate-limited as one
        address: the client it names is, once its header has been read.
        """
        cap = self.settings.max_connections
        if len(self._connections) >= cap or self._open_sockets >= cap:
            return Refusal("The server is full; please try again later.", "full")
        if proxy.trusted(address, self.settings.upstream_ips):
            return None
        return self._address_refusal(address)

    def admit_forwarded(self, address: str) -> str | None:
        """Why the client a trusted proxy names may not connect now (logged), or None."""
        return self._refused(address, self._address_refusal(address))

    def _address_refusal(self, address: str) -> str | None:
        """Why ``address`` itself may not connect now: a ban, its cap, its rate."""
        if address in self.bans:
            return Refusal(self.settings.ban_message, "banned")
        cap = self.settings.max_connections_per_address
        if self._per_address.get(address, 0) >= cap or (
            self._sockets_per_address.get(address, 0) >= cap
        ):
            return Refusal(
                "Too many connections from your address are open already.", "per_address"
            )
        return self._rate_refusal(address)

    def _refused(self, address: str, refusal: str | None) -> str | None:
        """``refusal``, counted and logged (at most once in a while per address)."""
        if refusal is not None:
            self._connections_refused += 1
            self.count_refused(getattr(refusal, "reason", "other"))
            self.log_limited(
                logging.WARNING,
                f"refused {address}",
                "refused a connection from %s: %s",
                address,
                refusal,
            )
        return refusal

    def _rate_refusal(self, address: str) -> str | None:
        """Why ``address`` may not connect again so soon (its rate), or None."""
        now = trio.current_time()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) > 4 * self.settings.max_connections:
                self._buckets = {a: b for a, b in self._buckets.items() if not b.full(now)}
            bucket = self._buckets[address] = TokenBucket(
                self.settings.max_connection_rate, self.settings.connection_rate_burst, now
            )
        if not bucket.take(now):
            return Refusal("Too many connections from your address; please wait a moment.", "rate")
        return None

    async def _serve(self, stream: trio.SocketStream, secure: bool = False) -> None:
        """Run an admitted telnet socket as a connection; close it after.

        Over TLS the handshake comes first, within ``handshake_timeout``; a
        client that fails it is closed (and logged, at most once in a while).
        """
        address = peer = peer_address(stream)
        transport: trio.abc.Stream = stream
        try:
            unwrapped = await self.behind_proxy(
                stream, address, refuse=None if secure else refuse_telnet
            )
            if unwrapped is None:
                return
            transport, address = unwrapped
            if secure:
                secured = await self._tls_handshake(transport, address)
                if secured is None:
                    return
                transport = secured
            session = self.new_session("telnet/ssl" if secure else "telnet", address)
            await self.run_connection(TelnetConnection(self, transport, session))
        finally:
            # Its place is free before anyone waiting for a closed connection
            # runs (there is no checkpoint between here and run_connection's end).
            self.release_socket(peer)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(transport)

    async def behind_proxy(
        self,
        stream: trio.SocketStream,
        address: str,
        *,
        refuse: Callable[[trio.SocketStream, str], Awaitable[None]] | None = None,
    ) -> tuple[trio.abc.Stream, str] | None:
        """The stream to go on with and the client's address, for a new socket.

        A socket from a trusted proxy (``upstream_ips``) starts with a PROXY
        header naming the client: it is read here, and the client admitted
        as itself (``refuse(stream, text)`` may tell it why not). None when
        the connection must be closed (logged); otherwise ``stream`` and
        ``address`` as they were, for anyone else.
        """
        if not proxy.trusted(address, self.settings.upstream_ips):
            return stream, address
        found = await self._read_proxy_header(stream, address)
        if found is None:
            return None
        header, rest = found
        address = header.source or address
        refusal = self.admit_forwarded(address) if header.source else None
        if refusal is not None:
            if refuse is not None:
                with trio.move_on_after(1.0):
                    await refuse(stream, refusal)
            return None
        return (PrefixedStream(stream, rest) if rest else stream), address

    async def _tls_handshake(
        self, transport: trio.abc.Stream, address: str
    ) -> trio.SSLStream[trio.abc.Stream] | None:
        """``transport`` over TLS once the handshake is done, or None (logged)
        when it fails or takes over ``handshake_timeout``."""
        assert self._tls_context is not None
        secured = trio.SSLStream(transport, self._tls_context, server_side=True)
        why: object = f"it took over {self.settings.handshake_timeout:g} s"
        with trio.move_on_after(self.settings.handshake_timeout):
            try:
                await secured.do_handshake()
                return secured
            except trio.BrokenResourceError as exc:
                why = exc.__cause__ or exc
        self.count_refused("tls_handshake")
        self.log_limited(
            logging.INFO, f"tls {address}", "TLS handshake with %s failed: %s", address, why
        )
        return None

    async def _read_proxy_header(
        self, stream: trio.SocketStream, peer: str
    ) -> tuple[proxy.ProxyHeader, bytes] | None:
        """The PROXY header a trusted proxy sends first, and the bytes after it.

        None (and a log line) when it is malformed, missing or too slow
        (``handshake_timeout``): the connection is then closed.
        """
        data = b""
        why = "it closed the connection before a whole PROXY header"
        with trio.move_on_after(self.settings.handshake_timeout) as waiting:
            try:
                while True:
                    header = proxy.parse_header(data)
                    if header is not None:
                        return header, data[header.length :]
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    data += chunk
            except proxy.ProxyHeaderError as exc:
                why = str(exc)
            except trio.BrokenResourceError:
                pass
        if waiting.cancelled_caught:
            why = f"no whole PROXY header within {self.settings.handshake_timeout:g} s"
        self.count_refused("proxy_header")
        self.log_limited(
            logging.WARNING,
            f"proxy {peer}",
            "closed a connection from the proxy %s: %s",
            peer,
            why,
        )
        return None

    def admit(self, address: str) -> str | None:
        """Why a new connection from ``address`` must be refused (logged), or None.

        Listeners made with :meth:`admitting` ask this at accept time; a
        transport with listeners of its own must ask it too.
        """
        return self._refused(address, self._admit(address))

    def new_session(self, protocol_key: str, address: str) -> PortalSession:
        """A session with a fresh sessid, for a connection about to run."""
        return PortalSession(
            protocol_key=protocol_key,
            address=address,
            sessid=next(self._sessids),
            sync_attrs=self.settings.session_sync_attrs,
        )

    def start_connection(self, conn: Connection) -> None:
        """Run ``conn`` among the portal's connections (another transport's)."""
        if self._connections_nursery is None:
            raise RuntimeError("the portal is not running")
        self._connections_nursery.start_soon(self.run_connection, conn)

    async def run_connection(self, conn: Connection) -> None:
        """Run ``conn`` as one of the portal's connections, supervised.

        Whatever goes wrong inside it is logged with its sessid and ends that
        connection only.
        """
        session = conn.session
        sessid = session.sessid
        session.connection = conn
        self._connections[sessid] = conn
        self._connections_total += 1
        address = session.address
        self._per_address.add(address)
        protocol = session.protocol_key
        self.accepted_by_protocol[protocol] = self.accepted_by_protocol.get(protocol, 0) + 1
        _log_connected(session)
        try:
            await conn.run()
        except Exception:
            conn.close_reason = "internal error"
            log.exception("sessid %d: connection failed", sessid)
        finally:
            del self._connections[sessid]
            self._per_address.remove(address)
            before = self._closed_traffic.get(protocol, (0, 0, 0, 0))
            self._closed_traffic[protocol] = _summed(before, conn.traffic())
            session.connection = None
            log.info("sessid %d: disconnected (%s)", sessid, conn.close_reason)
            if conn.introduced:
                self.queue_nowait(conn, Disconnect(sessid, conn.close_reason))
            else:
                conn.pending.clear()  # no handler ever heard of it
            self._connection_closed.unpark_all()


def _log_connected(session: PortalSession) -> None:
    """Log a new connection, from a frame of its own.

    Logging looks up its caller's frame, which makes CPython keep a frame
    object for it: logged from :meth:`Portal.run_connection` itself, every
    open connection would hold one (264 bytes) for as long as it runs.
    """
    log.info(
        "sessid %d: %s connection from %s", session.sessid, session.protocol_key, session.address
    )

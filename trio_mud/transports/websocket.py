"""WebSocket connections: Evennia's JSON and the mudstandards.org formats.

Each WebSocket connection runs like a telnet one: a supervised task owning a
:class:`~trio_mud.nursery_portal.PortalSession` (``protocol_key``
``"websocket"``), the same queues to the handler. The format is negotiated
with ``Sec-WebSocket-Protocol``, the first of the server's order that the
client offers (``v1.evennia.com`` when it offers none):

``v1.evennia.com``
    Text frames, JSON arrays ``[cmdname, [args], {kwargs}]`` both ways; game
    text goes out as ``["text", [html], {}]``, prompts as ``["prompt", ...]``.
``gmcp.mudstandards.org``
    Binary frames carry ANSI text both ways; text frames carry GMCP,
    ``Package.Name <json>``.
``json.mudstandards.org``
    Binary frames carry ANSI text both ways; text frames carry
    ``{"proto": ..., "id": ..., "data": ...}`` (``proto`` "gmcp" for OOB,
    "prompt" for prompts).
``terminal.mudstandards.org``
    ANSI text both ways, nothing else.

Liveness: the server pings every ``websocket_ping_interval`` seconds; a peer
that does not answer within ``websocket_ping_timeout`` is gone. A session
whose socket goes away (a closed tab, a network drop) is kept for
``websocket_resume_grace`` seconds: a client that reconnects with the token
the server gave it (``?token=...`` on the URL) gets its session back, logged
in, with what was said meanwhile. After that the session ends.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)

from .. import markup
from ..admission import open_listeners, peer_address
from ..messages import Broadcast, DataOut, Disconnect, SessionUpdate
from ..protocols.mudtelnet import (
    gmcp_input,
    gmcp_package,
    gmcp_wanted,
    supports_refused_message,
    update_gmcp_supports,
)
from ..protocols.wsformats import (
    EVENNIA,
    GMCP,
    JSON,
    BadFrame,
    ClientOOB,
    ClientText,
    choose_subprotocol,
    decode_frame,
)
from .connection import FLUSH, Connection, ListenerHost, forwarded_address

log = logging.getLogger("trio_mud.websocket")

WEB_FLAGS = {"ANSI": True, "XTERM256": True, "TRUECOLOR": True, "UTF-8": True}


class WebSocketSession(Connection):
    """One WebSocket client; it may detach and come back within the grace."""

    protocol_key = "websocket"
    portal: ListenerHost

    def __init__(self, portal: ListenerHost, session: Any, subprotocol: str) -> None:
        super().__init__(portal, session)
        self.subprotocol = subprotocol
        self.token = secrets.token_urlsafe(24)
        self.ws: WebSocketConnection | None = None
        self._attached = trio.Event()
        self._gone = trio.Event()
        self.session.protocol_flags.update(WEB_FLAGS)
        self.session.protocol_flags["CLIENTNAME"] = f"websocket ({subprotocol})"
        #: GMCP packages the client advertised (gmcp and json formats), if any.
        self.gmcp_supports: dict[str, int] = {}
        #: Frames that are not DataOut (the session token), in order.
        self._pending_frames: list[str | bytes] = []

    # -- lifetime ---------------------------------------------------------------------

    def attach(self, ws: WebSocketConnection) -> None:
        """A socket serves this session now (``ws``, ``_attached``, ``_gone`` together)."""
        self.ws = ws
        self._gone = trio.Event()
        self._attached.set()

    def _detach(self) -> None:
        """Its socket went; wait for a new one."""
        self.ws = None
        self._attached = trio.Event()
        self._gone.set()

    async def run(self) -> None:
        registry = self.portal.websocket_tokens
        registry[self.token] = self
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._announce)
                    while True:
                        await self._gone.wait()
                        if self.is_closing:
                            break
                        # Detached: keep the session for a while.
                        log.info(
                            "sessid %d: websocket gone; waiting for a resume", self.session.sessid
                        )
                        with trio.move_on_after(self.settings.websocket_resume_grace):
                            await self._attached.wait()
                        if not self._attached.is_set():
                            self.close_reason = "websocket gone (not resumed)"
                            break
                        log.info("sessid %d: websocket resumed", self.session.sessid)
                    nursery.cancel_scope.cancel()
        finally:
            registry.pop(self.token, None)
            ws = self.ws
            if ws is not None:
                with trio.move_on_after(1, shield=True):
                    await ws.aclose()

    async def serve_socket(self, ws: WebSocketConnection, *, resumed: bool) -> None:
        """Read from ``ws`` until it goes; this is the request's own task."""
        self.attach(ws)
        self._send_frame(self._session_frame(resumed))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat, ws, nursery.cancel_scope)
                await self._reader(ws)
                nursery.cancel_scope.cancel()
        except Exception:
            # A bug, not a lost network: no resume, the session ends.
            log.exception("sessid %d: websocket connection failed", self.session.sessid)
            self.abort("internal error")
        finally:
            if self.ws is ws:
                self._detach()
            with trio.move_on_after(1, shield=True):
                await ws.aclose()

    async def _heartbeat(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(self.settings.websocket_ping_interval)
            with trio.move_on_after(self.settings.websocket_ping_timeout) as waiting:
                try:
                    await ws.ping()
                except ConnectionClosed:
                    return
            if waiting.cancelled_caught:
                log.info("sessid %d: no pong; the peer is gone", self.session.sessid)
                scope.cancel()
                return

    # -- input ----------------------------------------------------------------------------

    async def _reader(self, ws: WebSocketConnection) -> None:
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            self.received += len(frame)
            try:
                await self._frame_in(frame)
            except BadFrame as exc:
                log.info("sessid %d: bad frame: %s", self.session.sessid, exc)
                self.session.data_out(text=markup.escape(f"Your client sent a bad message: {exc}"))

    async def _frame_in(self, frame: str | bytes) -> None:
        inputs = decode_frame(self.subprotocol, frame, max_json_depth=self.settings.max_json_depth)
        for item in inputs:
            if isinstance(item, ClientText):
                await self._handle_text(item.text)
            elif isinstance(item, ClientOOB):
                await self._handle_oob(item.cmdname, item.args, item.kwargs)
            else:
                await self._gmcp_in(item.package, item.data)

    async def _gmcp_in(self, package: str, data: Any) -> None:
        before = dict(self.gmcp_supports)
        limit = self.settings.max_gmcp_supports
        refused = update_gmcp_supports(self.gmcp_supports, package, data, max_packages=limit)
        if refused:
            self.tell_bad_input(supports_refused_message(refused, limit))
        if refused is not None and self.gmcp_supports != before:
            flags = {"GMCP_SUPPORTS": dict(self.gmcp_supports)}
            self.session.protocol_flags.update(flags)
            await self._to_handler(SessionUpdate(self.session.sessid, {"protocol_flags": flags}))
        oob = gmcp_input(package, data)
        await self._handle_oob(oob.cmdname, oob.args, oob.kwargs)

    # -- output ---------------------------------------------------------------------------

    def _session_frame(self, resumed: bool) -> str | bytes | None:
        info = {
            "token": self.token,
            "resumed": resumed,
            "grace": self.settings.websocket_resume_grace,
        }
        if self.subprotocol == EVENNIA:
            return json.dumps(["session", [], info])
        if self.subprotocol == GMCP:
            return f"Client.Session {json.dumps(info)}"
        if self.subprotocol == JSON:
            return json.dumps({"proto": "session", "id": "token", "data": json.dumps(info)})
        return None

    def _send_frame(self, frame: str | bytes | None) -> None:
        if frame is not None:
            self._pending_frames.append(frame)
            self.send_nowait(FLUSH)

    async def _writer(self) -> None:
        while True:
            batch = await self._outbox.get_all()
            frames: list[str | bytes | None] = list(self._pending_frames)
            self._pending_frames.clear()
            for message in batch:
                if isinstance(message, Disconnect):
                    if message.reason:
                        frames.append(
                            self._encode(DataOut(self.session.sessid, "text", (message.reason,)))
                        )
                    await self._send_all(frames)
                    self._cancel_scope.cancel()
                    return
                if type(message) is Broadcast:
                    frames.append(self._encode_shared(message))
                elif isinstance(message, DataOut):
                    frames.append(self._encode(message))
            await self._send_all(frames)

    def _encode_shared(self, message: Broadcast) -> str | bytes | None:
        """A broadcast, encoded once per kind of client and reused."""
        if message.cmdname != "text":
            return self._encode(message)
        flags = self.session.protocol_flags
        key = (self.subprotocol, *markup.render_key(flags))
        if key not in message.rendered:
            message.rendered[key] = self._encode(message)
        frame: str | bytes | None = message.rendered[key]
        return frame

    async def _send_all(self, frames: list[str | bytes | None]) -> None:
        for frame in frames:
            if frame is None:
                continue
            while True:
                await self._attached.wait()
                ws = self.ws
                assert ws is not None  # attached and ws are set together
                try:
                    with trio.move_on_after(self.settings.write_timeout) as scope:
                        await ws.send_message(frame)
                    self.sent += len(frame)
                    if scope.cancelled_caught:
                        self.abort("one websocket write took too long: client stalled")
                    break
                except ConnectionClosed:
                    await self._gone.wait()  # sent again once resumed

    def _encode(self, message: DataOut | Broadcast) -> str | bytes | None:
        cmdname, args, kwargs = message.cmdname, message.args, message.kwargs
        flags = self.session.protocol_flags
        if self.subprotocol == EVENNIA:
            return evennia_frame(message)
        if cmdname in ("text", "prompt"):
            text = str(args[0]) if args else ""
            ansi = markup.render_for(text, flags)
            if cmdname == "prompt" and self.subprotocol == JSON:
                return json.dumps({"proto": "prompt", "id": "", "data": ansi})
            if cmdname == "text" and not ansi.endswith("\n"):
                ansi += "\r\n"
            return ansi.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        payload: Any = kwargs or (args[0] if len(args) == 1 else list(args) or None)
        advertised = "GMCP_SUPPORTS" in flags
        if advertised and not gmcp_wanted(self.gmcp_supports, gmcp_package(cmdname)):
            return None  # the client said which packages it takes; not this one
        if self.subprotocol == GMCP and cmdname != "msdp":
            package = gmcp_package(cmdname)
            return package if payload is None else f"{package} {json.dumps(payload)}"
        if self.subprotocol == JSON and cmdname != "msdp":
            return json.dumps(
                {"proto": "gmcp", "id": gmcp_package(cmdname), "data": json.dumps(payload)}
            )
        return None


def evennia_frame(message: DataOut | Broadcast) -> str:
    """Output in Evennia's web client format: ``[cmdname, [args], {kwargs}]``.

    Game text and prompts go as HTML (escaped, coloured by the server).
    """
    cmdname, args, kwargs = message.cmdname, message.args, message.kwargs
    if cmdname in ("text", "prompt"):
        options = {"password": True} if kwargs.get("password") else {}
        return json.dumps([cmdname, [markup.render_html(str(args[0]) if args else "")], options])
    return json.dumps([cmdname, list(args), kwargs])


async def serve_websockets(
    portal: ListenerHost,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for WebSocket clients on every interface at ``websocket_port``.

    Every connection is supervised here: trio-websocket lets a handler's
    exception end the whole server, so none may escape.
    """
    settings = portal.settings
    port = settings.websocket_port
    assert port is not None, "WebSockets are turned off (websocket_port is None)"

    async def handle(request: WebSocketRequest) -> None:
        try:
            await _handle(portal, request)
        except Exception:
            log.exception("websocket connection failed")

    listeners: list[trio.SocketListener] = []
    for interface in settings.telnet_interfaces:
        listeners += await open_listeners("WebSockets", port, interface, option="--websocket-port")
    addresses = [listener.socket.getsockname()[:2] for listener in listeners]
    server = _AdmittingServer(
        portal,
        handle,
        [portal.admitting(listener) for listener in listeners],
        max_message_size=settings.websocket_max_message,
        connect_timeout=settings.handshake_timeout,
        disconnect_timeout=2,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        portal.websocket_addresses = addresses
        for host, port in addresses:
            log.info("websocket listening on %s port %d", host, port)
        if settings.web_tls:
            log.info("websockets are wss:// (TLS)")
        task_status.started(addresses)


class _AdmittingServer(WebSocketServer):
    """trio-websocket's server over the portal's admitting listeners.

    Each socket was admitted at accept time (so a client that never finishes
    its handshake still holds a place, for at most ``handshake_timeout``
    seconds); its place is given back here, when trio-websocket is done with it.
    """

    def __init__(self, portal: ListenerHost, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._portal = portal

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        assert isinstance(stream, trio.SocketStream)
        peer = peer_address(stream)
        context = self._portal.tls_context if self._portal.settings.web_tls else None
        if context is not None:
            # wss://: the TLS handshake happens as trio-websocket reads the
            # request, within its connect timeout (handshake_timeout).
            stream = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
        try:
            await super()._handle_connection(stream)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self._portal.release_socket(peer)


def origin_allowed(
    origin: str | None, host: str | None, page_ports: list[int], allowed: tuple[str, ...]
) -> bool:
    """Whether a page at ``origin`` may open a WebSocket here.

    Allowed: no Origin at all (a native client, not a browser); the server's
    own page (same host name as the request's ``Host``, on a port the web
    page is served from); an origin listed in ``allowed`` (``*`` for any).
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if "*" in allowed or origin in {item.strip().rstrip("/").lower() for item in allowed}:
        return True
    try:
        parts = urlsplit(origin)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or host is None:
        return False
    try:
        host_name = urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    return parts.hostname == (host_name or "").lower() and port in page_ports


def _header(request: WebSocketRequest, name: bytes) -> str | None:
    for key, value in request.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _handle(portal: ListenerHost, request: WebSocketRequest) -> None:
    address = str(request.remote.address) if hasattr(request.remote, "address") else "?"
    origin = _header(request, b"origin")
    # wsproto keeps Host apart from the other headers.
    host = getattr(getattr(request, "_event", None), "host", None)
    page_ports = [port for _, port in portal.web_addresses]
    address, refusal = forwarded_address(portal, address, _header(request, b"x-forwarded-for"))
    if refusal is not None:
        status, text = refusal
        await request.reject(status, body=text.encode() + b"\n")
        return
    if not origin_allowed(origin, host, page_ports, portal.settings.websocket_allowed_origins):
        portal.log_limited(
            logging.WARNING,
            f"origin {address}",
            "refused a websocket from %s: page origin %r is not allowed "
            "(setting websocket_allowed_origins)",
            address,
            (origin or "")[:200],
        )
        await request.reject(403, body=b"This page may not connect to this game.\n")
        return
    query = parse_qs(urlsplit(request.path).query)
    token = (query.get("token") or [""])[0]
    existing = portal.websocket_tokens.get(token) if token else None
    offered = list(request.proposed_subprotocols)
    if existing is not None and existing.ws is None and not existing.is_closing:
        ws = await request.accept(
            subprotocol=existing.subprotocol if existing.subprotocol in offered else None
        )
        await existing.serve_socket(ws, resumed=True)
        return
    subprotocol = choose_subprotocol(offered)
    ws = await request.accept(subprotocol=subprotocol if subprotocol in offered else None)
    conn = WebSocketSession(portal, portal.new_session("websocket", str(address)), subprotocol)
    portal.start_connection(conn)  # the session may outlive this socket (resume)
    await conn.serve_socket(ws, resumed=False)

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
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from . import markup
from .messages import DataIn, DataOut, Disconnect, SessionUpdate
from .mudtelnet import gmcp_input, gmcp_package, gmcp_wanted, update_gmcp_supports
from .nursery_portal import _FLUSH, Portal, _Connection

log = logging.getLogger("trio_mud.websocket")

EVENNIA = "v1.evennia.com"
GMCP = "gmcp.mudstandards.org"
JSON = "json.mudstandards.org"
TERMINAL = "terminal.mudstandards.org"

#: The server's order of preference.
SUBPROTOCOLS = (EVENNIA, GMCP, JSON, TERMINAL)

#: What a browser or web terminal can show.
WEB_FLAGS = {"ANSI": True, "XTERM256": True, "TRUECOLOR": True, "UTF-8": True}


def choose_subprotocol(offered: list[str]) -> str:
    """The first of ours that the client offers; Evennia's when it offers none."""
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return EVENNIA


class BadFrame(Exception):
    """A frame that does not fit the format; the message says why."""


class WebSocketSession(_Connection):
    """One WebSocket client; it may detach and come back within the grace."""

    protocol_key = "websocket"

    def __init__(self, portal: Portal, session: Any, subprotocol: str) -> None:
        super().__init__(portal, session)
        self.subprotocol = subprotocol
        self.token = secrets.token_urlsafe(24)
        self.ws: WebSocketConnection | None = None
        self._attached = trio.Event()
        self._gone = trio.Event()
        self.session.protocol_flags.update(WEB_FLAGS)
        self.session.protocol_flags["CLIENTNAME"] = f"websocket ({subprotocol})"
        self._settled.set()  # nothing to negotiate
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
                with trio.move_on_after(1), trio.CancelScope(shield=True):
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
            with trio.move_on_after(1), trio.CancelScope(shield=True):
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
            try:
                await self._frame_in(frame)
            except BadFrame as exc:
                log.info("sessid %d: bad frame: %s", self.session.sessid, exc)
                self.session.data_out(text=markup.escape(f"Your client sent a bad message: {exc}"))

    async def _frame_in(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes) or self.subprotocol == TERMINAL:
            text = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
            for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
                if line or "\n" not in text:
                    await self._handle_text(line)
            return
        if self.subprotocol == EVENNIA:
            try:
                cmdname, args, kwargs = json.loads(frame)
            except (ValueError, TypeError) as exc:
                raise BadFrame('expected ["cmdname", [args], {kwargs}]') from exc
            if (
                not isinstance(cmdname, str)
                or not isinstance(args, list)
                or not isinstance(kwargs, dict)
            ):
                raise BadFrame('expected ["cmdname", [args], {kwargs}]')
            if cmdname == "text":
                await self._handle_text(str(args[0]) if args else "")
            elif cmdname in ("prompt", "default"):
                raise BadFrame(f"{cmdname!r} is not something a client sends")
            else:
                await self._to_handler(
                    DataIn(self.session.sessid, cmdname.lower(), tuple(args), kwargs)
                )
        elif self.subprotocol == GMCP:
            package, _, rest = frame.strip().partition(" ")
            await self._gmcp_in(package, rest)
        else:  # JSON
            try:
                envelope = json.loads(frame)
                proto, ident, data = (
                    envelope["proto"],
                    envelope.get("id", ""),
                    envelope.get("data", ""),
                )
            except (ValueError, TypeError, KeyError) as exc:
                raise BadFrame('expected {"proto": ..., "id": ..., "data": ...}') from exc
            if proto == "gmcp":
                await self._gmcp_in(str(ident), data if isinstance(data, str) else json.dumps(data))
            elif proto == "text":
                await self._handle_text(str(data))
            else:
                raise BadFrame(f"unknown proto {proto!r}")

    async def _gmcp_in(self, package: str, payload: str) -> None:
        if not package:
            raise BadFrame("a GMCP message needs a package name")
        data: Any = None
        if payload.strip():
            try:
                data = json.loads(payload)
            except ValueError:
                data = payload.strip()
        if update_gmcp_supports(self.gmcp_supports, package, data):
            flags = {"GMCP_SUPPORTS": dict(self.gmcp_supports)}
            self.session.protocol_flags.update(flags)
            await self._to_handler(SessionUpdate(self.session.sessid, {"protocol_flags": flags}))
        oob = gmcp_input(package, data)
        await self._to_handler(DataIn(self.session.sessid, oob.cmdname, oob.args, oob.kwargs))

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
            self.send_nowait(_FLUSH)

    async def _writer(self) -> None:
        while True:
            try:
                message = await self._outbox_recv.receive()
            except trio.EndOfChannel:
                return
            frames: list[str | bytes | None] = list(self._pending_frames)
            self._pending_frames.clear()
            if message is _FLUSH:
                pass
            elif isinstance(message, Disconnect):
                if message.reason:
                    frames.append(
                        self._encode(DataOut(self.session.sessid, "text", (message.reason,)))
                    )
                await self._send_all(frames)
                self._cancel_scope.cancel()
                return
            elif isinstance(message, DataOut):
                frames.append(self._encode(message))
            await self._send_all(frames)

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
                    if scope.cancelled_caught:
                        self.abort("one websocket write took too long: client stalled")
                    break
                except ConnectionClosed:
                    await self._gone.wait()  # sent again once resumed

    def _encode(self, message: DataOut) -> str | bytes | None:
        cmdname, args, kwargs = message.cmdname, message.args, message.kwargs
        flags = self.session.protocol_flags
        if cmdname in ("text", "prompt"):
            text = str(args[0]) if args else ""
            if self.subprotocol == EVENNIA:
                options = {"password": True} if kwargs.get("password") else {}
                return json.dumps([cmdname, [markup.render_html(text)], options])
            ansi = markup.render(
                text, markup.level_for(flags), screenreader=bool(flags.get("SCREENREADER"))
            )
            if cmdname == "prompt" and self.subprotocol == JSON:
                return json.dumps({"proto": "prompt", "id": "", "data": ansi})
            if cmdname == "text" and not ansi.endswith("\n"):
                ansi += "\r\n"
            return ansi.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        payload: Any = kwargs or (args[0] if len(args) == 1 else list(args) or None)
        if self.subprotocol == EVENNIA:
            return json.dumps([cmdname, list(args), kwargs])
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


async def serve_websockets(
    portal: Portal,
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
    addresses: list[tuple[str, int]] = []

    async def handle(request: WebSocketRequest) -> None:
        try:
            await _handle(portal, request)
        except Exception:
            log.exception("websocket connection failed")

    async with trio.open_nursery() as nursery:
        for interface in settings.telnet_interfaces:
            server = await nursery.start(
                partial(
                    serve_websocket,
                    handle,
                    interface,
                    port,
                    None,  # no TLS here
                    max_message_size=settings.websocket_max_message,
                    disconnect_timeout=2,
                )
            )
            for endpoint in server.listeners:
                addresses.append((str(endpoint.address), int(endpoint.port)))
        portal.websocket_addresses = addresses
        for host, port in addresses:
            log.info("websocket listening on %s port %d", host, port)
        task_status.started(addresses)


async def _handle(portal: Portal, request: WebSocketRequest) -> None:
    address = request.remote.address if hasattr(request.remote, "address") else "?"
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
    refusal = portal.admit(str(address))
    if refusal is not None:
        await request.reject(503, body=refusal.encode())
        return
    subprotocol = choose_subprotocol(offered)
    ws = await request.accept(subprotocol=subprotocol if subprotocol in offered else None)
    conn = WebSocketSession(portal, portal.new_session("websocket", str(address)), subprotocol)
    portal.start_connection(conn)  # the session may outlive this socket (resume)
    await conn.serve_socket(ws, resumed=False)

"""The web client page, over HTTP (h11, no hand-written parser).

Serves ``/`` (the client page, with the WebSocket port written in),
``/client.js`` and ``/client.css`` from ``trio_mud/webclient/``. One request
per connection, each within ``web_request_timeout`` seconds; anything else
gets 404 or 405. The page's Content-Security-Policy allows scripts and style sheets
from this server only (and style attributes, which carry colour), so nothing
a player types could run even if it ever reached the page unescaped.
"""

from __future__ import annotations

import logging
from functools import partial
from importlib import resources
from urllib.parse import parse_qs

import h11
import trio

from ..admission import AddressSet, open_listeners, peer_address
from . import ajax
from .connection import ListenerHost, forwarded_address

log = logging.getLogger("trio_mud.web")

#: Where the web page's AJAX fallback posts (Evennia's path).
AJAX_PATH = b"/webclientdata"

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
    "/client.css": ("client.css", "text/css; charset=utf-8"),
}

_SECURITY_HEADERS = [
    (
        b"Content-Security-Policy",
        # Colour comes as style attributes from the server's renderer (never
        # from players: their text is escaped); <style> elements stay out.
        b"default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline';"
        b" connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none';"
        b" form-action 'none'; frame-ancestors 'none'",
    ),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cache-Control", b"no-cache"),
]


def _load(portal: ListenerHost) -> dict[str, tuple[bytes, str]]:
    files = resources.files("trio_mud.webclient")
    pages: dict[str, tuple[bytes, str]] = {}
    ports = [port for _, port in portal.websocket_addresses]
    for path, (name, content_type) in _FILES.items():
        data = files.joinpath(name).read_bytes()
        if name == "index.html":
            data = data.replace(b"{{WEBSOCKET_PORT}}", str(ports[0] if ports else 0).encode())
            data = data.replace(b"{{SERVER_NAME}}", _html(portal.settings.server_name).encode())
        pages[path] = (data, content_type)
    return pages


def _html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


async def serve_web(
    portal: ListenerHost,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the web client page on ``web_port`` until cancelled."""
    settings = portal.settings
    assert settings.web_port is not None, "the web page is turned off (web_port is None)"
    pages = await trio.to_thread.run_sync(_load, portal)  # file reads, off the loop
    listeners: list[trio.SocketListener] = []
    for interface in settings.telnet_interfaces:
        listeners += await open_listeners(
            "the web page", settings.web_port, interface, option="--web-port"
        )
    addresses = [listener.socket.getsockname()[:2] for listener in listeners]
    portal.web_addresses = addresses
    for host, port in addresses:
        scheme = "https" if settings.web_tls else "http"
        log.info("web client on %s://%s:%d/", scheme, host, port)
    async with trio.open_nursery() as nursery:
        handler = partial(_serve_one, pages, portal)
        admitting = [portal.admitting(listener) for listener in listeners]
        await nursery.start(partial(trio.serve_listeners, handler, admitting))
        task_status.started(addresses)


async def serve_metrics(
    portal: ListenerHost,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` alone, over plain HTTP, on ``metrics_port`` until cancelled."""
    settings = portal.settings
    assert settings.metrics_port is not None, "no metrics_port is set"
    listeners: list[trio.SocketListener] = []
    for interface in settings.telnet_interfaces:
        listeners += await open_listeners(
            "the metrics", settings.metrics_port, interface, option="metrics_port"
        )
    addresses = [listener.socket.getsockname()[:2] for listener in listeners]
    portal.metrics_addresses = addresses
    for host, port in addresses:
        log.info("metrics on http://%s:%d/metrics", host, port)
    async with trio.open_nursery() as nursery:
        handler = partial(_serve_one, {}, portal, metrics_only=True)
        admitting = [portal.admitting(listener) for listener in listeners]
        await nursery.start(partial(trio.serve_listeners, handler, admitting))
        task_status.started(addresses)


async def _serve_one(
    pages: dict[str, tuple[bytes, str]],
    portal: ListenerHost,
    stream: trio.SocketStream,
    *,
    metrics_only: bool = False,
) -> None:
    """One request, one response, then close. Errors end this connection only.

    The socket was admitted at accept time (see :meth:`ListenerHost.admitting`);
    its place is given back here once it is closed.
    """
    settings = portal.settings
    peer = peer_address(stream)
    connection = h11.Connection(h11.SERVER)
    transport: trio.abc.Stream = stream
    if settings.web_tls and portal.tls_context is not None and not metrics_only:
        # https://: the TLS handshake is part of the request, within its time.
        transport = trio.SSLStream(
            stream, portal.tls_context, server_side=True, https_compatible=True
        )
    try:
        request: h11.Request | None = None
        form: bytes | None = None
        with trio.move_on_after(settings.web_request_timeout):
            request = await _next_request(connection, transport)
            if request is not None and _is_ajax(request):
                form = await _read_body(connection, transport, settings.ajax_max_body)
        if request is None:
            return
        forwarded = next(
            (v.decode("latin-1") for k, v in request.headers if k == b"x-forwarded-for"), None
        )
        address, refusal = forwarded_address(portal, peer, forwarded)
        if refusal is not None:
            status, body = refusal[0], refusal[1].encode() + b"\n"
            content_type = "text/plain; charset=utf-8"
        elif _path(request) == "/metrics" and request.method in (b"GET", b"HEAD"):
            status, body, content_type = _metrics(portal, request, address)
        elif metrics_only:
            status, body, content_type = 404, b"Not found\n", "text/plain; charset=utf-8"
        elif _is_ajax(request):
            # A poll may wait (ajax_poll_timeout): outside the request's own time.
            status, body, content_type = await _ajax(portal, form, address)
        else:
            status, body, content_type = _answer(pages, request)
        with trio.move_on_after(settings.web_request_timeout):
            headers = [
                (b"Content-Type", content_type.encode()),
                (b"Content-Length", str(len(body)).encode()),
                (b"Connection", b"close"),
                *_SECURITY_HEADERS,
            ]
            data = connection.send(h11.Response(status_code=status, headers=headers))
            if request.method != b"HEAD":
                data = (data or b"") + (connection.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (connection.send(h11.EndOfMessage()) or b"")
            await transport.send_all(data)
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("web request failed: %r", exc)
    except Exception:
        log.exception("web request failed")
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(transport)
        portal.release_socket(peer)


def _is_ajax(request: h11.Request) -> bool:
    return request.method == b"POST" and request.target.split(b"?", 1)[0] == AJAX_PATH


async def _read_body(
    connection: h11.Connection, stream: trio.abc.Stream, limit: int
) -> bytes | None:
    """The request's body, or None when it is over ``limit`` bytes."""
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(bytes(await stream.receive_some(16384)))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                return None
        else:
            return bytes(body)


async def _ajax(portal: ListenerHost, form: bytes | None, address: str) -> tuple[int, bytes, str]:
    json_type = "application/json; charset=utf-8"
    if form is None:
        limit = portal.settings.ajax_max_body
        return 413, f'{{"error": "a request body is at most {limit} bytes"}}'.encode(), json_type
    fields = {
        k: v[0] for k, v in parse_qs(form.decode("utf-8", "replace"), max_num_fields=8).items()
    }
    status, text = await ajax.handle(portal, fields, address)
    return status, text.encode("utf-8"), json_type


async def _next_request(connection: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(bytes(await stream.receive_some(16384)))
            continue
        if isinstance(event, h11.Request):
            return event
        return None  # the client closed, or sent something else first


def _path(request: h11.Request) -> str:
    return request.target.decode("ascii", errors="replace").split("?", 1)[0]


def _metrics(portal: ListenerHost, request: h11.Request, address: str) -> tuple[int, bytes, str]:
    """``/metrics`` for the addresses in ``metrics_allowed_ips``; 403 for others."""
    if address not in AddressSet(portal.settings.metrics_allowed_ips):
        return 403, b"Metrics are not served to your address.\n", "text/plain; charset=utf-8"
    accept = next((v for k, v in request.headers if k == b"accept"), b"")
    body, content_type = portal.metrics(openmetrics=b"application/openmetrics-text" in accept)
    return 200, body, content_type


def _answer(pages: dict[str, tuple[bytes, str]], request: h11.Request) -> tuple[int, bytes, str]:
    if request.method not in (b"GET", b"HEAD"):
        return 405, b"Method not allowed\n", "text/plain; charset=utf-8"
    page = pages.get(_path(request))
    if page is None:
        return 404, b"Not found\n", "text/plain; charset=utf-8"
    return 200, page[0], page[1]

"""Real addresses behind a proxy: PROXY v1/v2 on telnet and TLS, X-Forwarded-For
on the web and WebSocket ports, believed only from upstream_ips."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest
import trio
from trio_websocket import HandshakeError, open_websocket_url

from trio_mud.protocols.proxy import V2_SIGNATURE, ProxyHeaderError, parse_header

from .helpers import Client, make_settings, start_server

V1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 4000\r\n"


def v2(source: str, command: int = 1) -> bytes:
    ip = ipaddress.ip_address(source)
    if ip.version == 4:
        body = ip.packed + bytes(4) + struct.pack(">HH", 51234, 4000)
        family = 0x11
    else:
        body = ip.packed + bytes(16) + struct.pack(">HH", 51234, 4000)
        family = 0x21
    return V2_SIGNATURE + bytes((0x20 | command, family)) + struct.pack(">H", len(body)) + body


def test_headers_parse_whole_and_in_pieces() -> None:
    for header, source in [(V1, "203.0.113.7"), (v2("198.51.100.9"), "198.51.100.9"),
                           (v2("2001:db8::5"), "2001:db8::5"), (b"PROXY UNKNOWN\r\n", None),
                           (v2("198.51.100.9", command=0), None)]:  # fmt: skip
        for cut in range(len(header)):
            assert parse_header(header[:cut]) is None  # more, please
        parsed = parse_header(header + b"look\r\n")
        assert parsed is not None and parsed.source == source and parsed.length == len(header)
    for bad in [b"GET / HTTP/1.1\r\n", b"PROXY TCP4 300.1.2.3 1.2.3.4 1 2\r\n",
                b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n", b"PROXY " + b"x" * 200,
                V2_SIGNATURE + b"\x10\x11\x00\x00"]:  # fmt: skip
        with pytest.raises(ProxyHeaderError):
            parse_header(bad)


async def proxied(port: int, header: bytes) -> Client:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(header)
    client = Client(stream)
    await client.welcome()
    return client


async def test_proxy_v1_and_v2_give_the_real_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, upstream_ips=("127.0.0.0/8",), ssl_ports=(0,))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        ann = await proxied(server.telnet_port, V1 + b"create Ann correct horse\r\n")
        await ann.read_until("Exits:")  # the bytes after the header are the client's
        bob = await proxied(server.telnet_port, v2("2001:db8::5"))
        addresses = sorted(s.address for s in server.portal.sessions.values())
        assert addresses == ["2001:db8::5", "203.0.113.7"]
        # On the TLS port the header comes first, in plain, then TLS.
        cafile = tmp_path / "tls-certificate.pem"
        stream = await trio.open_tcp_stream("127.0.0.1", server.tls_port)
        await stream.send_all(v2("198.51.100.9"))
        import ssl

        context = ssl.create_default_context(cafile=str(cafile))
        secure = trio.SSLStream(stream, context, server_hostname="localhost")
        await secure.do_handshake()
        carol = Client(secure)  # type: ignore[arg-type]
        await carol.welcome()
        assert "198.51.100.9" in {s.address for s in server.portal.sessions.values()}
        assert not bob.closed
        nursery.cancel_scope.cancel()


async def test_a_missing_or_malformed_header_from_a_proxy_closes_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, upstream_ips=("127.0.0.1",), handshake_timeout=1.0)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        for first in (b"look\r\n", b"PROXY TCP4 not-an-address\r\n", b""):
            client = await Client.connect(server.telnet_port)
            if first:
                await client.stream.send_all(first)
            assert await client.read_until_closed() == []  # nothing, then closed
        assert server.portal.statistics().connections_total == 0
        nursery.cancel_scope.cancel()


async def test_a_proxy_header_from_anyone_else_is_not_believed(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))  # no upstream_ips
        client = await Client.connect(server.telnet_port)
        await client.welcome()
        await client.send_line(V1.decode().strip())
        await client.read_until("not a command here")
        assert [s.address for s in server.portal.sessions.values()] == ["127.0.0.1"]
        nursery.cancel_scope.cancel()


async def test_x_forwarded_for_only_from_upstream(tmp_path: Path) -> None:
    for upstream in ((), ("127.0.0.1",)):
        settings = make_settings(tmp_path / str(len(upstream)), upstream_ips=upstream)
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, settings)
            url = f"ws://127.0.0.1:{server.websocket_port}/"
            headers = [("X-Forwarded-For", "192.0.2.1, 203.0.113.50")]
            if not upstream:
                with pytest.raises(HandshakeError):
                    async with open_websocket_url(url, extra_headers=headers):
                        pass
            else:
                async with open_websocket_url(url, extra_headers=headers) as ws:
                    assert "session" in await ws.get_message()
                    addresses = [s.address for s in server.portal.sessions.values()]
                    assert addresses == ["203.0.113.50"]  # the address the proxy added
            page = await trio.open_tcp_stream("127.0.0.1", server.web_port)
            await page.send_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.50\r\n\r\n"
            )
            answer = b""
            with trio.fail_after(10):
                while chunk := await page.receive_some():
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 403" if not upstream else b"HTTP/1.1 200")
            nursery.cancel_scope.cancel()

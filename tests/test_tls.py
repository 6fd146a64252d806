"""Telnet over TLS: real TLS clients (Python's ssl) against a real server."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from trio_mud import Server
from trio_mud.serverproc import ProcessStarter
from trio_mud.transports.tls import GENERATED_CERTIFICATE, ensure_self_signed

from .helpers import Client, Compressing, MudClient, make_settings, start_server


async def tls_stream(
    port: int, cafile: Path, *, https: bool = False
) -> trio.SSLStream[trio.SocketStream]:
    """A TLS connection that trusts only ``cafile`` and checks the name."""
    context = ssl.create_default_context(cafile=str(cafile))
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, context, server_hostname="localhost", https_compatible=https)
    await stream.do_handshake()
    return stream


async def tls_client(port: int, cafile: Path, kind: type[Client] = Client) -> Client:
    client = kind(await tls_stream(port, cafile))  # type: ignore[arg-type]
    await client.welcome()
    if isinstance(client, MudClient):
        await client.flush()
    return client


async def test_telnet_over_tls_with_the_generated_certificate(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ssl_ports=(0,))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        cafile = tmp_path / GENERATED_CERTIFICATE  # made at start, trusted here
        ann = await tls_client(server.tls_port, cafile)
        await ann.command("create Ann correct horse", "Exits:")
        assert [s.protocol_key for s in server.portal.sessions.values()] == ["telnet/ssl"]
        # The whole MUD suite runs over it: MCCP2 compression and GMCP too.
        bob = await tls_client(server.tls_port, cafile, Compressing)
        assert isinstance(bob, Compressing)
        await bob.command("create Bob correct horse", "Exits:")
        await bob.wait_gmcp("Room.Info")
        assert bob.inflater is not None  # compressing inside TLS
        await ann.read_until("Bob has entered the game.")
        await bob.send_line("say over TLS and zlib")
        await ann.read_until('Bob says, "over TLS and zlib"')
        # Crawlers learn the TLS port from MSSP (Mudlet offers a TLS reconnect).
        crawler = await Client.connect(server.telnet_port)
        await crawler.welcome()
        reply = await crawler.command("MSSP-REQUEST", "MSSP-REPLY-END")
        assert f"SSL\t{server.tls_port}" in reply and f"TLS\t{server.tls_port}" in reply
        # A reload keeps TLS players connected and playing.
        assert await server.reload() is None
        await ann.read_until("Server restarted")
        await ann.command("look", "Exits:")
        nursery.cancel_scope.cancel()


async def test_the_operators_certificate_is_used_when_given(tmp_path: Path) -> None:
    certificate, key = ensure_self_signed(tmp_path / "pki", "localhost")
    settings = make_settings(
        tmp_path / "data", ssl_ports=(0,), ssl_certificate=certificate, ssl_private_key=key
    )
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        client = await tls_client(server.tls_port, certificate)
        await client.command("who", "Players online")
        assert not (tmp_path / "data" / GENERATED_CERTIFICATE).exists()
        # A client that trusts another certificate is refused by its own check.
        other, _ = ensure_self_signed(tmp_path / "other", "localhost")
        try:
            await tls_stream(server.tls_port, other)
        except trio.BrokenResourceError as exc:
            assert isinstance(exc.__cause__, ssl.SSLCertVerificationError)
        else:
            raise AssertionError("a certificate the client does not trust was accepted")
        await client.command("who", "Players online")
        nursery.cancel_scope.cancel()


async def test_plain_and_silent_clients_on_the_tls_port_are_closed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ssl_ports=(0,), handshake_timeout=0.5)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        player = await tls_client(server.tls_port, tmp_path / GENERATED_CERTIFICATE)
        plain = await trio.open_tcp_stream("127.0.0.1", server.tls_port)
        await plain.send_all(b"look\r\n")
        silent = await trio.open_tcp_stream("127.0.0.1", server.tls_port)
        with trio.fail_after(10):
            for stream in (plain, silent):
                while await stream.receive_some():
                    pass  # closed by the server
        await player.command("who", "Players online")
        assert server.portal.statistics().open_sockets == 1
        nursery.cancel_scope.cancel()


async def test_typing_over_tls_through_a_reload_and_a_kill_9(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ssl_ports=(0,))
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(settings, mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter)
        client = await tls_client(server.tls_port, tmp_path / GENERATED_CERTIFICATE)
        await client.command("create Tia correct horse", "Exits:")
        for n in range(30):
            await client.send_line(f"say line-{n}")
            if n == 10:
                assert await server.reload() is None
            if n == 20:
                assert starter.pid is not None
                os.kill(starter.pid, signal.SIGKILL)
        await client.read_until('You say, "line-29"')
        said = [line for line in client.history if line.startswith('You say, "line-')]
        assert said == [f'You say, "line-{n}"' for n in range(30)]  # each once, in order
        assert not client.closed
        server.shutdown()


async def test_a_reload_reads_a_renewed_certificate_for_new_connections(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    certificate, key = ensure_self_signed(live, "localhost")
    settings = make_settings(
        tmp_path / "data", ssl_ports=(0,), ssl_certificate=certificate, ssl_private_key=key
    )
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        old = tmp_path / "old.pem"
        old.write_bytes(certificate.read_bytes())
        before = await tls_client(server.tls_port, old)
        # The operator renews: new files at the same paths, then SIGHUP.
        renewed, renewed_key = ensure_self_signed(tmp_path / "renewed", "localhost")
        key.write_bytes(renewed_key.read_bytes())
        certificate.write_bytes(renewed.read_bytes())
        assert await server.reload() is None
        after = await tls_client(server.tls_port, renewed)  # the new certificate
        await after.command("who", "Players online")
        try:
            await tls_stream(server.tls_port, old)
        except trio.BrokenResourceError:
            pass  # the old certificate is not served any more
        else:
            raise AssertionError("the old certificate is still served")
        await before.command("who", "Players online")  # and nobody was dropped
        # A broken renewal keeps the certificate that works.
        key.write_text("not a key")
        assert await server.reload() is None
        again = await tls_client(server.tls_port, renewed)
        await again.command("who", "Players online")
        nursery.cancel_scope.cancel()


async def test_the_web_page_and_websocket_over_https_and_wss(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, web_tls=True, handshake_timeout=2.0)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        cafile = tmp_path / GENERATED_CERTIFICATE
        # The page, over https.
        page = await tls_stream(server.web_port, cafile, https=True)
        await page.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        body = b""
        with trio.fail_after(10):
            while chunk := await page.receive_some():
                body += chunk
        assert body.startswith(b"HTTP/1.1 200")
        assert f'content="{server.websocket_port}"'.encode() in body
        # The WebSocket, over wss, from the page's own origin.
        context = ssl.create_default_context(cafile=str(cafile))
        url = f"wss://localhost:{server.websocket_port}/"
        origin = [("Origin", f"https://localhost:{server.web_port}")]
        async with open_websocket_url(url, ssl_context=context, extra_headers=origin) as ws:
            assert "session" in await ws.get_message()
            await ws.send_message(json.dumps(["text", ["create Wendy correct horse"], {}]))
            with trio.fail_after(10):
                while "Exits:" not in await ws.get_message():
                    pass
        # A plain ws:// upgrade on that port gets no game, only a closed socket.
        plain = await trio.open_tcp_stream("127.0.0.1", server.websocket_port)
        await plain.send_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        answer = b""
        with trio.fail_after(settings.handshake_timeout + 5):
            while chunk := await plain.receive_some():
                answer += chunk
        assert b"101" not in answer and b"session" not in answer
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_typing_over_websockets_through_a_reload_and_a_kill_9(
    tmp_path: Path, secure: bool
) -> None:
    settings = make_settings(tmp_path, web_tls=secure)
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(settings, mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter)
        if secure:
            context = ssl.create_default_context(cafile=str(tmp_path / GENERATED_CERTIFICATE))
            url, options = f"wss://localhost:{server.websocket_port}/", {"ssl_context": context}
        else:
            url, options = f"ws://127.0.0.1:{server.websocket_port}/", {}
        said: list[str] = []
        async with open_websocket_url(url, **options) as ws:

            async def read_until(marker: str) -> None:
                with trio.fail_after(10):
                    while True:
                        frame = json.loads(await ws.get_message())
                        text = str(frame[1][0]) if frame[0] == "text" and frame[1] else ""
                        said.extend(re.findall(r"You say, &quot;(line-\d+)&quot;", text))
                        if marker in text:
                            return

            await ws.send_message(json.dumps(["text", ["create Wendy correct horse"], {}]))
            await read_until("Exits:")
            for n in range(30):
                await ws.send_message(json.dumps(["text", [f"say line-{n}"], {}]))
                if n == 10:
                    assert await server.reload() is None
                if n == 20:
                    assert starter.pid is not None
                    os.kill(starter.pid, signal.SIGKILL)
            await read_until("line-29")
        assert said == [f"line-{n}" for n in range(30)]  # each once, in order
        server.shutdown()

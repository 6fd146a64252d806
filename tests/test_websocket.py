"""WebSocket clients against a running server: every format, bad frames,
dead peers and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from trio_mud import Server

from .helpers import SGR, WAIT, login, make_settings, start_server


class Web:
    """A WebSocket test client that keeps every frame it got."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.frames: list[str | bytes] = []

    async def next_matching(self, test: Any) -> Any:
        with trio.fail_after(WAIT):
            while True:
                for index, frame in enumerate(self.frames):
                    if test(frame):
                        del self.frames[: index + 1]
                        return frame
                self.frames.append(await self.ws.get_message())

    async def text(self, needle: str) -> str:
        """The next game text containing ``needle`` (any format)."""

        def test(frame: str | bytes) -> bool:
            return needle in _text_of(frame)

        return _text_of(await self.next_matching(test))


def _text_of(frame: str | bytes) -> str:
    if isinstance(frame, bytes):
        return SGR.sub("", frame.decode())
    try:
        message = json.loads(frame)
    except ValueError:
        return frame
    if isinstance(message, list) and message and message[0] in ("text", "prompt"):
        return "".join(message[1])
    return frame


def url(server: Server, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.websocket_port}/{query}"


async def test_evennia_json_is_the_default(server: Server) -> None:
    async with open_websocket_url(url(server)) as ws:
        assert ws.subprotocol is None  # none offered: Evennia's format, unnamed
        web = Web(ws)
        session = json.loads(await web.next_matching(lambda f: '"session"' in f))
        assert session[0] == "session" and len(session[2]["token"]) >= 32
        await web.text("shows this screen again")
        await ws.send_message(json.dumps(["text", ["create Webby correct horse"], {}]))
        room = await web.text("Exits:")
        assert '<span style="color:#00ffff">Town Square</span>' in room
        info = await web.next_matching(lambda f: f.startswith('["Room.Info"'))
        assert json.loads(info)[2]["num"] == 1
        # A telnet player's markup-laden words arrive escaped.
        telnet = await login(server.telnet_port, "Tel")
        await telnet.send_line("say <script>alert('x')</script> & |rred")
        heard = await web.text("Tel says")
        assert "<script>" not in heard
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in heard
        assert '<span style="color:#ff0000">red</span>' in heard
        # And the web player is heard on telnet.
        await ws.send_message(json.dumps(["text", ["say hi from the web"], {}]))
        await telnet.read_until('Webby says, "hi from the web"')


async def test_password_prompt_is_marked(server: Server) -> None:
    async with open_websocket_url(url(server), subprotocols=["v1.evennia.com"]) as ws:
        assert ws.subprotocol == "v1.evennia.com"
        web = Web(ws)
        await web.text("shows this screen again")
        await ws.send_message(json.dumps(["text", ["create Webby"], {}]))
        prompt = json.loads(await web.next_matching(lambda f: f.startswith('["prompt"')))
        assert prompt == ["prompt", ["Password: "], {"password": True}]
        await ws.send_message(json.dumps(["text", ["correct horse"], {}]))
        await web.text("Exits:")


async def test_gmcp_subprotocol(server: Server) -> None:
    offered = ["terminal.mudstandards.org", "gmcp.mudstandards.org"]
    async with open_websocket_url(url(server), subprotocols=offered) as ws:
        assert ws.subprotocol == "gmcp.mudstandards.org"  # the server's order wins
        web = Web(ws)
        await web.text("shows this screen again")  # a binary ANSI frame
        await ws.send_message('Core.Hello {"client": "webmud", "version": "3"}')
        # It takes Room packages only: the login's Char.Name and Char.Vitals
        # must not come, Room.Info must.
        await ws.send_message('Core.Supports.Set ["Room 1"]')
        await ws.send_message(b"create Gmcpy correct horse\n")
        seen: list[str | bytes] = []

        def room_info(frame: str | bytes) -> bool:
            seen.append(frame)
            return isinstance(frame, str) and frame.startswith("Room.Info ")

        frame = await web.next_matching(room_info)
        assert json.loads(frame.partition(" ")[2])["name"] == "Town Square"
        login_news = ("Char.Name", "Char.Vitals")  # Char.Login.Default came before Set
        assert not [f for f in seen if isinstance(f, str) and f.startswith(login_news)]
        assert any(b"Exits:" in f for f in seen if isinstance(f, bytes))
        flags = next(iter(server.portal.sessions.values())).protocol_flags
        assert flags["CLIENTNAME"] == "webmud"
        assert flags["GMCP_SUPPORTS"] == {"Room": 1}


async def test_json_subprotocol(server: Server) -> None:
    async with open_websocket_url(url(server), subprotocols=["json.mudstandards.org"]) as ws:
        web = Web(ws)
        await web.text("shows this screen again")
        await ws.send_message(b"create Jsony correct horse\n")
        await web.text("Exits:")
        frame = await web.next_matching(lambda f: isinstance(f, str) and '"id": "Room.Info"' in f)
        envelope = json.loads(frame)
        assert envelope["proto"] == "gmcp" and json.loads(envelope["data"])["num"] == 1
        await ws.send_message(json.dumps({"proto": "text", "id": "", "data": "say json"}))
        await web.text('You say, "json"')
        await ws.send_message(json.dumps({"proto": "nonsense"}))
        assert "unknown proto" in await web.text("bad message")


async def test_terminal_subprotocol(server: Server) -> None:
    async with open_websocket_url(url(server), subprotocols=["terminal.mudstandards.org"]) as ws:
        web = Web(ws)
        screen = await web.next_matching(lambda f: b"screen again" in f)
        assert isinstance(screen, bytes) and b"\r\n" in screen
        await ws.send_message("create Termy correct horse")
        room = await web.next_matching(lambda f: b"Exits:" in f)
        assert b"\x1b[" in room  # ANSI colour, rendered for a web terminal


async def test_bad_frames_get_a_message_and_the_connection_survives(server: Server) -> None:
    async with open_websocket_url(url(server)) as ws:
        web = Web(ws)
        await web.text("shows this screen again")
        for bad in ["not json", "[1, 2]", '{"a": 1}', '["prompt", ["x"], {}]']:
            await ws.send_message(bad)
            assert "Your client sent a bad message" in await web.text("bad message")
        await ws.send_message(json.dumps(["text", ["look"], {}]))
        await web.text("shows this screen again")


async def test_oversized_frames_are_refused(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path, websocket_max_message=1000))
        async with open_websocket_url(url(server), disconnect_timeout=1) as ws:
            await ws.get_message()
            await ws.send_message(json.dumps(["text", ["x" * 5000], {}]))
            with pytest.raises(ConnectionClosed) as info, trio.fail_after(WAIT):
                while True:
                    await ws.get_message()
            assert info.value.reason.code == 1009  # message too big
        nursery.cancel_scope.cancel()


async def test_a_dead_peer_does_not_leave_a_ghost(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        websocket_ping_interval=0.1,
        websocket_ping_timeout=0.2,
        websocket_resume_grace=0.3,
    )
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        # A client that does the handshake, then never reads or answers again
        # (a browser tab whose machine went to sleep).
        stream = await trio.open_tcp_stream("127.0.0.1", server.websocket_port)
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b"101" in await stream.receive_some()
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert server.portal.statistics().connections_open == 1
        with trio.fail_after(WAIT):
            await server.portal.wait_connections_below(1)  # pings failed, grace over
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_resume_with_the_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, websocket_resume_grace=5)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        telnet = await login(server.telnet_port, "Tel")
        async with open_websocket_url(url(server)) as ws:
            web = Web(ws)
            token = json.loads(await web.next_matching(lambda f: '"session"' in f))[2]["token"]
            await ws.send_message(json.dumps(["text", ["create Webby correct horse"], {}]))
            await web.text("Exits:")
        # The tab closed. Tel talks meanwhile.
        await telnet.command("say are you there?", "You say")
        # A guessed token is a new session, at the login screen.
        async with open_websocket_url(url(server, "?token=guess")) as ws:
            web = Web(ws)
            session = json.loads(await web.next_matching(lambda f: '"session"' in f))
            assert session[2]["resumed"] is False and session[2]["token"] != token
        # The right token resumes the logged-in session, with what it missed.
        async with open_websocket_url(url(server, f"?token={token}")) as ws:
            web = Web(ws)
            session = json.loads(await web.next_matching(lambda f: '"session"' in f))
            assert session[2]["resumed"] is True and session[2]["token"] == token
            assert "Tel says, &quot;are you there?&quot;" in await web.text("Tel says")
            await ws.send_message(json.dumps(["text", ["say back again"], {}]))
            await web.text("You say, &quot;back again&quot;")
        await telnet.read_until('Webby says, "back again"')
        assert not any("Webby has left the game" in line for line in telnet.history)
        who = await telnet.command("who", "Players online")
        assert who[-1] == "Players online (2):"
        nursery.cancel_scope.cancel()


async def test_web_page_is_served(server: Server) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.web_port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = b""
    with trio.fail_after(WAIT):
        while chunk := await stream.receive_some():
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Security-Policy: default-src 'self'" in head
    assert f'content="{server.websocket_port}"'.encode() in body
    assert b'role="log"' in body and b'aria-live="polite"' in body
    for path, status in [(b"/client.js", b"200"), (b"/nope", b"404")]:
        stream = await trio.open_tcp_stream("127.0.0.1", server.web_port)
        await stream.send_all(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await stream.receive_some()).startswith(b"HTTP/1.1 " + status)
        await stream.aclose()


async def test_a_failing_websocket_connection_ends_only_itself(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from trio_mud.transports.websocket import WebSocketSession

    original = WebSocketSession._frame_in

    async def frame_in(self: WebSocketSession, frame: str | bytes) -> None:
        if "explode" in str(frame):
            raise RuntimeError("a bug in the websocket code")
        await original(self, frame)

    monkeypatch.setattr(WebSocketSession, "_frame_in", frame_in)
    telnet = await login(server.telnet_port, "Tel")
    async with open_websocket_url(url(server)) as calm, open_websocket_url(url(server)) as bad:
        calm_web = Web(calm)
        await calm_web.text("shows this screen again")
        await bad.send_message(json.dumps(["text", ["explode"], {}]))
        with pytest.raises(ConnectionClosed), trio.fail_after(WAIT):
            while True:
                await bad.get_message()
        await calm.send_message(json.dumps(["text", ["look"], {}]))
        await calm_web.text("shows this screen again")
        with trio.fail_after(WAIT):
            await server.portal.wait_connections_below(3)  # the broken session ended
    await telnet.command("look", "Exits:")
    assert "a bug in the websocket code" in caplog.text
    assert "websocket connection failed" in caplog.text

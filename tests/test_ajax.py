"""AJAX long polling (Evennia's /webclientdata) over real sockets."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import trio

from trio_mud import Server
from trio_mud.serverproc import ProcessStarter

from .helpers import WAIT, make_settings, start_server


async def post(port: int, fields: dict[str, str], raw: bytes | None = None) -> tuple[int, Any]:
    """One POST to /webclientdata: (status, decoded JSON)."""
    body = raw if raw is not None else urlencode(fields).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        b"POST /webclientdata HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    answer = b""
    with trio.fail_after(WAIT + 30):
        while chunk := await stream.receive_some():
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


class Page:
    """What the web page does over AJAX: init, input, receive."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.csessid = ""
        self.texts: list[str] = []

    async def init(self) -> None:
        status, reply = await post(self.port, {"mode": "init"})
        assert status == 200
        self.csessid = reply["csessid"]

    async def send(self, text: str) -> None:
        data = json.dumps(["text", [text], {}])
        status, _ = await post(self.port, {"mode": "input", "csessid": self.csessid, "data": data})
        assert status == 200

    async def until(self, needle: str) -> list[str]:
        with trio.fail_after(WAIT + 30):
            while not any(needle in text for text in self.texts):
                status, reply = await post(self.port, {"mode": "receive", "csessid": self.csessid})
                assert status == 200
                for cmdname, args, _ in reply["messages"]:
                    if cmdname == "text":
                        self.texts.extend(args)
        return self.texts


async def test_a_page_plays_over_ajax(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        page = Page(server.web_port)
        await page.init()
        await page.until("shows this screen again")
        await page.send("create Ajax correct horse")
        await page.until("Exits:")
        assert [s.protocol_key for s in server.portal.sessions.values()] == ["ajax"]
        status, _ = await post(page.port, {"mode": "keepalive", "csessid": page.csessid})
        assert status == 200
        # Bad input gets a clear message, and the session goes on.
        status, reply = await post(
            page.port, {"mode": "input", "csessid": page.csessid, "data": "not json"}
        )
        assert status == 400 and "bad message" in reply["error"]
        status, reply = await post(page.port, {"mode": "receive", "csessid": "no-such-thing"})
        assert status == 404
        status, reply = await post(page.port, {}, raw=b"x" * (65 * 1024))
        assert status == 413
        # close ends it at once.
        status, _ = await post(page.port, {"mode": "close", "csessid": page.csessid})
        assert status == 200
        with trio.fail_after(WAIT):
            await server.portal.wait_connections_below(1)
        nursery.cancel_scope.cancel()


async def test_a_page_that_stops_polling_is_gone_after_the_grace(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path, ajax_grace=0.5))
        page = Page(server.web_port)
        await page.init()
        await page.until("shows this screen again")
        assert server.portal.statistics().connections_open == 1
        with trio.fail_after(WAIT):
            await server.portal.wait_connections_below(1)  # no ghost session
        nursery.cancel_scope.cancel()


async def test_typing_over_ajax_through_a_reload_and_a_kill_9(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(make_settings(tmp_path), mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter)
        page = Page(server.web_port)
        await page.init()
        await page.send("create Ajaxa correct horse")
        await page.until("Exits:")
        for n in range(20):
            await page.send(f"say line-{n}")
            if n == 6:
                assert await server.reload() is None
            if n == 13:
                assert starter.pid is not None
                os.kill(starter.pid, signal.SIGKILL)
        texts = await page.until("You say, &quot;line-19&quot;")
        said = [t for t in texts if t.startswith("You say, &quot;line-")]
        assert said == [f"You say, &quot;line-{n}&quot;" for n in range(20)]
        server.shutdown()

"""Test helpers: a real-socket telnet client and a server on port 0."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import trio

from trio_mud import Server, Settings
from trio_mud.telnet import TelnetProtocol, TextLine

#: How long any single wait in a test may take before the test fails.
WAIT = 10.0

#: The colour codes the server sends (SGR sequences).
SGR = re.compile(r"\x1b\[[0-9;]*m")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: port 0, a private data dir, argon2id at low cost."""
    values: dict[str, Any] = {
        "telnet_ports": (0,),
        "data_dir": data_dir,
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 8 * 1024,
    }
    values.update(overrides)
    return Settings(**values)


async def start_server(nursery: trio.Nursery, settings: Settings) -> Server:
    server: Server = await nursery.start(Server(settings).run)
    return server


class Client:
    """A test client over a real TCP socket.

    It parses what the server sends with the telnet parser (refusing any
    option, as a dumb client would) and keeps the text as lines, with colour
    codes removed (``raw`` keeps every byte).
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.protocol = TelnetProtocol(max_partial_line=10**7)
        self.lines: list[str] = []
        self.raw = bytearray()
        self.closed = False

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> Client:
        if rcvbuf is None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        else:
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            await sock.connect(("127.0.0.1", port))
            stream = trio.SocketStream(sock)
        return cls(stream)

    async def welcome(self) -> list[str]:
        """Read the whole connection screen."""
        lines = await self.read_until("shows this screen again")
        return lines + await self.read_until("=====")

    async def send_line(self, text: str) -> None:
        await self.stream.send_all(text.encode("utf-8") + b"\r\n")

    async def _receive(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.closed = True
            return
        self.raw += data
        for event in self.protocol.receive_data(data):
            if isinstance(event, TextLine):
                text = event.data.decode("utf-8", errors="replace")
                self.lines.append(SGR.sub("", text))
        reply = self.protocol.bytes_to_send()
        if reply:
            await self.stream.send_all(reply)

    async def read_until(self, marker: str) -> list[str]:
        """Lines up to and including the first that contains ``marker``.

        Those lines are consumed; later ones stay for the next call.
        """
        with trio.fail_after(WAIT):
            while True:
                for index, line in enumerate(self.lines):
                    if marker in line:
                        taken = self.lines[: index + 1]
                        del self.lines[: index + 1]
                        return taken
                if self.closed:
                    raise AssertionError(f"closed before {marker!r}; got {self.lines!r}")
                await self._receive()

    async def command(self, text: str, marker: str) -> list[str]:
        await self.send_line(text)
        return await self.read_until(marker)

    async def read_until_closed(self) -> list[str]:
        """Everything until the server closes the connection."""
        with trio.fail_after(WAIT):
            while not self.closed:
                await self._receive()
        taken = self.lines[:]
        partial = self.protocol.partial_line
        if partial:
            taken.append(SGR.sub("", partial.decode("utf-8", errors="replace")))
        self.lines.clear()
        return taken

    async def aclose(self) -> None:
        await self.stream.aclose()


async def login(
    port: int, name: str, password: str = "correct horse", *, create: bool = True
) -> Client:
    """A client that has created (or connected to) ``name`` and sees its room."""
    client = await Client.connect(port)
    await client.welcome()
    verb = "create" if create else "connect"
    await client.send_line(f"{verb} {name} {password}")
    await client.read_until("Exits:")
    return client

"""Test helpers: a real-socket telnet client and a server on port 0."""

from __future__ import annotations

import json
import re
import socket
import zlib
from pathlib import Path
from typing import Any

import trio

from trio_mud import Server, Settings
from trio_mud.protocols.mudtelnet import msdp_decode
from trio_mud.protocols.telnet import (
    IAC,
    SB,
    SE,
    Event,
    Opt,
    OptionChange,
    Subnegotiation,
    TelnetProtocol,
    TextLine,
)
from trio_mud.testing import settings_for_tests

#: How long any single wait in a test may take before the test fails.
WAIT = 10.0

#: The colour codes the server sends (SGR sequences).
SGR = re.compile(r"\x1b\[[0-9;]*m")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: the plugin's (port 0, a private data dir, cheap
    hashing, throttles lifted: tests make many accounts from one address),
    without the starter game's prompt, which would run into the lines these
    tests read (test_kit tests it)."""
    return settings_for_tests(data_dir, **{"game_prompt": "", **overrides})


async def start_server(nursery: trio.Nursery, settings: Settings) -> Server:
    server: Server = await nursery.start(Server(settings).run)
    return server


class Client:
    """A test client over a real TCP socket.

    It parses what the server sends with the telnet parser (refusing any
    option, as a dumb client would) and keeps the text as lines, with colour
    codes removed (``raw`` keeps every byte).
    """

    screen_reader = False

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.protocol = self.make_protocol()
        self.lines: list[str] = []
        #: Every line ever received, for checks over a whole session.
        self.history: list[str] = []
        self.raw = bytearray()
        self.closed = False

    def make_protocol(self) -> TelnetProtocol:
        return TelnetProtocol(max_partial_line=10**7)

    def on_event(self, event: Event) -> None:
        """Telnet events other than lines (a subclass answers them)."""

    def decode(self, data: bytes) -> bytes:
        """What the server sent, before telnet parsing (MCCP2 undoes here)."""
        return data

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
        if self.screen_reader:
            return lines  # the closing rule is not sent to screen readers
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
        for event in self.protocol.receive_data(self.decode(data)):
            if isinstance(event, TextLine):
                text = SGR.sub("", event.data.decode("utf-8", errors="replace"))
                self.lines.append(text)
                self.history.append(text)
            else:
                self.on_event(event)
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


async def ann_and_a_listener_who_stops_reading(port: int) -> tuple[Client, Client]:
    """Ann, logged in, and Zed, whose socket buffers little (4 KiB) and who,
    once he sees the room, reads nothing unless the test asks him to."""
    ann = await login(port, "Ann")
    zed = await Client.connect(port, rcvbuf=4096)
    await zed.welcome()
    await zed.send_line("create Zed correct horse")
    await ann.read_until("Zed has entered the game.")
    return ann, zed


class MudClient(Client):
    """A scripted MUD client: answers TTYPE and NAWS, takes GMCP/MSDP/EOR/ECHO.

    GMCP and MSDP messages from the server are kept in ``gmcp`` and ``msdp``.
    """

    ttype = ("TESTCLIENT 1.0", "XTERM-256COLOR", "MTTS 271")
    size = (100, 40)
    remote = frozenset({Opt.GMCP, Opt.MSDP, Opt.EOR, Opt.ECHO, Opt.MSSP})
    supports = ("Char 1", "Room 1")

    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__(stream)
        self.gmcp: list[tuple[str, Any]] = []
        self.msdp: list[tuple[str, Any]] = []
        self.mssp = b""
        self.inflater: Any = None
        self.mccp_finished = False
        self._ttype_round = 0
        self.changed = trio.Event()

    def make_protocol(self) -> TelnetProtocol:
        return TelnetProtocol(
            local_options={Opt.TTYPE, Opt.NAWS},
            remote_options=self.remote,
            max_partial_line=10**7,
            max_subnegotiation=10**7,
        )

    def _sb(self, option: int, payload: bytes) -> None:
        self.protocol.send_subnegotiation(option, payload)

    def on_event(self, event: Event) -> None:
        if isinstance(event, OptionChange) and event.enabled:
            if event.option == Opt.NAWS:
                self.send_naws(*self.size)
            elif event.option == Opt.GMCP:
                hello = '{"client": "TESTCLIENT", "version": "1.0"}'
                self._sb(Opt.GMCP, f"Core.Hello {hello}".encode())
                supports = json.dumps(list(self.supports))
                self._sb(Opt.GMCP, f"Core.Supports.Set {supports}".encode())
        elif isinstance(event, Subnegotiation):
            if event.option == Opt.TTYPE and event.payload == b"\x01":
                answer = self.ttype[min(self._ttype_round, len(self.ttype) - 1)]
                self._ttype_round += 1
                self._sb(Opt.TTYPE, b"\x00" + answer.encode())
            elif event.option == Opt.GMCP:
                package, _, data = event.payload.decode().partition(" ")
                self.gmcp.append((package, json.loads(data) if data else None))
            elif event.option == Opt.MSDP:
                self.msdp += msdp_decode(event.payload)
            elif event.option == Opt.MSSP:
                self.mssp = event.payload
        self.changed.set()
        self.changed = trio.Event()

    def decode(self, data: bytes) -> bytes:
        marker = bytes((IAC, SB, Opt.MCCP2, IAC, SE))
        out = bytearray()
        while data:
            if self.inflater is not None:
                out += self.inflater.decompress(data)
                if not self.inflater.eof:
                    break
                data = self.inflater.unused_data
                self.inflater = None
                self.mccp_finished = True
                continue
            at = data.find(marker) if Opt.MCCP2 in self.remote else -1
            if at < 0:
                out += data
                break
            out += data[: at + len(marker)]
            data = data[at + len(marker) :]
            self.inflater = zlib.decompressobj()
        return bytes(out)

    def send_naws(self, width: int, height: int) -> None:
        self._sb(Opt.NAWS, bytes((width >> 8, width & 255, height >> 8, height & 255)))

    async def flush(self) -> None:
        data = self.protocol.bytes_to_send()
        if data:
            await self.stream.send_all(data)

    async def send_gmcp(self, package: str, data: Any = None) -> None:
        payload = package if data is None else f"{package} {json.dumps(data)}"
        self._sb(Opt.GMCP, payload.encode())
        await self.flush()

    async def send_msdp(self, payload: bytes) -> None:
        self._sb(Opt.MSDP, payload)
        await self.flush()

    async def wait_gmcp(self, package: str) -> Any:
        """The data of the next GMCP message of ``package`` (earlier ones dropped)."""
        with trio.fail_after(WAIT):
            while True:
                for index, (name, data) in enumerate(self.gmcp):
                    if name == package:
                        del self.gmcp[: index + 1]
                        return data
                await self._receive()

    async def wait_msdp(self, name: str) -> Any:
        with trio.fail_after(WAIT):
            while True:
                for index, (variable, value) in enumerate(self.msdp):
                    if variable == name:
                        del self.msdp[: index + 1]
                        return value
                await self._receive()


class Compressing(MudClient):
    """A MUD client that takes MCCP2 (and GMCP)."""

    remote = frozenset({Opt.GMCP, Opt.EOR, Opt.ECHO, Opt.MCCP2})


async def mud_login(
    port: int, name: str, password: str = "correct horse", *, client: type[MudClient] = MudClient
) -> MudClient:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    mud = client(stream)
    await mud.welcome()
    await mud.flush()
    await mud.send_line(f"create {name} {password}")
    await mud.read_until("Exits:")
    return mud

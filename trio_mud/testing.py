"""Test fixtures for games on trio_mud: a pytest plugin.

Installed with trio_mud and registered through the ``pytest11`` entry point,
so a game's own tests get these fixtures with no set-up (they are async:
run the tests with `pytest-trio <https://pytest-trio.readthedocs.io>`_, e.g.
``trio_mode = true``):

``mud_game``
    The game the server runs, as ``"module:attribute"`` (the ``game``
    setting). The starter game unless a ``conftest.py`` overrides it.
``mud_settings``
    :class:`~trio_mud.settings.Settings` for a test: free ports on
    127.0.0.1, a fresh data directory, cheap password hashing, and the login
    throttles lifted (a test makes many accounts from one address).
``mud_server``
    A running :class:`~trio_mud.server.Server` (the game in this process,
    so ``mud_server.game`` is the game object), stopped after the test.
``telnet_client``
    ``await telnet_client("mudlet")``: a :class:`TelnetClient` connected to
    ``mud_server`` that negotiates like the named client: ``"raw"`` (a bare
    socket: refuses every option), ``"mudlet"`` (TTYPE, NAWS, GMCP with
    ``Core.Supports``, MSDP, EOR) or ``"tintin"`` (TTYPE, NAWS, EOR; no GMCP).
``websocket_client``
    ``await websocket_client()``: a :class:`WebSocketClient` speaking the web
    client's JSON.
``fake_session``
    ``fake_session()``: a :class:`FakeSession` that records what the game
    sends, for unit-testing one command without sockets.

Every ``expect`` waits for what it names (up to ``within`` seconds, then the
test fails with what did arrive); nothing sleeps to synchronise.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from attrs import define, field, frozen
from trio_websocket import WebSocketConnection, open_websocket_url

from .handler import ServerSession
from .messages import normalize
from .protocols.telnet import (
    Event,
    Opt,
    OptionChange,
    PromptLine,
    Subnegotiation,
    TelnetProtocol,
    TextLine,
)
from .server import Server
from .settings import Settings

__all__ = [
    "PROFILES",
    "ClientProfile",
    "FakeSession",
    "TelnetClient",
    "WebSocketClient",
    "settings_for_tests",
]

T = TypeVar("T")

#: Seconds an ``expect`` waits by default.
TIMEOUT = 10.0

_SGR = re.compile(r"\x1b\[[0-9;]*m")
_TAGS = re.compile(r"<[^>]*>")


def settings_for_tests(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: port 0 everywhere, ``data_dir``, fast and permissive."""
    values: dict[str, Any] = {
        "telnet_ports": (0,),
        "websocket_port": 0,
        "web_port": 0,
        "data_dir": data_dir,
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 8 * 1024,
        "connection_rate_burst": 1000,
        "max_connections_per_address": 1000,
        "creation_throttle_limit": 100_000,
        "login_throttle_limit": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


# -- telnet -----------------------------------------------------------------------------


@frozen
class ClientProfile:
    """How a client negotiates: what it accepts, what it says about itself."""

    name: str
    #: Its TTYPE answers, in order (the last repeats).
    ttype: tuple[str, ...] = ()
    #: Options it lets the server enable (the server's WILL gets DO).
    accepts: frozenset[int] = frozenset()
    #: Its window (NAWS), or None.
    size: tuple[int, int] | None = None
    #: GMCP packages it names in ``Core.Supports.Set`` once GMCP is on.
    supports: tuple[str, ...] = ()


PROFILES = {
    "raw": ClientProfile("raw"),
    "mudlet": ClientProfile(
        "mudlet",
        ttype=("MUDLET", "ANSI-TRUECOLOR", "MTTS 2829"),
        accepts=frozenset({Opt.GMCP, Opt.MSDP, Opt.EOR, Opt.ECHO, Opt.MSSP}),
        size=(100, 40),
        supports=("Char 1", "Char.Vitals 1", "Room 1"),
    ),
    "tintin": ClientProfile(
        "tintin",
        ttype=("TINTIN++", "XTERM-256COLOR", "MTTS 2831"),
        accepts=frozenset({Opt.EOR, Opt.ECHO, Opt.SGA}),
        size=(80, 24),
    ),
}


class TelnetClient:
    """A telnet test client over a real socket, negotiating as its profile does.

    ``lines`` are the text lines not yet taken by an ``expect`` (colour
    codes removed), ``prompts`` the prompts (text ended by GA or EOR), and
    ``gmcp`` the GMCP messages, ``(package, data)``.
    """

    def __init__(self, stream: trio.SocketStream, profile: ClientProfile) -> None:
        self.stream = stream
        self.profile = profile
        self.protocol = TelnetProtocol(
            local_options={Opt.TTYPE, Opt.NAWS} if profile.ttype else (),
            remote_options=profile.accepts,
            max_partial_line=10**7,
            max_subnegotiation=10**7,
            prompts=True,
        )
        self.lines: list[str] = []
        self.prompts: list[str] = []
        self.gmcp: list[tuple[str, Any]] = []
        #: Bytes as received, before any parsing.
        self.raw = bytearray()
        self.closed = False
        self._ttype_round = 0

    @classmethod
    async def connect(cls, port: int, profile: str | ClientProfile = "raw") -> TelnetClient:
        chosen = PROFILES[profile] if isinstance(profile, str) else profile
        return cls(await trio.open_tcp_stream("127.0.0.1", port), chosen)

    async def send(self, line: str) -> None:
        """Type ``line`` (and Enter)."""
        await self.stream.send_all(line.encode() + b"\r\n")

    async def send_gmcp(self, package: str, data: Any = None) -> None:
        """Send GMCP ``package`` with ``data`` (JSON)."""
        payload = package if data is None else f"{package} {json.dumps(data)}"
        self.protocol.send_subnegotiation(Opt.GMCP, payload.encode())
        await self._flush()

    async def expect(self, text: str, *, within: float = TIMEOUT) -> list[str]:
        """Lines up to and including the first holding ``text`` (taken from ``lines``)."""
        return await self._wait(within, f"a line with {text!r}", lambda: _take(self.lines, text))

    async def expect_prompt(self, *, within: float = TIMEOUT) -> str:
        """The next prompt's text."""
        return await self._wait(
            within, "a prompt", lambda: self.prompts.pop(0) if self.prompts else None
        )

    async def expect_gmcp(self, package: str, *, within: float = TIMEOUT) -> Any:
        """The data of the next GMCP ``package`` (earlier messages are dropped)."""

        def found() -> Any:
            for index, (name, data) in enumerate(self.gmcp):
                if name == package:
                    del self.gmcp[: index + 1]
                    return _Found(data)
            return None

        result: _Found = await self._wait(within, f"GMCP {package}", found)
        return result.value

    async def expect_closed(self, *, within: float = TIMEOUT) -> list[str]:
        """Everything until the server closes the connection."""
        await self._wait(within, "the connection to close", lambda: True if self.closed else None)
        taken, self.lines = self.lines, []
        return taken

    async def aclose(self) -> None:
        """Close the connection."""
        await self.stream.aclose()

    async def __aenter__(self) -> TelnetClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- inside ----------------------------------------------------------------------------

    async def _wait(self, within: float, what: str, ready: Callable[[], T | None]) -> T:
        with trio.move_on_after(within):
            while True:
                value = ready()
                if value is not None:
                    return value
                if self.closed:
                    break
                await self._receive()
        raise AssertionError(f"no {what} within {within:g} s; unread lines: {self.lines!r}")

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
            self._on_event(event)
        await self._flush()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TextLine):
            self.lines.append(_plain(event.data))
        elif isinstance(event, PromptLine):
            self.prompts.append(_plain(event.data))
        elif isinstance(event, OptionChange) and event.enabled:
            if event.option == Opt.NAWS and self.profile.size is not None:
                width, height = self.profile.size
                self.protocol.send_subnegotiation(
                    Opt.NAWS, bytes((width >> 8, width & 255, height >> 8, height & 255))
                )
            elif event.option == Opt.GMCP:
                hello = {"client": self.profile.name, "version": "1.0"}
                self.protocol.send_subnegotiation(
                    Opt.GMCP, f"Core.Hello {json.dumps(hello)}".encode()
                )
                if self.profile.supports:
                    supports = json.dumps(list(self.profile.supports))
                    self.protocol.send_subnegotiation(
                        Opt.GMCP, f"Core.Supports.Set {supports}".encode()
                    )
        elif isinstance(event, Subnegotiation):
            if event.option == Opt.TTYPE and event.payload == b"\x01":
                answers = self.profile.ttype
                answer = answers[min(self._ttype_round, len(answers) - 1)]
                self._ttype_round += 1
                self.protocol.send_subnegotiation(Opt.TTYPE, b"\x00" + answer.encode())
            elif event.option == Opt.GMCP:
                package, _, data = event.payload.decode("utf-8", "replace").partition(" ")
                self.gmcp.append((package, json.loads(data) if data else None))

    async def _flush(self) -> None:
        data = self.protocol.bytes_to_send()
        if data:
            try:
                await self.stream.send_all(data)
            except trio.BrokenResourceError:
                self.closed = True


@frozen
class _Found:
    value: Any


def _plain(data: bytes) -> str:
    return _SGR.sub("", data.decode("utf-8", errors="replace"))


def _take(lines: list[str], text: str) -> list[str] | None:
    for index, line in enumerate(lines):
        if text in line:
            taken = lines[: index + 1]
            del lines[: index + 1]
            return taken
    return None


# -- websocket ------------------------------------------------------------------------------


class WebSocketClient:
    """The web client's protocol (Evennia's JSON) over a real WebSocket.

    ``messages`` are ``(cmdname, args, kwargs)`` not yet taken; text comes as
    HTML, and ``expect`` compares its plain text.
    """

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.messages: list[tuple[str, list[Any], dict[str, Any]]] = []

    async def send(self, line: str) -> None:
        """Type ``line``."""
        await self.send_oob("text", line)

    async def send_oob(self, cmdname: str, *args: Any, **kwargs: Any) -> None:
        """Send ``[cmdname, args, kwargs]``."""
        await self.ws.send_message(json.dumps([cmdname, list(args), kwargs]))

    async def expect(self, text: str, *, within: float = TIMEOUT) -> str:
        """The plain text of the first ``text`` message holding ``text``."""

        def found() -> str | None:
            for index, (cmdname, args, _) in enumerate(self.messages):
                plain = html.unescape(_TAGS.sub("", str(args[0]))) if args else ""
                if cmdname == "text" and text in plain:
                    del self.messages[: index + 1]
                    return plain
            return None

        return await self._wait(within, f"text with {text!r}", found)

    async def expect_message(
        self, cmdname: str, *, within: float = TIMEOUT
    ) -> tuple[list[Any], dict[str, Any]]:
        """The next ``cmdname`` message's args and kwargs."""

        def found() -> tuple[list[Any], dict[str, Any]] | None:
            for index, (name, args, kwargs) in enumerate(self.messages):
                if name == cmdname:
                    del self.messages[: index + 1]
                    return args, kwargs
            return None

        return await self._wait(within, f"a {cmdname!r} message", found)

    async def _wait(self, within: float, what: str, ready: Callable[[], T | None]) -> T:
        with trio.move_on_after(within):
            while (value := ready()) is None:
                frame = json.loads(await self.ws.get_message())
                if isinstance(frame, list) and len(frame) == 3:
                    self.messages.append((str(frame[0]), list(frame[1]), dict(frame[2])))
            return value
        raise AssertionError(f"no {what} within {within:g} s; unread: {self.messages!r}")


# -- a session without sockets -----------------------------------------------------------------


@define(eq=False)
class FakeSession(ServerSession):
    """A session that keeps what the game sends it, for unit tests of one command.

    ``sent`` holds every ``(cmdname, args, kwargs)``; :attr:`texts` the text
    ones, as strings. ``disconnected`` is the reason, once it is.
    """

    sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(factory=list, kw_only=True)
    disconnected: str | None = field(default=None, kw_only=True)

    @property
    def connected(self) -> bool:
        return self.disconnected is None

    def data_out(self, **kwargs: Any) -> None:
        for cmdname, (args, cmd_kwargs) in normalize(kwargs):
            self.sent.append((cmdname, args, cmd_kwargs))

    def disconnect(self, reason: str | None = None) -> None:
        self.disconnected = reason or ""

    def sync(self) -> None:
        """Nothing to sync without a portal."""

    @property
    def texts(self) -> list[str]:
        return [str(args[0]) for cmdname, args, _ in self.sent if cmdname == "text" and args]


# -- the fixtures --------------------------------------------------------------------------------


@pytest.fixture
def mud_game() -> str:
    """The game to run (``module:attribute``); override it in your conftest.py."""
    return Settings().game


@pytest.fixture
def mud_settings(tmp_path: Path, mud_game: str) -> Settings:
    """Settings for one test (see :func:`settings_for_tests`)."""
    return settings_for_tests(tmp_path / "mud-data", game=mud_game)


@pytest.fixture
async def mud_server(mud_settings: Settings) -> AsyncIterator[Server]:
    """A running server (the game in this process), shut down after the test."""
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(mud_settings).run)
        yield server
        server.shutdown()


@pytest.fixture
async def telnet_client(
    mud_server: Server,
) -> AsyncIterator[Callable[..., Awaitable[TelnetClient]]]:
    """A factory: ``await telnet_client("mudlet")`` connects a new client."""
    clients: list[TelnetClient] = []

    async def connect(profile: str | ClientProfile = "raw") -> TelnetClient:
        client = await TelnetClient.connect(mud_server.telnet_port, profile)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.aclose()


@pytest.fixture
async def websocket_client(
    mud_server: Server,
) -> AsyncIterator[Callable[[], Awaitable[WebSocketClient]]]:
    """A factory: ``await websocket_client()`` connects a new web client."""
    async with trio.open_nursery() as nursery:

        async def connect() -> WebSocketClient:
            url = f"ws://127.0.0.1:{mud_server.websocket_port}/"
            holder: list[WebSocketClient] = []

            async def hold(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                async with open_websocket_url(url) as ws:
                    holder.append(WebSocketClient(ws))
                    task_status.started()
                    await trio.sleep_forever()

            await nursery.start(hold)
            return holder[0]

        yield connect
        nursery.cancel_scope.cancel()


@pytest.fixture
def fake_session() -> Callable[..., FakeSession]:
    """A factory: ``fake_session(sessid=1, **session_fields)``."""
    counter = iter(range(1, 1_000_000))

    def make(**fields: Any) -> FakeSession:
        fields.setdefault("sessid", next(counter))
        fields.setdefault("address", "127.0.0.1")
        return FakeSession(**fields)

    return make

"""SSH: a real SSH client library (asyncssh, as a client) against a real server.

The client runs in the test's own trio-asyncio loop; the server's SSH
listener runs in another, as in production.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trio
import trio_asyncio

from trio_mud import Server
from trio_mud.serverproc import ProcessStarter
from trio_mud.transports.ssh import GENERATED_HOST_KEY

from .helpers import WAIT, login, make_settings, start_server
from .test_proxy import V1, v2

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def aio(function: Any) -> Any:
    return trio_asyncio.aio_as_trio(function)


class SSHPlayer:
    """One SSH terminal: type keys, read what the screen gets."""

    def __init__(self, connection: asyncssh.SSHClientConnection, process: Any) -> None:
        self.connection = connection
        self.process = process
        #: Every byte the server sent.
        self.raw = bytearray()
        self._read = 0
        self.closed = False

    @property
    def text(self) -> str:
        """What was received, colour and cursor movement removed."""
        return ANSI.sub(b"", bytes(self.raw)).decode("utf-8", errors="replace")

    def type(self, keys: str | bytes) -> None:
        self.process.stdin.write(keys.encode() if isinstance(keys, str) else keys)

    async def _receive(self) -> None:
        data = await aio(self.process.stdout.read)(65536)
        if not data:
            self.closed = True
        self.raw += data

    async def read_until(self, marker: str) -> str:
        """The text from the last read on, up to and including ``marker``."""
        with trio.fail_after(WAIT):
            while True:
                text = self.text
                found = text.find(marker, self._read)
                if found >= 0:
                    start, self._read = self._read, found + len(marker)
                    return text[start : self._read]
                if self.closed:
                    raise AssertionError(f"closed before {marker!r}; got {text[self._read :]!r}")
                await self._receive()

    async def command(self, line: str, marker: str) -> str:
        self.type(line + "\r")
        return await self.read_until(marker)

    async def read_until_closed(self) -> str:
        with trio.fail_after(WAIT):
            while not self.closed:
                await self._receive()
        return self.text[self._read :]


@asynccontextmanager
async def ssh_player(
    port: int,
    username: str = "tia",
    password: str = "correct horse",
    *,
    term: str | None = "xterm-256color",
    size: tuple[int, int] = (80, 24),
    sock: socket.socket | None = None,
    **extra: Any,
) -> AsyncIterator[SSHPlayer]:
    """An SSH player, in the current trio-asyncio loop (or a loop of its own)."""
    async with AsyncExitStack() as stack:
        if trio_asyncio.current_loop.get() is None:
            await stack.enter_async_context(trio_asyncio.open_loop())
        options: dict[str, Any] = {"sock": sock} if sock is not None else {}
        options.update(extra)
        connection = await aio(asyncssh.connect)(
            "127.0.0.1",
            port,
            username=username,
            password=password,
            known_hosts=None,
            preferred_auth="password",
            **options,
        )
        try:
            process = await aio(connection.create_process)(
                term_type=term, term_size=size, encoding=None
            )
            yield SSHPlayer(connection, process)
        finally:
            connection.close()
            await aio(connection.wait_closed)()


@pytest.fixture
async def ssh_server(nursery: trio.Nursery, tmp_path: Path) -> Server:
    server = await start_server(nursery, make_settings(tmp_path, ssh_ports=(0,)))
    await (await login(server.telnet_port, "Tia")).aclose()  # an account to log in to
    return server


def game_session(server: Server, protocol_key: str = "ssh") -> Any:
    assert server.handler is not None
    (session,) = [s for s in server.handler.sessions.values() if s.protocol_key == protocol_key]
    return session


async def test_the_password_logs_straight_in_and_play_goes_on(ssh_server: Server) -> None:
    async with ssh_player(ssh_server.ssh_port) as player:
        await player.read_until("Exits:")
        session = game_session(ssh_server)
        assert session.logged_in and session.uname == "Tia"
        said = await player.command("say hello over ssh", 'You say, "hello over ssh"')
        assert "say hello over ssh" in said  # typed keys are echoed, then the answer
        assert re.search(rb"(?<!\r)\n", player.raw) is None  # a terminal needs CR LF
        async with ssh_player(ssh_server.ssh_port, "nobody", "") as other:
            await other.read_until("connect <name> <password>")
            other.type("say anyone?\r")
            await other.read_until("not a command here")
        # The password never reaches the screen, the log or the session.
        assert b"correct horse" not in player.raw


async def test_other_names_and_wrong_passwords_get_the_connection_screen(
    ssh_server: Server,
) -> None:
    async with ssh_player(ssh_server.ssh_port, "tia", "wrong") as player:
        await player.read_until("Incorrect name or password.")
        assert not game_session(ssh_server).logged_in
        # The game's hidden password prompt: nothing typed there is echoed.
        await player.command("connect tia", "Password: ")
        mark = len(player.raw)
        player.type("correct horse\r")
        await player.read_until("Exits:")
        assert b"correct" not in player.raw[mark:]
        # ... and it is not kept in the history: Up brings back the command.
        player.type("\x1b[A")
        await player.read_until("connect tia")


async def test_line_editing_keys(ssh_server: Server) -> None:
    async with ssh_player(ssh_server.ssh_port) as player:
        await player.read_until("Exits:")
        player.type("sya\x7f\x7fay one\r")  # backspace
        await player.read_until('You say, "one"')
        player.type("say gone\x15say two\r")  # Ctrl-U kills the line
        await player.read_until('You say, "two"')
        player.type("say never\x03")  # Ctrl-C drops it
        await player.read_until("^C")
        player.type("say three\x1b[D\x1b[D\x1b[Dx\x1b[F!\r")  # arrows, End
        await player.read_until('You say, "thxree!"')
        player.type("\x1b[A\x1b[A\r")  # Up twice: "say two"
        await player.read_until('You say, "two"')
        assert 'You say, "never"' not in player.text
        player.type("\x04")  # Ctrl-D on an empty line: goodbye
        assert "Goodbye." in await player.read_until_closed()


async def test_terminal_size_and_type_reach_the_game(ssh_server: Server) -> None:
    async with ssh_player(ssh_server.ssh_port, size=(100, 30)) as player:
        await player.read_until("Exits:")
        flags = game_session(ssh_server).protocol_flags
        assert flags["SCREENWIDTH"] == {0: 100} and flags["SCREENHEIGHT"] == {0: 30}
        assert flags["XTERM256"] and flags["CLIENTNAME"].startswith("AsyncSSH")
        player.process.change_terminal_size(132, 43)
        await player.command("look", "Exits:")  # the resize came before it
        flags = game_session(ssh_server).protocol_flags
        assert flags["SCREENWIDTH"] == {0: 132} and flags["SCREENHEIGHT"] == {0: 43}
        assert b"\x1b[" in player.raw  # colour for xterm
    async with ssh_player(ssh_server.ssh_port, term="dumb") as plain:
        await plain.read_until("Exits:")
        await plain.command("look", "Exits:")
        assert b"\x1b[0;" not in plain.raw  # no colour for a dumb terminal


async def test_output_is_written_above_the_line_being_typed(ssh_server: Server) -> None:
    async with (
        trio_asyncio.open_loop(),
        ssh_player(ssh_server.ssh_port) as tia,
        ssh_player(ssh_server.ssh_port, "bob", "") as bob,
    ):
        await tia.read_until("Exits:")
        await bob.read_until("connect <name>")
        await bob.command("create Bob other horse", "Exits:")
        tia.type("say half")
        await tia.read_until("say half")
        mark = len(tia.raw)
        bob.type("say interrupting\r")
        await tia.read_until('Bob says, "interrupting"')
        await tia.read_until("say half")  # drawn again below
        shown = bytes(tia.raw[mark:])
        assert shown.startswith(b"\r\x1b[J")  # the half line was erased first
        tia.type("\r")
        await tia.read_until('You say, "half"')


async def test_a_client_without_a_terminal_sends_lines_unechoed(ssh_server: Server) -> None:
    async with ssh_player(ssh_server.ssh_port, term=None) as player:
        await player.read_until("Exits:")
        await player.command("say plain lines", 'You say, "plain lines"')
        assert "say plain lines" not in player.text  # the client echoes for itself
        assert b"\x1b[" not in player.raw


async def test_commands_and_subsystems_are_refused(ssh_server: Server) -> None:
    async with trio_asyncio.open_loop():
        connection = await aio(asyncssh.connect)(
            "127.0.0.1",
            ssh_server.ssh_port,
            username="tia",
            password="correct horse",
            known_hosts=None,
        )
        with pytest.raises(asyncssh.ChannelOpenError):
            await aio(connection.run)("cat /etc/passwd")
        with pytest.raises(asyncssh.ChannelOpenError):
            await aio(connection.start_sftp_client)()
        connection.close()


async def test_the_host_key_is_made_once_and_kept(nursery: trio.Nursery, tmp_path: Path) -> None:
    fingerprints = []
    for _ in range(2):
        async with trio.open_nursery() as inner:
            server = await start_server(inner, make_settings(tmp_path, ssh_ports=(0,)))
            async with ssh_player(server.ssh_port, "nobody", "") as player:
                await player.read_until("connect <name>")
                key = player.connection.get_server_host_key()
                assert key is not None
                fingerprints.append(key.get_fingerprint())
            server.shutdown()
    assert fingerprints[0] == fingerprints[1]
    assert (tmp_path / GENERATED_HOST_KEY).stat().st_mode & 0o777 == 0o600


async def test_a_proxy_header_names_the_player(nursery: trio.Nursery, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ssh_ports=(0,), upstream_ips=("127.0.0.1",))
    server = await start_server(nursery, settings)
    for header, address in [(V1, "203.0.113.7"), (v2("2001:db8::5"), "2001:db8::5")]:
        sock = socket.create_connection(("127.0.0.1", server.ssh_port))
        sock.sendall(header)
        async with ssh_player(server.ssh_port, "nobody", "", sock=sock) as player:
            await player.read_until("connect <name>")
            assert game_session(server).address == address
    # From the proxy, no header is no connection.
    async with trio_asyncio.open_loop():
        with pytest.raises((asyncssh.Error, OSError)):
            async with ssh_player(server.ssh_port, "nobody", ""):
                pass


async def test_typing_over_ssh_through_a_reload_and_a_kill_9(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ssh_ports=(0,))
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(settings, mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter)
        await (await login(server.telnet_port, "Tia")).aclose()
        async with ssh_player(server.ssh_port) as player:
            await player.read_until("Exits:")
            for n in range(30):
                player.type(f"say line-{n}\r")
                if n == 10:
                    assert await server.reload() is None
                if n == 20:
                    assert starter.pid is not None
                    os.kill(starter.pid, signal.SIGKILL)
            await player.read_until('You say, "line-29"')
            said = re.findall(r'You say, "line-(\d+)"', player.text)
            assert said == [str(n) for n in range(30)]  # each once, in order
            assert not player.closed
        server.shutdown()


async def test_a_shutdown_says_goodbye_to_ssh_players_and_stops(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ssh_ports=(0,))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        await (await login(server.telnet_port, "Tia")).aclose()
        async with ssh_player(server.ssh_port) as player:
            await player.read_until("Exits:")
            with trio.fail_after(WAIT):
                server.shutdown()
                assert "shutting down" in await player.read_until_closed()
    # The nursery exits: the server stopped (it used to spin on the SSH
    # player's goodbye after its handler had gone).


async def test_a_client_that_stops_reading_is_dropped(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, ssh_ports=(0,), write_timeout=1.0, max_command_rate=1000, command_rate_burst=1000
    )
    server = await start_server(nursery, settings)
    await (await login(server.telnet_port, "Tia")).aclose()
    stop_reading = trio.Event()
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    proxy_port = listener.socket.getsockname()[1]

    async def relay(source: trio.abc.Stream, sink: trio.abc.Stream, stop: trio.Event) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while not stop.is_set() and (chunk := await source.receive_some(65536)):
                await sink.send_all(chunk)
            await trio.sleep_forever()  # a client that stopped reading: bytes pile up

    async def proxy(stream: trio.SocketStream) -> None:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room on the way
        await sock.connect(("127.0.0.1", server.ssh_port))
        upstream = trio.SocketStream(sock)
        async with trio.open_nursery() as pair:
            pair.start_soon(relay, stream, upstream, trio.Event())
            pair.start_soon(relay, upstream, stream, stop_reading)

    nursery.start_soon(trio.serve_listeners, proxy, [listener])
    # A window of 1 GiB: the SSH layer never tells the server to wait.
    async with ssh_player(proxy_port, window=1 << 30) as player:
        await player.read_until("Exits:")
        assert sum(c.protocol_key == "ssh" for c in server.portal.connections.values()) == 1
        stop_reading.set()  # the proxy stops taking the server's bytes
        bob = await login(server.telnet_port, "Bob")
        with trio.fail_after(WAIT):
            while any(c.protocol_key == "ssh" for c in server.portal.connections.values()):
                await bob.command("say " + "x" * 5000, "You say")  # output for Tia, unread

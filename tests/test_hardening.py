"""Hardening: no single client can take the game down, see a password, or
reach another player's terminal. One test (or more) per finding of the
attack review, each over real sockets against a real server."""

from __future__ import annotations

import contextlib
import json
import logging
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked
from trio_websocket import HandshakeError, open_websocket_url

from trio_mud import Server
from trio_mud.protocols.telnet import DO, IAC, SB, SE, WILL, Opt
from trio_mud.serverproc import ProcessStarter

from .helpers import WAIT, Client, MudClient, login, make_settings, mud_login, start_server

PASSWORD_PROMPT = b"Password: " + bytes((IAC, WILL, Opt.ECHO))


async def raw_count(client: Client, needle: bytes, count: int) -> None:
    """Read until ``needle`` has arrived ``count`` times in all (raw bytes)."""
    with trio.fail_after(WAIT):
        while client.raw.count(needle) < count:
            assert not client.closed, f"closed before {needle!r} x{count}"
            await client._receive()


async def connection_screen(port: int, client: type[Client] = Client) -> Client:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = client(stream)
    await conn.welcome()
    if isinstance(conn, MudClient):
        await conn.flush()
    return conn


async def process_server(nursery: trio.Nursery, tmp_path: Path, **overrides: Any) -> Server:
    settings = make_settings(tmp_path, **overrides)
    server: Server = await nursery.start(Server(settings, mode="process").run)
    return server


def server_pid(server: Server) -> int | None:
    starter = server.portal.starter
    assert isinstance(starter, ProcessStarter)
    return starter.pid


# -- 1. one message cannot take the game down -----------------------------------------------


async def test_hostile_gmcp_and_websocket_json_cannot_kill_the_server_process(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await process_server(nursery, tmp_path)
        pid = server_pid(server)
        bystander = await login(server.telnet_port, "Bystander")
        attacker = await connection_screen(server.telnet_port, MudClient)
        assert isinstance(attacker, MudClient)
        # The shapes that used to kill the server process on decoding.
        await attacker.send_gmcp("Char.Items", {"__items__": [[1]]})
        await attacker.send_gmcp("Char.Items", {"__items__": 5, "other": {"__items__": "x"}})
        await attacker.send_gmcp("Core.Supports.Set", ["__items__ 1"])
        await attacker.send_gmcp("Core.Supports.Add", ["__items__ 2", "Room 1"])
        attacker._sb(Opt.GMCP, b"Char.Deep " + b"[" * 600 + b"]" * 600)
        await attacker.flush()
        await attacker.read_until("nested deeper than 32 levels")
        # The same over a WebSocket.
        async with open_websocket_url(f"ws://127.0.0.1:{server.websocket_port}/") as ws:
            await ws.send_message(json.dumps(["client_options", [], {"__items__": [[1]]}]))
            await ws.send_message(json.dumps(["core_supports_set", [["__items__"]], {}]))
            await ws.send_message(json.dumps(["client_options", ["[" * 600], {}]))
            await ws.send_message("[" * 600 + "]" * 600)
            await ws.send_message(json.dumps(["text", ["who"], {}]))
            with trio.fail_after(WAIT):
                while "Players online" not in await ws.get_message():
                    pass
        # Everyone is still served, by the very same server process.
        await attacker.command("who", "Players online")
        await bystander.command("say still here", 'You say, "still here"')
        assert server_pid(server) == pid
        stats = server.portal.statistics()
        assert stats.generations == 1 and stats.poisoned_messages == 0
        assert "The server stopped unexpectedly; restarting it..." not in bystander.history
        server.shutdown()


@pytest.fixture
def explosive_game(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A game whose ``explode`` command kills its server process outright."""
    path = tmp_path / "code" / "explosive.py"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent("""
            import os
            from trio_mud.game import Game as StarterGame

            class Game(StarterGame):
                def __init__(self, settings, world, store):
                    super().__init__(settings, world, store)
                    self.add_command(("explode",), lambda session, args: os._exit(3))
        """)
    )
    monkeypatch.setenv("PYTHONPATH", str(path.parent))
    return "explosive:Game"


async def test_input_that_kills_two_server_processes_is_dropped_not_replayed(
    tmp_path: Path, explosive_game: str
) -> None:
    async with trio.open_nursery() as nursery:
        server = await process_server(nursery, tmp_path / "data", game=explosive_game)
        ann = await login(server.telnet_port, "Ann")
        bob = await login(server.telnet_port, "Bob")
        first = server_pid(server)
        await ann.send_line("explode")
        # Replayed once to the next process (it may have been innocent) ...
        await ann.read_until("The server stopped unexpectedly")
        # ... and when that one dies with it too, it is dropped, and the game goes on.
        await ann.read_until("could not be handled")
        await ann.command("look", "Exits:")
        assert ann.history.count("The server stopped unexpectedly; restarting it...") == 2
        await bob.command("say all good", 'You say, "all good"')
        assert server_pid(server) != first
        stats = server.portal.statistics()
        assert stats.poisoned_messages == 1
        assert stats.generations == 3 and stats.connections_open == 2
        assert not ann.closed and not bob.closed
        server.shutdown()


# -- 2. passwords are never shown -------------------------------------------------------------


async def test_a_refused_password_at_create_asks_again_hidden(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        client = await connection_screen(server.telnet_port, MudClient)
        await client.send_line("create Bob")
        await raw_count(client, PASSWORD_PROMPT, 1)
        await client.send_line("short7")  # too short
        await client.read_until("at least 8 characters")
        await client.read_until("Choose another password")
        await raw_count(client, PASSWORD_PROMPT, 2)  # hidden again, not a command line
        await client.send_line("correct horse")
        await client.read_until("Exits:")
        text = "\n".join(client.history)
        assert "short7" not in text and "correct horse" not in text
        nursery.cancel_scope.cancel()


async def test_lines_at_the_connection_screen_are_never_echoed(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        client = await connection_screen(server.telnet_port)
        lines = await client.command("hunter2-secret", "not a command here")
        assert not any("hunter2" in line for line in lines)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", ["embedded", "process"])
async def test_a_reload_at_the_password_prompt_keeps_the_prompt(tmp_path: Path, mode: str) -> None:
    async with trio.open_nursery() as nursery:
        settings = make_settings(tmp_path)
        server: Server = await nursery.start(Server(settings, mode=mode).run)  # type: ignore[arg-type]
        await (await login(server.telnet_port, "Ann", "the-secret-pw")).aclose()
        client = await connection_screen(server.telnet_port, MudClient)
        await client.send_line("connect Ann")
        await raw_count(client, PASSWORD_PROMPT, 1)
        assert await server.reload() is None
        await client.read_until("Server restarted")
        await client.send_line("the-secret-pw")
        await client.read_until("Exits:")
        assert "the-secret-pw" not in "\n".join(client.history)
        server.shutdown()


async def test_no_log_line_holds_a_password_even_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-Pass-phrase"
    caplog.set_level(logging.DEBUG)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        port = server.telnet_port
        ann = await login(port, "Ann", secret)
        await ann.command("quit", "Goodbye")
        # Wrong, right, at a prompt, over GMCP, and typed just as the client quits.
        client = await connection_screen(port, MudClient)
        assert isinstance(client, MudClient)
        await client.command(f"connect Ann {secret}x", "Incorrect")
        await client.send_line("connect Ann")
        await raw_count(client, PASSWORD_PROMPT, 1)
        await client.command(secret, "Exits:")
        await client.send_gmcp("Char.Login.Credentials", {"account": "Ann", "password": secret})
        # A line that reaches the handler after the session has quit.
        await client.stream.send_all(f"quit\r\nconnect Ann {secret}\r\n".encode())
        await client.read_until_closed()
        quitter = await connection_screen(port)
        await quitter.stream.send_all(f"connect Ann {secret}\r\n".encode())
        await quitter.aclose()
        await server.portal.wait_connections_below(1)
        nursery.cancel_scope.cancel()
    assert caplog.records and any(r.levelno == logging.DEBUG for r in caplog.records)
    for record in caplog.records:
        assert secret not in record.getMessage(), record.getMessage()


# -- 3. nothing reaches another player's terminal -------------------------------------------------


async def test_websocket_text_in_any_case_is_cleaned_and_limited(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery, make_settings(tmp_path, max_command_rate=5, command_rate_burst=5)
        )
        victim = await login(server.telnet_port, "Victim")
        async with open_websocket_url(f"ws://127.0.0.1:{server.websocket_port}/") as ws:
            await ws.send_message(json.dumps(["TEXT", ["create Mallory correct horse"], {}]))
            await victim.read_until("Mallory has entered the game.")
            attack = "say \x1b]0;owned\x07\x1b[2J\x1b[6nhello|/Victim says, fake"
            for cmdname in ("TEXT", "Text", "text"):
                await ws.send_message(json.dumps([cmdname, [attack], {}]))
            for _ in range(3):
                heard = await victim.read_until("Mallory says")
                assert heard[-1] == 'Mallory says, "]0;owned[2J[6nhello Victim says, fake"'
            assert b"\x1b]" not in victim.raw and b"\x1b[2J" not in victim.raw
            assert b"\x1b[6n" not in victim.raw and b"\x07" not in victim.raw
            # The line limit and the command rate hold for "TEXT" too.
            await ws.send_message(json.dumps(["TEXT", ["say " + "x" * 7000], {}]))
            for n in range(10):
                await ws.send_message(json.dumps(["TEXT", [f"say flood {n}"], {}]))
            seen = ""
            with trio.fail_after(WAIT):
                while "too fast" not in seen or "too long" not in seen:
                    seen += str(await ws.get_message())
        lines = "\n".join(victim.history)
        assert "x" * 100 not in lines
        assert lines.count("Mallory says") < 3 + 10
        nursery.cancel_scope.cancel()


async def test_speech_cannot_forge_lines_on_other_screens(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        ann = await login(server.telnet_port, "Ann")
        bob = await login(server.telnet_port, "Bob")
        await ann.read_until("Bob has entered the game.")
        await bob.send_line("say hi|/Ann says, 'give Bob your password'")
        heard = await ann.read_until("Bob says")
        assert heard[-1] == "Bob says, \"hi Ann says, 'give Bob your password'\""
        await bob.send_line(":waves|/The server is shutting down. Goodbye!")
        heard = await ann.read_until("Bob waves")
        assert heard[-1] == "Bob waves The server is shutting down. Goodbye!"
        nursery.cancel_scope.cancel()


# -- 4. no freezes, no unbounded memory -----------------------------------------------------------


async def test_an_mccp3_bomb_closes_the_attacker_and_nobody_else_notices(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        bystander = await login(server.telnet_port, "Bystander")
        attacker = await connection_screen(server.telnet_port)
        await attacker.stream.send_all(bytes((IAC, DO, Opt.MCCP3)))
        await raw_count(attacker, bytes((IAC, WILL, Opt.MCCP3)), 1)
        bomb = zlib.compress(b"\n" * (1024 * 1024), 9)
        assert len(bomb) < 2048
        await attacker.stream.send_all(bytes((IAC, SB, Opt.MCCP3, IAC, SE)) + bomb)
        farewell = "\n".join(await attacker.read_until_closed())
        assert "unpacks far too large" in farewell
        await bystander.command("say fine", 'You say, "fine"')
        nursery.cancel_scope.cancel()


async def test_a_line_flood_is_dropped_warned_once_then_closed(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path, max_dropped_commands=200))
        bystander = await login(server.telnet_port, "Bystander")
        flooder = await login(server.telnet_port, "Flooder")
        await flooder.stream.send_all(b"look\n" * 5000)
        lines = await flooder.read_until_closed()
        # One warning per run of drops (a token that refills mid-flood starts a
        # new run), not one per dropped line; then the flooder is closed.
        assert 1 <= sum("too fast" in line for line in lines) <= 5
        assert "far more input than the server takes" in lines[-1]
        # The burst, and the few tokens that refill while the flood is read.
        assert sum("Exits:" in line for line in lines) <= 80 + 40
        await bystander.command("say fine", 'You say, "fine"')
        nursery.cancel_scope.cancel()


async def test_gmcp_supports_is_capped_and_not_resent_when_unchanged(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path, command_rate_burst=1000))
        client = await mud_login(server.telnet_port, "Ann")
        for n in range(300):
            await client.send_gmcp("Core.Supports.Add", [f"Pkg{n} 1"])
        await client.read_until("named more GMCP packages than the server keeps (64)")
        await client.command("look", "Exits:")
        session = server.portal.sessions[max(server.portal.sessions)]
        assert len(session.protocol_flags["GMCP_SUPPORTS"]) == 64
        assert server.handler is not None
        handler_copy = server.handler.sessions[session.sessid]
        assert len(handler_copy.protocol_flags["GMCP_SUPPORTS"]) == 64
        nursery.cancel_scope.cancel()


async def test_escaped_iac_bytes_count_towards_the_partial_line_cap(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path, max_partial_line=4096))
        client = await connection_screen(server.telnet_port)
        with trio.move_on_after(WAIT):  # the server may close while we still write
            with contextlib.suppress(trio.BrokenResourceError):
                await client.stream.send_all(b"\xff\xff" * 5000)
        assert "far too long" in "\n".join(await client.read_until_closed())
        nursery.cancel_scope.cancel()


async def test_silent_sockets_count_at_accept_and_time_out(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_connections=8, handshake_timeout=1.0)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        silent = [
            await trio.open_tcp_stream("127.0.0.1", port)
            for port in [server.websocket_port] * 4 + [server.web_port] * 4
        ]
        await wait_all_tasks_blocked()  # the accept loops have run
        assert server.portal.statistics().open_sockets == 8
        refused = await Client.connect(server.telnet_port)
        assert "The server is full" in "\n".join(await refused.read_until_closed())
        # Within seconds the server closes every silent socket on its own ...
        with trio.fail_after(WAIT + settings.web_request_timeout):
            for stream in silent:
                while await stream.receive_some():
                    pass
        # ... and the places are free again.
        client = await Client.connect(server.telnet_port)
        await client.welcome()
        nursery.cancel_scope.cancel()


async def test_a_flood_of_refused_connections_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_mud.portal")
    settings = make_settings(tmp_path, max_connection_rate=0.001, connection_rate_burst=1)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        first = await Client.connect(server.telnet_port)
        await first.welcome()
        for _ in range(40):
            refused = await Client.connect(server.telnet_port)
            await refused.read_until_closed()
        nursery.cancel_scope.cancel()
    refusals = [r for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(refusals) == 1


# -- 5. parsers raise only their own error ------------------------------------------------


async def test_malformed_negotiation_leaves_the_connection_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        client = await connection_screen(server.telnet_port, MudClient)
        assert isinstance(client, MudClient)
        client._sb(Opt.CHARSET, b"\x01[TTABLE]")
        client._sb(Opt.CHARSET, b"\x01[TTABLE]\x01")
        await client.send_gmcp("Core.Supports.Set", ["Char \u00b2", "Room " + "9" * 5000])
        client._sb(Opt.GMCP, b"Char.Deep " + b"[" * 2000 + b"]" * 2000)
        await client.flush()
        await client.read_until("nested deeper than 32 levels")
        await client.command("who", "Players online")
        nursery.cancel_scope.cancel()
    assert not [r for r in caplog.records if r.exc_info], "a parser raised"


# -- 7. operator mistakes -----------------------------------------------------------------------


async def test_mssp_players_counts_only_players_who_logged_in(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        ann = await login(server.telnet_port, "Ann")
        guest = await connection_screen(server.telnet_port)  # not logged in
        crawler = await connection_screen(server.telnet_port)
        reply = await crawler.command("MSSP-REQUEST", "MSSP-REPLY-END")
        assert "PLAYERS\t1" in reply
        await ann.command("quit", "Goodbye")
        await server.portal.wait_connections_below(3)
        reply = await crawler.command("MSSP-REQUEST", "MSSP-REPLY-END")
        assert "PLAYERS\t0" in reply
        assert not guest.closed
        nursery.cancel_scope.cancel()


# -- 8. WebSocket origins -----------------------------------------------------------------------


async def test_websocket_origin_must_be_the_page_or_allowed(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery, make_settings(tmp_path, websocket_allowed_origins=("https://fans.example",))
        )
        url = f"ws://127.0.0.1:{server.websocket_port}/"
        page = f"http://127.0.0.1:{server.web_port}"
        for origin in (None, page, "https://fans.example"):
            headers = [] if origin is None else [("Origin", origin)]
            async with open_websocket_url(url, extra_headers=headers) as ws:
                assert "session" in await ws.get_message()
        for origin in ("https://evil.example", f"http://127.0.0.1:{server.websocket_port + 1}"):
            with pytest.raises(HandshakeError):
                async with open_websocket_url(url, extra_headers=[("Origin", origin)]):
                    pass
        nursery.cancel_scope.cancel()

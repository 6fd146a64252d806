"""The starter game over real sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import trio

from trio_mud import Server
from trio_mud.transports.telnet import TelnetConnection

from .helpers import (
    Client,
    ann_and_a_listener_who_stops_reading,
    login,
    make_settings,
    start_server,
)


async def test_two_players_talk_see_each_other_and_quit(server: Server) -> None:
    port = server.telnet_port
    ann = await login(port, "Ann")
    bob = await login(port, "Bob")
    await ann.read_until("Bob has entered the game.")

    await ann.send_line("say Hello, Bob!")
    assert (await ann.read_until("You say"))[-1] == 'You say, "Hello, Bob!"'
    assert (await bob.read_until("Ann says"))[-1] == 'Ann says, "Hello, Bob!"'

    await bob.send_line(":waves back.")
    await ann.read_until("Bob waves back.")
    await bob.read_until("Bob waves back.")

    who = await ann.command("who", "idle")  # header, then one line a player
    who += await ann.read_until("Bob")
    text = "\n".join(who)
    assert "Players online (2)" in text
    assert "Ann" in text and "Bob" in text

    await bob.send_line("quit")
    goodbye = await bob.read_until_closed()
    assert any("Goodbye" in line for line in goodbye)
    await ann.read_until("Bob has left the game.")
    who = await ann.command("who", "Players online")
    assert who[-1] == "Players online (1):"


async def test_players_in_other_rooms_do_not_hear(server: Server) -> None:
    port = server.telnet_port
    ann = await login(port, "Ann")
    bob = await login(port, "Bob")
    await bob.command("north", "North Gate")
    await ann.read_until("Bob leaves north.")
    await ann.command("say psst", "You say")
    await bob.command("say anyone?", "You say")
    await bob.command("look", "Exits:")
    assert not any("psst" in line for line in bob.history)  # never, not just lately
    await bob.command("s", "Town Square")
    await ann.read_until("Bob arrives.")


async def test_a_command_that_raises_disturbs_nobody_else(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(session: object, args: str) -> None:
        raise RuntimeError("a bug in a command")

    assert server.game is not None
    server.game.add_command(("boom",), boom)
    port = server.telnet_port
    ann = await login(port, "Ann")
    bob = await login(port, "Bob")
    await ann.send_line("boom")
    assert "Something went wrong" in (await ann.read_until("Something went wrong"))[-1]
    # Ann is still connected and playing; Bob never noticed.
    await ann.command("look", "Exits:")
    await bob.command("say still here", "You say")
    await ann.read_until('Bob says, "still here"')
    assert "a bug in a command" in caplog.text
    assert server.handler is not None
    assert server.handler.statistics().input_errors == 1


async def test_a_failing_connection_task_ends_only_that_connection(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.telnet_port
    ann = await login(port, "Ann")
    bob = await login(port, "Bob")
    original = TelnetConnection._render

    def render(self: TelnetConnection, message: object) -> bytes:
        if self.session.uname == "Bob":
            raise ValueError("a bug in the portal")
        return original(self, message)  # type: ignore[arg-type]

    monkeypatch.setattr(TelnetConnection, "_render", render)
    await bob.send_line("look")
    await bob.read_until_closed()
    await ann.read_until("Bob has left the game.")
    await ann.command("look", "Exits:")
    assert "a bug in the portal" in caplog.text
    assert any(
        record.levelno == logging.ERROR and "connection failed" in record.getMessage()
        for record in caplog.records
    )


async def test_a_client_that_never_reads_is_disconnected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_output_queue=16, max_command_rate=1000.0)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        port = server.telnet_port
        ann, _zed = await ann_and_a_listener_who_stops_reading(port)  # (kept open)
        # From here on Zed never reads. Ann talks a lot; every line goes to Zed.
        speech = "blah " * 1000
        with trio.fail_after(60):
            for _ in range(5000):
                await ann.send_line(f"say {speech}")
                await ann.read_until("You say")
                if server.portal.statistics().slow_client_disconnects:
                    break
        assert server.portal.statistics().slow_client_disconnects == 1
        await ann.read_until("Zed has left the game.")
        who = await ann.command("who", "Players online")
        assert who[-1] == "Players online (1):"
        await ann.command("look", "Exits:")
        nursery.cancel_scope.cancel()


async def test_characters_persist_across_a_full_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        ann = await login(server.telnet_port, "Ann", "open sesame")
        await ann.command("north", "North Gate")
        await ann.command("north", "Forest Road")
        server.shutdown()
        farewell = await ann.read_until_closed()
        assert any("shutting down" in line for line in farewell)
    # The first server has stopped completely; a new one on the same data.
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        client = await Client.connect(server.telnet_port)
        await client.welcome()
        await client.send_line("connect Ann wrong password")
        assert (await client.read_until("Incorrect"))[-1] == "Incorrect name or password."
        await client.send_line("connect Nobody wrong password")
        assert (await client.read_until("Incorrect"))[-1] == "Incorrect name or password."
        await client.send_line("connect ann open sesame")
        room = await client.read_until("Exits:")
        assert "Forest Road" in room
        server.shutdown()


async def test_account_rules(server: Server) -> None:
    port = server.telnet_port
    await login(port, "Ann")
    client = await Client.connect(port)
    await client.welcome()
    replies = {}
    for attempt in [
        "create ann another password",
        "create 1abc some pass",
        "create Bo some pass",
        "create Cy!x some pass",
        "create Carl short",
        "create Carl carl",
        "create",
        "connect",
        "dance",
    ]:
        await client.send_line(attempt)
        replies[attempt] = (await client.read_until(""))[-1]
    assert "taken" in replies["create ann another password"]
    for bad in [
        "create 1abc some pass",
        "create Bo some pass",
        "create Cy!x some pass",
    ]:
        assert "Names are 3 to 20 characters" in replies[bad]
    assert "at least 8 characters" in replies["create Carl short"]
    assert "at least 8 characters" in replies["create Carl carl"]
    assert replies["create"] == "Usage: create <name> <password>"
    assert replies["connect"] == "Usage: connect <name> <password>"
    assert "not a command here" in replies["dance"]
    assert "dance" not in replies["dance"]  # never echoed: it might be a password
    # After all that, the client can still create an account.
    await client.send_line("create Carl good password")
    await client.read_until("Exits:")


async def test_too_many_failed_logins_close_the_connection(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_failed_logins=2)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        client = await Client.connect(server.telnet_port)
        await client.welcome()
        await client.command("connect Ann nope nope", "Incorrect name or password.")
        await client.send_line("connect Ann nope nope")
        assert any(
            "Too many failed login attempts" in line for line in await client.read_until_closed()
        )
        nursery.cancel_scope.cancel()


async def test_overlong_lines_are_refused_with_a_message(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_char_limit=100, max_partial_line=1000)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        ann = await login(server.telnet_port, "Ann")
        await ann.send_line("say " + "x" * 200)
        reply = (await ann.read_until("too long"))[-1]
        assert "204 characters; the limit is 100" in reply
        await ann.command("say short", 'You say, "short"')  # still connected
        # A partial line beyond the hard cap is a protocol error: closed.
        await ann.stream.send_all(b"y" * 2000)
        assert any("far too long" in line for line in await ann.read_until_closed())
        nursery.cancel_scope.cancel()


async def test_control_characters_never_reach_other_players(server: Server) -> None:
    port = server.telnet_port
    ann = await login(port, "Ann")
    bob = await login(port, "Bob")
    await ann.send_line("say \x1b[31mred\x1b[0m\x07 and\tbold\x9b1m")
    heard = (await bob.read_until("Ann says"))[-1]
    assert heard == 'Ann says, "[31mred[0m and bold1m"'
    # The only escape sequences Bob gets are the server's own colour codes.
    assert b"\x07" not in bob.raw and b"\x9b" not in bob.raw
    assert re.findall(rb"\x1b(.)", bob.raw) == [b"["] * bob.raw.count(b"\x1b")
    assert b"\x1b[31m" not in bob.raw  # the server always writes "\x1b[0;..."


async def test_taking_over_a_character_from_a_second_connection(server: Server) -> None:
    port = server.telnet_port
    first = await login(port, "Ann", "open sesame")
    second = await login(port, "Ann", "open sesame", create=False)
    assert any("taken over" in line for line in await first.read_until_closed())
    who = await second.command("who", "Ann")
    assert "Players online (1):" in who


async def test_listens_on_every_configured_interface_and_port(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, telnet_interfaces=("127.0.0.1", "127.0.0.2"), telnet_ports=(0, 0)
    )
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        addresses = server.portal.telnet_addresses
        assert sorted(host for host, _ in addresses) == ["127.0.0.1"] * 2 + ["127.0.0.2"] * 2
        for host, port in addresses:
            stream = await trio.open_tcp_stream(host, port)
            client = Client(stream)
            await client.welcome()
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_idle_clients_are_told_and_disconnected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, idle_timeout=0.2)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        client = await Client.connect(server.telnet_port)
        farewell = await client.read_until_closed()
        assert farewell[-1] == "Idle timeout exceeded, disconnecting."
        nursery.cancel_scope.cancel()


async def test_connection_limits_refuse_with_a_message(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, max_connection_rate=0.001, connection_rate_burst=2, max_connections=2
    )
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        port = server.telnet_port
        first, second = await Client.connect(port), await Client.connect(port)
        await first.welcome()
        await second.welcome()
        third = await Client.connect(port)  # over max_connections
        assert await third.read_until_closed() == ["The server is full; please try again later."]
        await first.aclose()
        await server.portal.wait_connections_below(2)
        fourth = await Client.connect(port)  # room again, but over the rate
        assert await fourth.read_until_closed() == [
            "Too many connections from your address; please wait a moment."
        ]
        await second.command("look", "shows this screen again")  # unaffected
        assert server.portal.statistics().connections_refused == 2
        nursery.cancel_scope.cancel()

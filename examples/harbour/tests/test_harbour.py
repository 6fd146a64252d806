"""The Harbour, played over real sockets with trio_mud's test fixtures alone."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from harbour import Creel, Harbour
from trio_mud import Server, Settings
from trio_mud.game import Store
from trio_mud.serverproc import ProcessStarter
from trio_mud.testing import PROFILES, FakeSession, TelnetClient

EXAMPLES = Path(__file__).resolve().parents[2]


async def fisher(telnet_client: Any, name: str, profile: Any = "raw") -> TelnetClient:
    client: TelnetClient = await telnet_client(profile)
    await client.expect("Welcome to the Harbour!")
    await client.send(f"connect {name}")
    await client.expect("Exits:")
    await client.expect_prompt()
    return client


async def test_fish_then_sell_in_the_market_only(mud_server: Server, telnet_client: Any) -> None:
    ann = await fisher(telnet_client, "Ann")
    for catch in ("herring", "mackerel", "cod"):
        await ann.send("fish")
        await ann.expect(f"You catch a {catch}!")
    prompts = [await ann.expect_prompt() for _ in range(3)]  # one after each command
    assert prompts == ["[0 gold, 1 fish] > ", "[0 gold, 2 fish] > ", "[0 gold, 3 fish] > "]
    await ann.send("sell all")
    await ann.expect('Command "sell" is not available.')  # not on the pier
    await ann.send("east")
    await ann.expect("Exits:")
    await ann.send("sell cod")
    await ann.expect("You sell 1 fish for 5 gold.")
    await ann.send("sell all")
    await ann.expect("You sell 2 fish for 5 gold.")
    await ann.send("creel")
    await ann.expect("In your creel: nothing. Gold: 10.")
    await ann.send("west")
    await ann.expect("Exits:")
    await ann.send("sell all")
    await ann.expect('Command "sell" is not available.')  # the market's set is gone


async def test_prompt_hooks_and_options(mud_server: Server, telnet_client: Any) -> None:
    ann = await fisher(telnet_client, "Ann")
    bob = await fisher(telnet_client, "Bob")
    await ann.expect("Bob arrives.")
    await ann.send("fish")
    await ann.expect("You catch a herring!")
    assert await ann.expect_prompt() == "[0 gold, 1 fish] > "
    await ann.send("option NOPROMPT on")
    await ann.expect("NOPROMPT is now on.")
    ann.prompts.clear()
    await ann.send("creel")
    await ann.expect("In your creel")
    await bob.send("quit")
    await bob.expect_closed()
    await ann.expect("Bob heads home.")  # the leave hook
    assert not ann.prompts


async def test_gmcp_status_follows_the_catch_and_the_client(
    mud_server: Server, telnet_client: Any
) -> None:
    mudlet = await fisher(telnet_client, "Ann", "mudlet")  # Core.Supports has Char
    assert (await mudlet.expect_gmcp("Char.Status"))["fish"] == 0
    await mudlet.send("fish")
    assert (await mudlet.expect_gmcp("Char.Status"))["fish"] == 1
    late = await fisher(telnet_client, "Bob", attrs.evolve(PROFILES["mudlet"], supports=()))
    assert not [name for name, _ in late.gmcp if name == "Char.Status"]
    await late.send_gmcp("Core.Supports.Set", ["Char 1"])
    assert await late.expect_gmcp("Char.Status") == {"name": "Bob", "gold": 0, "fish": 0}


async def test_the_catch_survives_a_reload_and_a_restart(
    mud_server: Server, mud_settings: Settings, telnet_client: Any
) -> None:
    ann = await fisher(telnet_client, "Ann")
    await ann.send("fish")
    await ann.expect("You catch a herring!")
    assert await mud_server.reload() is None
    await ann.send("creel")
    await ann.expect("In your creel: herring.")
    mud_server.shutdown()
    await ann.expect_closed()
    async with trio.open_nursery() as nursery:
        again: Server = await nursery.start(Server(mud_settings).run)
        back = await TelnetClient.connect(again.telnet_port)
        await back.expect("Welcome to the Harbour!")
        await back.send("connect Ann")
        await back.expect("Exits:")
        await back.send("creel")
        await back.expect("In your creel: herring.")
        again.shutdown()


async def test_the_catch_survives_a_crash_of_the_server_process(
    mud_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES))  # the server process imports the game
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(mud_settings, mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter) and starter.pid is not None
        ann = await TelnetClient.connect(server.telnet_port)
        await ann.expect("Welcome to the Harbour!")
        await ann.send("connect Ann")
        await ann.expect("Exits:")
        await ann.send("fish")
        await ann.expect("You catch a herring!")
        os.kill(starter.pid, signal.SIGKILL)
        await ann.send("creel")
        await ann.expect("In your creel: herring.")
        server.shutdown()


async def test_the_web_client_fishes_too(mud_server: Server, websocket_client: Any) -> None:
    web = await websocket_client()
    await web.send("connect Cid")
    await web.expect("Exits:")
    await web.send("fish")
    await web.expect("You catch a herring!")
    args, _ = await web.expect_message("prompt")
    assert "1 fish" in args[0]


async def test_one_command_without_sockets(
    tmp_path: Path, fake_session: Any, mud_settings: Settings
) -> None:
    async with Store.open(tmp_path / "harbour.sqlite3") as store:
        game = Harbour(mud_settings, None, store)
        session: FakeSession = fake_session(uname="Dee", server_data={"room": "market"})
        await game.attributes.load("fisher", "dee")
        game.set_creel(session, Creel(("sole", "sole")))
        game.commands.set_sets(session, ["town", "market"])
        assert await game.commands.run(session, "sell sole")
        assert session.texts[-1] == "You sell 1 fish for 8 gold."
        assert await game.commands.run(session, "sell")
        assert session.texts[-1].startswith("Say which. Usage: sell <fish>")
        assert game.gold(session) == 8

"""The game author's kit, over real sockets: command sets, help, options,
prompts, attributes, GMCP on Supports. Most tests use the pytest plugin's
own fixtures (``trio_mud.testing``), as a game author's tests would."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from trio_mud import Server
from trio_mud.attributes import Attributes
from trio_mud.commands import Command, Commands, CommandSet, Context, ParseError, command
from trio_mud.game import Store
from trio_mud.serverproc import ProcessStarter
from trio_mud.testing import FakeSession, TelnetClient, settings_for_tests

IAC, GA, EOR = 255, 249, 239


async def player(telnet_client: Any, name: str, profile: str = "raw") -> TelnetClient:
    client: TelnetClient = await telnet_client(profile)
    await client.expect("shows this screen again")
    await client.send(f"create {name} correct horse")
    await client.expect("Exits:")
    await client.expect_prompt()
    return client


# -- commands and sets ------------------------------------------------------------------


async def test_a_set_added_for_a_shop_and_removed_after(
    mud_server: Server, telnet_client: Any
) -> None:
    @command("buy", aliases=["purchase"])
    def buy(ctx: Context, args: str) -> None:
        """buy <item>

        Buy something from the shopkeeper.
        """
        ctx.msg(f"You buy {args or 'nothing'}.")

    game = mud_server.game
    game.commands.sets["shop"] = CommandSet("shop", [buy])
    ann = await player(telnet_client, "Ann")
    await ann.send("buy bread")
    assert "not available" in (await ann.expect("buy"))[-1]
    session = next(iter(mud_server.handler.sessions.values()))
    game.commands.add_set(session, "shop")
    await ann.send("purchase bread")
    await ann.expect("You buy bread.")
    await ann.send("help buy")
    help_lines = await ann.expect("Buy something from the shopkeeper.")
    assert help_lines[0].endswith("buy <item>")
    await ann.send("look")  # the game's own commands are still there
    await ann.expect("Exits:")
    game.commands.remove_set(session, "shop")
    await ann.send("buy cheese")
    await ann.expect('Command "buy" is not available.')


async def test_help_suggestions_prefixes_and_a_command_that_raises(
    mud_server: Server, telnet_client: Any
) -> None:
    ann = await player(telnet_client, "Ann")
    await ann.send("lok")
    await ann.expect('Command "lok" is not available. Did you mean "look"?')
    await ann.send("help")
    listing = " ".join(await ann.expect('Type "help <command>"'))
    assert "say <message>" in listing and "option [" in listing and "boot" not in listing
    await ann.send("help sya")
    await ann.expect('Did you mean "say"?')

    def broken(ctx: Context, args: str) -> None:
        raise RuntimeError("a bug in a command")

    mud_server.game.commands.add("game", Command("broken", broken))
    await ann.send("broken")
    await ann.expect("Something went wrong")
    await ann.send("look")
    await ann.expect("Exits:")
    # At the connection screen unique prefixes work; an ambiguous one does not.
    newcomer: TelnetClient = await telnet_client()
    await newcomer.expect("shows this screen again")
    await newcomer.send("cre Bob correct horse")
    await newcomer.expect("Exits:")
    other: TelnetClient = await telnet_client()
    await other.expect("shows this screen again")
    await other.send("c Bob correct horse")
    await other.expect("That is not a command here.")


async def test_parsers_and_permissions_in_a_fake_session(fake_session: Any) -> None:
    def two_words(text: str) -> dict[str, str]:
        first, _, second = text.partition(" ")
        if not second:
            raise ParseError("Give two words.")
        return {"first": first, "second": second}

    @command("swap", parse=two_words)
    def swap(ctx: Context, first: str, second: str) -> None:
        """swap <a> <b>"""
        ctx.msg(f"{second} {first}")

    @command("secret", permission="admin")
    async def secret(ctx: Context, args: str) -> None:
        ctx.msg("the secret")

    commands = Commands([CommandSet("main", [swap, secret])], default=["main"])
    session: FakeSession = fake_session()
    assert await commands.run(session, "SWAP one two")  # any case
    assert await commands.run(session, "swap one")
    assert session.texts == ["two one", "Give two words. Usage: swap <a> <b>"]
    assert not await commands.run(session, "secret")  # not for this session
    assert commands.find(session, "sec") is None
    session.account = attrs.make_class("Account", {"is_admin": attrs.field(default=True)})()
    assert await commands.run(session, "secret")
    assert session.texts[-1] == "the secret"


async def test_a_command_added_to_a_set_is_found_at_once(fake_session: Any) -> None:
    """Each add makes a new set; a new set can land where a freed one was, so
    the table cache must not know sets by an id alone."""

    def make(key: str) -> Command:
        @command(key)
        def run(ctx: Context, args: str) -> None:
            ctx.msg(key)

        return run

    commands = Commands([CommandSet("main", [make("c0")])], default=["main"])
    session: FakeSession = fake_session()
    for n in range(1, 50):
        assert commands.find(session, f"c{n - 1}") is not None  # cached now
        commands.add("main", make(f"c{n}"))
        assert commands.find(session, f"c{n}") is not None


# -- options ------------------------------------------------------------------------------


async def test_each_option_changes_the_bytes_a_client_gets(
    mud_server: Server, telnet_client: Any
) -> None:
    ann = await player(telnet_client, "Ann", "tintin")
    await ann.send("say |rred|n")
    await ann.expect("You say")
    assert b"\x1b[" in ann.raw

    await ann.send("option NOCOLOR on")
    await ann.expect("NOCOLOR is now on.")
    mark = len(ann.raw)
    await ann.send("say |rred|n")
    await ann.expect('You say, "red"')
    assert b"\x1b[" not in ann.raw[mark:]

    await ann.send("option RAW on")
    await ann.expect("RAW is now on.")
    await ann.send("say |rred|n")
    await ann.expect('You say, "|rred|n|n"')  # the markup, unparsed

    await ann.send("option LOCALECHO on")
    await ann.expect("LOCALECHO is now on.")
    await ann.send("look")
    assert (await ann.expect("look"))[-1].endswith("look")  # echoed first

    await ann.send("option INPUTDEBUG on")
    await ann.expect("INPUTDEBUG is now on.")
    await ann.stream.send_all(b"say tab\there\r\n")
    await ann.expect("INPUT: 'say tab^Ihere'")

    for wrong in ("klingon", "rot13", "base64", "utf-16"):  # unknown, not text, not allowed
        await ann.send(f"option ENCODING {wrong}")
        await ann.expect(f"ENCODING '{wrong}' is not an encoding this server takes")
    await ann.send("option ENCODING latin-1")
    await ann.expect("ENCODING is now iso8859-1.")
    mark = len(ann.raw)
    await ann.stream.send_all("say café\r\n".encode("latin-1"))
    await ann.expect("You say")
    assert "café".encode("latin-1") in ann.raw[mark:]

    await ann.send("option SCREENWIDTH 132")
    await ann.expect("SCREENWIDTH is now 132.")
    session = next(iter(mud_server.handler.sessions.values()))
    assert session.protocol_flags["SCREENWIDTH"] == {0: 132}
    await ann.send("option SCREENWIDTH 5")
    await ann.expect("SCREENWIDTH takes a number from 10 to 1000.")

    await ann.send("option NOPROMPT on")
    await ann.expect("NOPROMPT is now on.")
    ann.prompts.clear()
    await ann.send("look")
    await ann.expect("Exits:")
    await ann.send("option")
    listing = " ".join(await ann.expect("NOPROMPT"))
    assert "NOCOLOR       on" in listing
    assert not ann.prompts


async def test_saved_options_come_back_at_login_after_a_reload_and_a_crash(
    tmp_path: Path,
) -> None:
    settings = settings_for_tests(tmp_path)
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(settings, mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter)
        ann = await TelnetClient.connect(server.telnet_port, "tintin")
        await ann.expect("shows this screen again")
        await ann.send("create Ann correct horse")
        await ann.expect("Exits:")
        await ann.send("option NOCOLOR on")
        await ann.expect("NOCOLOR is now on.")
        await ann.send("option save")
        await ann.expect("Options saved")
        await ann.aclose()

        def colourless(client: TelnetClient, since: int) -> bool:
            return b"\x1b[" not in client.raw[since:]

        again = await TelnetClient.connect(server.telnet_port, "tintin")
        await again.expect("shows this screen again")
        await again.send("connect Ann correct horse")
        await again.expect("Exits:")  # the room's colours come before the restore
        mark = len(again.raw)
        await again.send("look")
        await again.expect("Exits:")
        assert colourless(again, mark)
        assert await server.reload() is None
        await again.expect("Server restarted")
        mark = len(again.raw)
        await again.send("look")
        await again.expect("Exits:")
        assert colourless(again, mark)
        assert starter.pid is not None
        os.kill(starter.pid, signal.SIGKILL)
        await again.send("look")
        await again.expect("Exits:")
        mark = len(again.raw)
        await again.send("look")
        await again.expect("Exits:")
        assert colourless(again, mark)
        server.shutdown()
    # And after a full restart.
    async with trio.open_nursery() as nursery:
        server = await nursery.start(Server(settings).run)
        back = await TelnetClient.connect(server.telnet_port, "tintin")
        await back.expect("shows this screen again")
        await back.send("connect Ann correct horse")
        await back.expect("Exits:")
        mark = len(back.raw)
        await back.send("look")
        await back.expect("Exits:")
        assert colourless(back, mark)
        server.shutdown()


# -- prompts ------------------------------------------------------------------------------


async def test_the_prompt_ends_with_ga_or_eor_and_is_a_prompt_message_on_the_web(
    mud_server: Server, telnet_client: Any, websocket_client: Any
) -> None:
    bare = await player(telnet_client, "Ann")  # no EOR: GA
    await bare.send("look")
    await bare.expect("Exits:")
    assert await bare.expect_prompt() == "HP 100/100 > "
    assert bytes((IAC, GA)) in bare.raw and bytes((IAC, EOR)) not in bare.raw
    mudlet = await player(telnet_client, "Bob", "mudlet")  # takes EOR
    await mudlet.send("look")
    await mudlet.expect("Exits:")
    assert await mudlet.expect_prompt() == "HP 100/100 > "
    assert bytes((IAC, EOR)) in mudlet.raw
    web = await websocket_client()
    await web.send("create Cid correct horse")
    await web.expect("Exits:")
    args, _ = await web.expect_message("prompt")
    assert "HP 100/100" in args[0]


async def test_client_options_without_arguments_answers_the_current_ones(
    mud_server: Server, websocket_client: Any
) -> None:
    web = await websocket_client()
    await web.send_oob("client_options", screenwidth=120, localecho=True)
    await web.send_oob("client_options")
    _, options = await web.expect_message("client_options")
    assert options["screenwidth"] == 120 and options["localecho"] is True
    assert options["ansi"] is True


# -- GMCP that follows the client ----------------------------------------------------------


async def test_gmcp_state_is_sent_when_supports_turns_a_package_on(
    mud_server: Server, telnet_client: Any
) -> None:
    from trio_mud.testing import PROFILES

    quiet = attrs.evolve(PROFILES["mudlet"], supports=())
    ann = await player(telnet_client, "Ann", quiet)
    assert not [name for name, _ in ann.gmcp if name.startswith(("Room.", "Char.V"))]
    await ann.send_gmcp("Core.Supports.Set", ["Room 1"])
    info = await ann.expect_gmcp("Room.Info")
    assert info["name"] == "Town Square"
    await ann.send_gmcp("Core.Supports.Add", ["Char.Vitals 1"])
    vitals = await ann.expect_gmcp("Char.Vitals")
    assert vitals == {"hp": 100, "maxhp": 100}


# -- attributes ---------------------------------------------------------------------------


@attrs.frozen
class Purse:
    gold: int
    gems: tuple[str, ...] = ()


async def test_typed_attributes_are_batched_to_sqlite_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "game.sqlite3"
    async with Store.open(path) as store, trio.open_nursery() as nursery:
        attributes = Attributes(store)
        await nursery.start(attributes.run)
        await attributes.load("character", 7)
        attributes.set("character", 7, "purse", Purse(10, ("ruby",)))
        attributes.set("character", 7, "title", "the Bold")
        attributes.delete("character", 7, "title")
        await attributes.saved()
        nursery.cancel_scope.cancel()
    async with Store.open(path) as store:
        fresh = Attributes(store)
        await fresh.load("character", 7)
        assert fresh.get("character", 7, "purse", Purse) == Purse(10, ("ruby",))
        assert fresh.get("character", 7, "title", str, default="none") == "none"


class _SlowStore:
    """A store whose writes wait for a go-ahead, or fail (a unit test's fake)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}
        self.go = trio.Event()
        self.failing = False
        self.attempts = 0

    async def attributes(self, owner: str) -> dict[str, str]:
        return {key: value for (o, key), value in self.rows.items() if o == owner}

    async def write_attributes(self, changes: dict[tuple[str, str], str | None]) -> None:
        self.attempts += 1
        if self.attempts > 50:  # retried without a pause: fail now, not at the test timeout
            raise KeyboardInterrupt("write retried 50 times")  # (not caught as a failed write)
        if self.failing:
            raise OSError("disk full")
        await self.go.wait()
        for item, value in changes.items():
            if value is None:
                self.rows.pop(item, None)
            else:
                self.rows[item] = value


async def test_a_load_during_a_write_keeps_what_was_set() -> None:
    store = _SlowStore()
    store.rows[("character:1", "gold")] = "100"
    attributes = Attributes(store)
    await attributes.load("character", 1)
    attributes.set("character", 1, "gold", 500)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(attributes.flush)  # the batch is taken, and waits
        await trio.testing.wait_all_tasks_blocked()
        await attributes.load("character", 1)  # reads the old row meanwhile
        assert attributes.get("character", 1, "gold", int) == 500
        store.go.set()
    assert store.rows[("character:1", "gold")] == "500"


async def test_failed_writes_are_retried_after_a_pause_and_saved_waits_only_for_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = _SlowStore()
    store.go.set()
    store.failing = True
    attributes = Attributes(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(attributes.run)
        attributes.set("character", 1, "gold", 1)
        await trio.sleep(10)
        assert 3 <= store.attempts <= 6  # 0.5 + 1 + 2 + 4 s apart, not thousands
        store.failing = False
        with trio.fail_after(60):
            await attributes.saved()
        assert store.rows[("character:1", "gold")] == "1"

        async def busy() -> None:  # others keep setting values
            for n in range(10_000):
                attributes.set("character", 2, "n", n)
                await trio.sleep(0.001)

        nursery.start_soon(busy)
        attributes.set("character", 1, "gold", 2)
        with trio.fail_after(5):
            await attributes.saved()  # not held up by the others
        assert store.rows[("character:1", "gold")] == "2"
        nursery.cancel_scope.cancel()


async def test_colour_levels_and_the_screen_reader_option_change_the_bytes(
    mud_server: Server, telnet_client: Any
) -> None:
    ann = await player(telnet_client, "Ann", "raw")  # a bare client: 16 colours at most

    async def said(text: str) -> bytes:
        mark = len(ann.raw)
        await ann.send(f"say {text}")
        await ann.expect("You say")
        return bytes(ann.raw[mark:])

    orange = "|#ff8000orange|n"
    assert b"\x1b[0;33m" in await said(orange)  # nearest of the 16
    await ann.send("option XTERM256 on")
    await ann.expect("XTERM256 is now on.")
    assert b"38;5;208" in await said(orange)
    await ann.send("option TRUECOLOR on")
    await ann.expect("TRUECOLOR is now on.")
    assert b"38;2;255;128;0" in await said(orange)
    await ann.send("option SCREENREADER on")
    await ann.expect("SCREENREADER is now on.")
    plain = await said(orange + " ====== rule")
    assert b"\x1b[" not in plain and b"======" not in plain
    await ann.send("option ANSI off")
    await ann.expect("ANSI is now off.")
    await ann.send("option SCREENREADER off")
    await ann.expect("SCREENREADER is now off.")
    await ann.send("option TRUECOLOR off")
    await ann.expect("TRUECOLOR is now off.")
    await ann.send("option XTERM256 off")
    await ann.expect("XTERM256 is now off.")
    assert b"\x1b[" not in await said(orange)  # no colour level left
    await ann.send("option SCREENHEIGHT 50")
    await ann.expect("SCREENHEIGHT is now 50.")
    session = next(iter(mud_server.handler.sessions.values()))
    assert session.protocol_flags["SCREENHEIGHT"] == {0: 50}

"""Hot restart: reloads and crashes lose no connection and no keystroke."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_mud import Server, ServerSession, Settings
from trio_mud.__main__ import set_admin
from trio_mud.game import Game, Store, World
from trio_mud.serverproc import ProcessStarter

from .helpers import Client, Compressing, login, make_settings, mud_login, start_server

DIRECTIONS = ["", "north", "east", "west", "south"]
ROOMS = {"": "Town Square", "north": "North Gate", "east": "The Nursery Tavern",
         "west": "Market Lane", "south": "The Old Well"}  # fmt: skip


class Progress:
    """How many commands each typist has had answered; wait on it."""

    def __init__(self, count: int) -> None:
        self.done = [0] * count
        self._changed = trio.lowlevel.ParkingLot()

    def advance(self, index: int) -> None:
        self.done[index] += 1
        self._changed.unpark_all()

    async def wait_all_past(self, target: int) -> None:
        with trio.fail_after(60):
            while min(self.done) < target:
                await self._changed.park()


async def typist(client: Client, tag: str, count: int, progress: Progress, index: int) -> None:
    """Type ``say <tag>-<n>`` ``count`` times, each after the last was answered."""
    for n in range(count):
        await client.send_line(f"say {tag}-{n}")
        await client.read_until(f'You say, "{tag}-{n}"')
        progress.advance(index)


def said(client: Client, tag: str) -> list[str]:
    """What the client was told it said, tagged ``tag``, in order."""
    prefix = 'You say, "'
    return [line[len(prefix) : -1] for line in client.history if line.startswith(f"{prefix}{tag}-")]


async def players(port: int, count: int) -> list[Client]:
    clients = []
    for index in range(count):
        client = await login(port, f"Player{index}")
        direction = DIRECTIONS[index % len(DIRECTIONS)]
        if direction:
            await client.command(direction, "Exits:")
        clients.append(client)
    return clients


async def check_everyone(clients: Sequence[Client], count: int) -> None:
    """No disconnects, every say answered once and in order, all in place."""
    for index, client in enumerate(clients):
        assert not client.closed
        assert said(client, f"p{index}") == [f"p{index}-{n}" for n in range(count)]
        room = await client.command("look", "Exits:")
        assert ROOMS[DIRECTIONS[index % len(DIRECTIONS)]] in room
    header = await clients[0].command("who", "Players online")
    assert header[-1] == f"Players online ({len(clients)}):"
    listed = [(await clients[0].read_until(""))[-1].split()[0] for _ in clients]
    assert sorted(listed) == sorted(f"Player{index}" for index in range(len(clients)))


async def type_through(clients: Sequence[Client], count: int, disrupt: Any, times: int) -> None:
    """Everyone types ``count`` lines while ``disrupt()`` happens ``times`` times."""
    progress = Progress(len(clients))
    async with trio.open_nursery() as nursery:
        for index, client in enumerate(clients):
            nursery.start_soon(typist, client, f"p{index}", count, progress, index)
        for round_ in range(1, times + 1):
            await progress.wait_all_past(round_ * count // (times + 2))
            await disrupt()


# -- embedded mode ------------------------------------------------------------------------


async def test_three_reloads_under_load(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        clients = await players(server.telnet_port, 50)
        first_handler = server.handler

        async def reload() -> None:
            assert await server.reload() is None

        await type_through(clients, 12, reload, 3)
        assert server.handler is not first_handler
        assert server.portal.statistics().generations == 4
        await check_everyone(clients, 12)
        for client in clients:
            assert client.history.count("Server restarting...") == 3
            assert client.history.count("... Server restarted.") == 3
        stats = server.portal.statistics()
        assert stats.connections_open == 50 and stats.connections_total == 50
        nursery.cancel_scope.cancel()


class GatedGame(Game):
    """The starter game, with a gate in its reload path and a way to break."""

    gate: trio.Event | None = None
    entered = trio.Event()
    broken = False

    def __init__(self, settings: Settings, world: World, store: Store) -> None:
        if GatedGame.broken:
            raise RuntimeError("this game is broken on purpose")
        super().__init__(settings, world, store)

    async def at_handler_start(self, sessions: Sequence[ServerSession]) -> None:
        if GatedGame.gate is not None:
            GatedGame.entered.set()
            await GatedGame.gate.wait()
        await super().at_handler_start(sessions)


@pytest.fixture
def gated(tmp_path: Path) -> Settings:
    GatedGame.gate = None
    GatedGame.entered = trio.Event()
    GatedGame.broken = False
    return make_settings(tmp_path, game="tests.test_reload:GatedGame", max_pending_input=4)


async def test_the_gap_keeps_input_and_greets_newcomers(gated: Settings) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, gated)
        ann = await login(server.telnet_port, "Ann")
        GatedGame.gate = trio.Event()
        nursery.start_soon(server.reload)
        await GatedGame.entered.wait()  # the old handler is paused: this is the gap
        assert not server.portal.live
        await ann.read_until("Server restarting...")
        # Ann types during the gap: four lines are kept, the rest dropped, and
        # she is told so.
        for n in range(6):
            await ann.send_line(f"say gap-{n}")
        # Someone connects during the gap.
        newcomer = Client(await trio.open_tcp_stream("127.0.0.1", server.telnet_port))
        greeted = trio.Event()

        async def wait_for_screen() -> None:
            await newcomer.welcome()
            greeted.set()

        nursery.start_soon(wait_for_screen)
        await ann.read_until("cannot keep more of your input")
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        assert not greeted.is_set()  # no handler yet, so no screen yet
        assert not any("gap-" in line for line in ann.history)
        GatedGame.gate.set()
        with trio.fail_after(10):
            await greeted.wait()
        await ann.read_until('You say, "gap-3"')
        assert said(ann, "gap") == ["gap-0", "gap-1", "gap-2", "gap-3"]
        assert ann.history.count("... Server restarted.") == 1
        await newcomer.command("create Newt correct horse", "Exits:")
        nursery.cancel_scope.cancel()


async def test_a_reload_that_fails_changes_nothing(gated: Settings) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, gated)
        ann = await login(server.telnet_port, "Ann")
        await ann.command("quit", "Goodbye")
        assert await set_admin(gated, "Ann", True) == 0
        ann = await login(server.telnet_port, "Ann", create=False)
        bob = await login(server.telnet_port, "Bob")
        before = server.handler
        GatedGame.broken = True
        await ann.send_line("reload")
        reply = await ann.read_until("Reload failed")
        assert reply[-1] == "Reload failed: RuntimeError: this game is broken on purpose"
        assert server.handler is before and server.portal.live
        await bob.command("say still here", 'You say, "still here"')
        assert "Server restarting..." not in bob.history  # there never was a gap
        # Bob is no admin: the command does not exist for him.
        await bob.command("reload", 'Command "reload" is not available')
        GatedGame.broken = False
        await ann.send_line("reload")
        await ann.read_until("... Server restarted.")
        assert server.handler is not before
        nursery.cancel_scope.cancel()


# -- process mode ---------------------------------------------------------------------------


@pytest.fixture
def game_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A game module of our own, importable by server processes."""
    path = tmp_path / "code" / "livegame.py"
    path.parent.mkdir()
    write_game(path, "v1")
    monkeypatch.setenv("PYTHONPATH", str(path.parent))
    return path


def write_game(path: Path, version: str) -> None:
    path.write_text(
        textwrap.dedent(f"""
            from trio_mud.game import Game as StarterGame

            class Game(StarterGame):
                def __init__(self, settings, world, store):
                    super().__init__(settings, world, store)
                    self.add_command(("version",), self.cmd_version)

                def cmd_version(self, session, args):
                    session.msg("game version {version}")
        """)
    )


async def test_process_mode_reloads_under_load_and_loads_new_code(
    tmp_path: Path, game_module: Path
) -> None:
    settings = make_settings(tmp_path, game="livegame:Game")
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(settings, mode="process").run)
        clients = await players(server.telnet_port, 50)
        await clients[0].command("version", "game version v1")
        pids = set()

        async def reload() -> None:
            assert await server.reload() is None
            starter = server.portal.starter
            assert isinstance(starter, ProcessStarter)
            pids.add(starter.pid)

        await type_through(clients, 12, reload, 3)
        assert len(pids) == 3  # a fresh process each time
        await check_everyone(clients, 12)
        # New code takes full effect on reload; broken code is refused.
        await trio.Path(game_module).write_text("this is not python (\n")
        error = await server.reload()
        assert error is not None and "SyntaxError" in error
        await clients[1].command("version", "game version v1")  # still served
        await trio.to_thread.run_sync(write_game, game_module, "v2")
        assert await server.reload() is None
        await clients[1].command("version", "game version v2")
        assert server.portal.statistics().connections_open == 50
        server.shutdown()


async def test_process_mode_survives_kill_9(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(settings, mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter)
        clients = await players(server.telnet_port, 50)
        killed = []

        async def kill_9() -> None:
            assert starter.pid is not None
            killed.append(starter.pid)
            os.kill(starter.pid, signal.SIGKILL)

        await type_through(clients, 12, kill_9, 2)
        assert len(set(killed)) == 2
        await check_everyone(clients, 12)
        for client in clients:
            assert client.history.count("The server stopped unexpectedly; restarting it...") == 2
        assert server.portal.statistics().connections_open == 50
        server.shutdown()


async def test_login_screens_and_telnet_state_survive_a_reload(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        port = server.telnet_port
        waiting = Client(await trio.open_tcp_stream("127.0.0.1", port))
        await waiting.welcome()  # stays at the login screen through the reload
        mud = await mud_login(port, "Ann", client=Compressing)
        mud.send_naws(132, 50)
        await mud.flush()
        await mud.command("look", "Exits:")
        assert mud.inflater is not None  # MCCP2 is on
        assert await server.reload() is None
        await mud.read_until("... Server restarted.")
        # The same compressed stream carries on; the new handler knows the size.
        assert mud.inflater is not None and not mud.mccp_finished
        mud.gmcp.clear()
        await mud.send_line("north")
        assert (await mud.wait_gmcp("Room.Info"))["num"] == 6
        assert server.handler is not None
        (ann,) = [s for s in server.handler.sessions.values() if s.uname == "Ann"]
        assert ann.protocol_flags["SCREENWIDTH"] == {0: 132}
        assert ann.protocol_flags["GMCP_SUPPORTS"] == dict.fromkeys(["Char", "Room"], 1)
        await waiting.command("create Bob correct horse", "Exits:")
        nursery.cancel_scope.cancel()


def test_restart_backoff_grows_while_it_keeps_dying(tmp_path: Path) -> None:
    from trio_mud import Portal

    settings = make_settings(
        tmp_path, restart_backoff=0.5, restart_backoff_max=4, restart_stable_after=60
    )
    portal = Portal(settings)
    # No generation has stayed up: each restart waits longer, up to the cap.
    assert [portal.generations._restart_delay() for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]

    class Stable:
        started_at = -1e9  # up for ages

    portal.generations._gen = Stable()  # type: ignore[assignment]
    assert portal.generations._restart_delay() == 0.0  # a stable run starts the count afresh

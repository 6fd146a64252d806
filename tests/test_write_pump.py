"""Telnet output without a writer task per connection: the portal's write pump.

An idle telnet connection is one task; output is written by the pump, and
only a write that must wait for the client gets a task (the drain) for as
long as it waits. These tests hold the server to that over real sockets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_mud import Server, Settings
from trio_mud.messages import DataOut
from trio_mud.transports.telnet import TelnetConnection

from .helpers import (
    Client,
    ann_and_a_listener_who_stops_reading,
    login,
    make_settings,
    start_server,
)


def all_tasks() -> list[trio.lowlevel.Task]:
    """Every task in this run, from the root down."""
    found: list[trio.lowlevel.Task] = []

    def walk(task: trio.lowlevel.Task) -> None:
        found.append(task)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found


def tasks_running(qualname: str) -> list[trio.lowlevel.Task]:
    """The tasks whose coroutine is ``qualname`` (``Portal._serve``, say)."""
    return [
        task
        for task in all_tasks()
        if getattr(getattr(task.coro, "cr_code", None), "co_qualname", None) == qualname
    ]


def telnet_connection(server: Server, name: str) -> TelnetConnection:
    """The portal's connection of the player ``name``."""
    for conn in server.portal.connections.values():
        if conn.session.uname == name:
            assert isinstance(conn, TelnetConnection)
            return conn
    raise AssertionError(f"{name} is not connected")


def talkative(tmp_path: Path, **more: Any) -> Settings:
    """Settings where Ann may talk as fast as the server answers (no command
    rate) and output waits in a drain rather than filling the queue."""
    return make_settings(
        tmp_path, max_output_queue=100_000, max_command_rate=1e6, command_rate_burst=10**6, **more
    )


async def test_an_idle_telnet_connection_is_one_task(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        ann = await login(server.telnet_port, "Ann")
        clients = [await Client.connect(server.telnet_port) for _ in range(20)]
        for client in clients:
            await client.welcome()
        bob = await login(server.telnet_port, "Bob")
        await ann.read_until("Bob has entered the game.")
        await trio.testing.wait_all_tasks_blocked()
        # A socket's task runs its connection itself, with no task under it.
        serving = tasks_running("Portal._serve")
        assert len(serving) == 22
        assert all(not task.child_nurseries for task in serving)
        assert tasks_running("TelnetConnection._run_drain") == []
        nursery.cancel_scope.cancel()
    await bob.aclose()


async def test_a_slow_reader_gets_all_its_output_in_order(tmp_path: Path) -> None:
    settings = talkative(tmp_path)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        port = server.telnet_port
        ann, zed = await ann_and_a_listener_who_stops_reading(port)
        conn = telnet_connection(server, "Zed")
        # Zed reads nothing now: Ann talks until Zed's output waits in a drain.
        speech = "blah " * 400
        said = 0
        with trio.fail_after(60):
            while conn._drain is None or said < 10:
                said += 1
                await ann.command(f"say {said} {speech}", "You say")
        await ann.command(f"say {said + 1} the end", "You say")
        await trio.testing.wait_all_tasks_blocked()
        assert len(tasks_running("TelnetConnection._run_drain")) == 1  # waiting for Zed
        # Zed reads again: every line, in order, and the drain is gone.
        heard = await zed.read_until(f'Ann says, "{said + 1} the end"')
        numbers = [int(line.split('"')[1].split()[0]) for line in heard if "Ann says" in line]
        assert numbers == list(range(1, said + 2))
        await trio.testing.wait_all_tasks_blocked()
        assert conn._drain is None
        assert tasks_running("TelnetConnection._run_drain") == []
        await ann.command("say and after", "You say")
        await zed.read_until('Ann says, "and after"')
        nursery.cancel_scope.cancel()


async def fill_a_drain(server: Server, ann: Client) -> TelnetConnection:
    """Ann talks until Zed's output waits in a drain that stays (Zed reads
    nothing): once everything else has settled, it is still waiting."""
    conn = telnet_connection(server, "Zed")
    speech = "blah " * 400
    with trio.fail_after(60):
        while True:
            await ann.command(f"say {speech}", "You say")
            if conn._drain is not None:
                await trio.testing.wait_all_tasks_blocked()
                if conn._drain is not None:
                    return conn


async def test_a_client_that_stops_reading_is_dropped_after_write_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The queue is never full here: the write that waits is what times out.
    settings = talkative(tmp_path, write_timeout=0.5)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        port = server.telnet_port
        ann, _zed = await ann_and_a_listener_who_stops_reading(port)
        await fill_a_drain(server, ann)
        with trio.fail_after(10):  # the write times out by itself
            await server.portal.wait_connections_below(2)
        await ann.read_until("Zed has left the game.")
        assert "one write took over 0.5 s: client stalled" in caplog.text
        assert server.portal.statistics().slow_client_disconnects == 0  # not the queue
        await ann.command("look", "Exits:")
        nursery.cancel_scope.cancel()


async def test_output_for_a_finished_connection_never_reaches_a_later_socket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that has ended keeps its descriptor's number; the next
    socket may get the same number, and must never be sent the old one's
    output."""
    caplog.set_level(logging.INFO, logger="trio_mud.portal")
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        port = server.telnet_port
        first = await Client.connect(port)
        await first.welcome()
        (old,) = server.portal.connections.values()
        assert isinstance(old, TelnetConnection)
        await first.aclose()
        with trio.fail_after(10):
            await server.portal.wait_connections_below(1)
        second = await Client.connect(port)
        await second.welcome()
        (new,) = server.portal.connections.values()
        assert isinstance(new, TelnetConnection)
        assert new._fd == old._fd  # the number was taken again
        old.send_nowait(DataOut(old.session.sessid, "text", ("meant for the first",), {}))
        old.flush()
        await second.send_line("look")
        await second.read_until("shows this screen again")
        assert "meant for the first" not in second.history
        nursery.cancel_scope.cancel()


async def test_closing_without_last_words_while_output_waits_ends_the_connection(
    tmp_path: Path,
) -> None:
    settings = talkative(tmp_path, mccp=False)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        ann, zed = await ann_and_a_listener_who_stops_reading(server.telnet_port)
        conn = await fill_a_drain(server, ann)
        conn.close("")  # nothing more to say: the drain has only the end to write
        await trio.testing.wait_all_tasks_blocked()
        assert conn._drain is not None  # so the drain, not the pump, takes the end
        await zed.read_until_closed()  # Zed reads everything, and the server hangs up
        with trio.fail_after(10):
            await server.portal.wait_connections_below(2)
        await ann.read_until("Zed has left the game.")
        nursery.cancel_scope.cancel()


async def test_a_rendering_error_while_output_waits_ends_that_connection_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = talkative(tmp_path)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        ann, zed = await ann_and_a_listener_who_stops_reading(server.telnet_port)
        await fill_a_drain(server, ann)
        original = TelnetConnection._encode_text

        def encode_text(self: TelnetConnection, text: str) -> bytes:
            if self.session.uname == "Zed":
                raise ValueError("a bug met while rendering for Zed")
            return original(self, text)

        monkeypatch.setattr(TelnetConnection, "_encode_text", encode_text)
        await ann.command("say this one Zed's drain renders", "You say")
        await zed.read_until_closed()  # what was rendered, then the end
        await ann.read_until("Zed has left the game.")
        await ann.command("look", "Exits:")  # the pump, and the portal, carry on
        assert "a bug met while rendering for Zed" in caplog.text
        nursery.cancel_scope.cancel()


async def test_a_client_that_hangs_up_while_output_waits_leaves_cleanly(tmp_path: Path) -> None:
    settings = talkative(tmp_path)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        ann, zed = await ann_and_a_listener_who_stops_reading(server.telnet_port)
        conn = await fill_a_drain(server, ann)
        await zed.aclose()  # gone, with our output still on its way
        with trio.fail_after(10):
            await server.portal.wait_connections_below(2)
        await ann.read_until("Zed has left the game.")
        assert conn._drain is None
        assert tasks_running("TelnetConnection._run_drain") == []
        await ann.command("look", "Exits:")
        nursery.cancel_scope.cancel()


async def test_a_shutdown_with_output_waiting_for_a_stalled_client_ends(tmp_path: Path) -> None:
    settings = talkative(tmp_path, shutdown_grace=0.5)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, settings)
            ann, _zed = await ann_and_a_listener_who_stops_reading(server.telnet_port)
            await fill_a_drain(server, ann)
            server.shutdown()
            # Ann is told goodbye; Zed, who reads nothing, is dropped after
            # the grace period, and the server's run ends by itself.
            assert "The server is shutting down. Goodbye!" in await ann.read_until_closed()
    assert server.portal.connections == {}

"""One line to a whole room: rendered once per kind of client, delivered exactly
once to each, in order, through reloads and crashes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mud import Server
from trio_mud.serverproc import ProcessStarter
from trio_mud.transports.telnet import TelnetConnection

from .helpers import Client, MudClient, login, make_settings, mud_login, start_server
from .test_reload import Progress


async def test_a_broadcast_is_rendered_once_per_kind_of_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[str] = []
    original = TelnetConnection._encode_text

    def spy(self: TelnetConnection, text: str) -> bytes:
        encoded.append(text)
        return original(self, text)

    monkeypatch.setattr(TelnetConnection, "_encode_text", spy)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_settings(tmp_path))
        port = server.telnet_port
        plain = [await login(port, f"Plain{n}") for n in range(3)]  # 16 colours
        rich = [await mud_login(port, f"Rich{n}") for n in range(3)]  # truecolor
        speaker = await login(port, "Speaker")
        for listener in [*plain, *rich]:
            await listener.read_until("Speaker has entered the game.")
        encoded.clear()
        await speaker.command("say |#ff8000orange|n and plain", "You say")
        heard = [await listener.read_until("Speaker says") for listener in [*plain, *rich]]
        said = [text for text in encoded if text.startswith("Speaker says")]
        assert len(said) == 2  # six listeners, two kinds of client
        assert all(lines[-1] == 'Speaker says, "orange and plain"' for lines in heard)
        assert b"38;2;255;128;0m" in rich[0].raw  # each kind got its own colours
        assert b"38;2;" not in plain[0].raw and b"\x1b[" in plain[0].raw
        nursery.cancel_scope.cancel()


def heard(client: Client, tag: str) -> list[str]:
    """What ``client`` heard others say, tagged ``tag``, in order."""
    prefix = ' says, "'
    return [line.split(prefix)[1][:-1] for line in client.history if f'says, "{tag}-' in line]


async def talk(clients: list[Client], count: int, progress: Progress) -> None:
    async def typist(index: int, client: Client) -> None:
        for n in range(count):
            await client.send_line(f"say p{index}-{n}")
            await client.read_until(f'You say, "p{index}-{n}"')
            progress.advance(index)

    async with trio.open_nursery() as nursery:
        for index, client in enumerate(clients):
            nursery.start_soon(typist, index, client)


@pytest.mark.parametrize("disruption", ["reload", "kill -9"])
async def test_broadcasts_in_flight_through_reloads_and_crashes_arrive_exactly_once(
    tmp_path: Path, disruption: str
) -> None:
    count, typists = 10, 12
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(make_settings(tmp_path), mode="process").run)
        starter = server.portal.starter
        assert isinstance(starter, ProcessStarter)
        clients = [await login(server.telnet_port, f"Typist{n}") for n in range(typists)]
        listener = await mud_login(server.telnet_port, "Listener")
        progress = Progress(typists)

        async def disrupt() -> None:
            for round_ in (1, 2):
                await progress.wait_all_past(round_ * count // 3)
                if disruption == "reload":
                    assert await server.reload() is None
                else:
                    assert starter.pid is not None
                    os.kill(starter.pid, signal.SIGKILL)

        async with trio.open_nursery() as inner:
            inner.start_soon(disrupt)
            await talk(clients, count, progress)
        # Everyone hears every other typist's lines once each, in order.
        marker = await clients[0].command("say last", 'You say, "last"')
        assert marker
        everyone: list[Any] = [*clients, listener]
        for index, client in enumerate(everyone):
            await client.read_until('says, "last"') if index else None
            for other in range(typists):
                if other == index:
                    continue
                lines = heard(client, f"p{other}")
                assert lines == [f"p{other}-{n}" for n in range(count)], (index, other)
            assert not client.closed
        assert isinstance(listener, MudClient)
        server.shutdown()

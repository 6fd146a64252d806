"""Unit tests of Generations alone: what happens to input when a handler is lost.

A stand-in for the portal and its connections (the module's only
neighbours); the reload and crash tests over real sockets are in
test_reload.py.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from trio_mud.generations import Generations
from trio_mud.messages import DataIn, Loaded
from trio_mud.settings import Settings


class StubSession:
    sessid = 7

    def get_sync_data(self) -> dict[str, Any]:
        return {}


class StubConnection:
    """What Generations touches of a connection."""

    def __init__(self) -> None:
        self.session = StubSession()
        self.pending: list[Any] = []
        self.introduced = True
        self.known = True
        self.told_input_dropped = False
        self.sent: list[Any] = []

    def send_nowait(self, message: Any) -> None:
        self.sent.append(message)


class StubPortal:
    def __init__(self, conn: StubConnection) -> None:
        self.connections = {conn.session.sessid: conn}

    def route(self, message: Any) -> None:
        pass

    def control(self, message: Any) -> None:
        pass


def typed(text: str) -> DataIn:
    return DataIn(7, "text", (text,), {})


async def lose_the_handler_while_a_send_waits(*, queued: bool) -> list[str]:
    """The handler's channel holds one message and is full; a second waits to
    go in (sent by the reader itself, or by the pump from the session's queue
    when ``queued``) when the handler is lost. What is queued for the next?"""
    conn = StubConnection()
    generations = Generations(Settings(inbound_queue_size=1), StubPortal(conn))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(generations.run)
        link = await generations.attach()
        link.send_nowait(Loaded())
        lost = generations._gen
        assert lost is not None
        await generations.to_handler(conn, typed("one"))  # type: ignore[arg-type]
        if queued:
            generations.queue_nowait(conn, typed("two"))  # type: ignore[arg-type]
        else:
            nursery.start_soon(generations.to_handler, conn, typed("two"))
        await trio.testing.wait_all_tasks_blocked()
        generations._generation_lost(lost, "it crashed")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return [message.args[0] for message in conn.pending]


async def test_input_waiting_to_be_sent_when_the_handler_is_lost_is_kept_once() -> None:
    assert await lose_the_handler_while_a_send_waits(queued=False) == ["one", "two"]


async def test_queued_input_waiting_to_be_sent_when_the_handler_is_lost_is_kept_once() -> None:
    assert await lose_the_handler_while_a_send_waits(queued=True) == ["one", "two"]

"""Handler dispatch over memory channels alone: no sockets, no portal."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_mud import (
    Connect,
    DataIn,
    DataOut,
    Disconnect,
    Handler,
    HandlerHooks,
    PortalLink,
    ServerSession,
    SessionUpdate,
    Settings,
)
from trio_mud.handler import ERROR_MESSAGE
from trio_mud.messages import (
    Broadcast,
    Done,
    FromHandler,
    Loaded,
    Pause,
    Paused,
    Resume,
    ToHandler,
)


class ChannelPortal:
    """Stands in for the portal: a channel in, a list out."""

    def __init__(self, snapshot: list[dict[str, Any]] | None = None) -> None:
        self.send, self.receive = trio.open_memory_channel[ToHandler](100)
        self.out: list[FromHandler] = []
        self.snapshot = snapshot or []

    async def attach(self) -> PortalLink:
        return PortalLink(self.receive, self.snapshot, self.out.append)

    def texts(self, sessid: int) -> list[str]:
        return [m.args[0] for m in self.out if isinstance(m, DataOut) and m.sessid == sessid]


class RecordingHooks(HandlerHooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []

    def at_session_connect(self, session: ServerSession) -> None:
        self.events.append(("connect", session.sessid, ""))
        session.msg("welcome")

    def at_session_disconnect(self, session: ServerSession, reason: str) -> None:
        self.events.append(("disconnect", session.sessid, reason))

    def at_session_sync(self, session: ServerSession) -> None:
        self.events.append(("sync", session.sessid, ""))


def connect(sessid: int) -> Connect:
    return Connect(sessid, {"sessid": sessid, "protocol_key": "telnet", "address": "127.0.0.1"})


async def start(
    nursery: trio.Nursery, inputfuncs: dict[str, Any], portal: ChannelPortal | None = None
) -> tuple[Handler, ChannelPortal, RecordingHooks]:
    portal = portal or ChannelPortal()
    hooks = RecordingHooks()
    handler = Handler(Settings(), inputfuncs, hooks=hooks)
    await nursery.start(handler.run, portal)
    return handler, portal, hooks


async def test_dispatch_by_name_with_args_and_kwargs(nursery: trio.Nursery) -> None:
    calls: list[tuple[str, int, tuple[Any, ...], dict[str, Any]]] = []

    def text(session: ServerSession, *args: Any, **kwargs: Any) -> None:
        calls.append(("text", session.sessid, args, kwargs))
        session.msg(f"echo {args[0]}")

    def fallback(session: ServerSession, *args: Any, **kwargs: Any) -> None:
        calls.append(("default", session.sessid, args, kwargs))

    handler, portal, hooks = await start(nursery, {"text": text, "default": fallback})
    await portal.send.send(connect(1))
    await portal.send.send(DataIn(1, "text", ("look",), {}))
    await portal.send.send(DataIn(1, "custom_oob", (), {"screenwidth": 80}))
    await trio.testing.wait_all_tasks_blocked()
    assert calls == [
        ("text", 1, ("look",), {}),
        ("default", 1, (), {"screenwidth": 80}),
    ]
    assert hooks.events == [("connect", 1, "")]
    assert portal.texts(1) == ["welcome", "echo look"]
    session = handler.sessions[1]
    assert session.cmd_total == 1  # OOB input counts as idle


async def test_idle_command_does_not_count(nursery: trio.Nursery) -> None:
    handler, portal, _ = await start(nursery, {"text": lambda s, t: None})
    await portal.send.send(connect(1))
    for line in ["idle", "look", "idle"]:
        await portal.send.send(DataIn(1, "text", (line,), {}))
    await trio.testing.wait_all_tasks_blocked()
    assert handler.sessions[1].cmd_total == 1


async def test_async_input_keeps_order_per_session_and_others_go_on(
    nursery: trio.Nursery,
) -> None:
    gate = trio.Event()
    seen: list[tuple[int, str]] = []

    async def text(session: ServerSession, line: str) -> None:
        if line == "slow":
            await gate.wait()
        seen.append((session.sessid, line))

    _, portal, _ = await start(nursery, {"text": text})
    for sessid in (1, 2):
        await portal.send.send(connect(sessid))
    await portal.send.send(DataIn(1, "text", ("slow",), {}))
    await portal.send.send(DataIn(1, "text", ("after slow",), {}))
    await portal.send.send(DataIn(2, "text", ("other",), {}))
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [(2, "other")]  # session 2 is not held up by session 1
    gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert seen == [(2, "other"), (1, "slow"), (1, "after slow")]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_failing_input_function_affects_only_its_session(
    nursery: trio.Nursery, kind: str
) -> None:
    def text(session: ServerSession, line: str) -> None:
        if line == "boom":
            raise RuntimeError("bug")
        session.msg(f"ok {line}")

    async def atext(session: ServerSession, line: str) -> None:
        await trio.lowlevel.checkpoint()
        text(session, line)

    handler, portal, _ = await start(nursery, {"text": text if kind == "sync" else atext})
    for sessid in (1, 2):
        await portal.send.send(connect(sessid))
    await portal.send.send(DataIn(1, "text", ("boom",), {}))
    await portal.send.send(DataIn(2, "text", ("fine",), {}))
    await portal.send.send(DataIn(1, "text", ("again",), {}))
    await trio.testing.wait_all_tasks_blocked()
    assert portal.texts(1) == ["welcome", ERROR_MESSAGE, "ok again"]
    assert portal.texts(2) == ["welcome", "ok fine"]
    assert handler.statistics().input_errors == 1


async def test_disconnect_both_ways(nursery: trio.Nursery) -> None:
    def text(session: ServerSession, line: str) -> None:
        session.disconnect("bye")

    handler, portal, hooks = await start(nursery, {"text": text})
    await portal.send.send(connect(1))
    await portal.send.send(connect(2))
    await portal.send.send(DataIn(1, "text", ("quit",), {}))
    await portal.send.send(Disconnect(2, "client closed the connection"))
    await portal.send.send(DataIn(2, "text", ("late",), {}))  # ignored
    await trio.testing.wait_all_tasks_blocked()
    assert Disconnect(1, "bye") in portal.out
    assert handler.sessions == {}
    assert ("disconnect", 1, "bye") in hooks.events
    assert ("disconnect", 2, "client closed the connection") in hooks.events


async def test_snapshot_rebuilds_sessions_and_updates_apply(nursery: trio.Nursery) -> None:
    snapshot = [
        {"sessid": 4, "uid": 10, "uname": "Ann", "logged_in": True, "protocol_flags": {"X": 1}}
    ]
    handler, portal, hooks = await start(nursery, {}, ChannelPortal(snapshot))
    session = handler.sessions[4]
    assert (session.uid, session.uname, session.logged_in) == (10, "Ann", True)
    assert session.protocol_flags["X"] == 1 and session.protocol_flags["ENCODING"] == "utf-8"
    assert hooks.events == [("sync", 4, "")]
    await portal.send.send(SessionUpdate(4, {"protocol_flags": {"SCREENWIDTH": {0: 100}}}))
    await portal.send.send(connect(4))  # also in the snapshot: not a second session
    await trio.testing.wait_all_tasks_blocked()
    assert session.protocol_flags["SCREENWIDTH"] == {0: 100}
    assert session.protocol_flags["X"] == 1
    assert len(handler.sessions) == 1 and ("connect", 4, "") not in hooks.events


async def test_session_sync_tells_the_portal(nursery: trio.Nursery) -> None:
    def text(session: ServerSession, line: str) -> None:
        session.uname = line
        session.logged_in = True
        session.sync()

    _, portal, _ = await start(nursery, {"text": text})
    await portal.send.send(connect(1))
    await portal.send.send(DataIn(1, "text", ("Ann",), {}))
    await trio.testing.wait_all_tasks_blocked()
    updates = [m for m in portal.out if isinstance(m, SessionUpdate)]
    assert len(updates) == 1
    assert updates[0].sync_data["uname"] == "Ann" and updates[0].sync_data["logged_in"]


async def test_handler_returns_when_the_portal_closes_the_channel() -> None:
    portal = ChannelPortal()
    handler = Handler(Settings(), {})
    with trio.fail_after(5):  # a hang here is the failure
        async with trio.open_nursery() as nursery:
            await nursery.start(handler.run, portal)
            await portal.send.aclose()
    # Reaching here means run() returned by itself.


async def test_every_message_is_done_and_output_is_tagged(nursery: trio.Nursery) -> None:
    def text(session: ServerSession, line: str) -> None:
        session.msg(f"ok {line}")

    _, portal, _ = await start(nursery, {"text": text})
    await portal.send.send(Connect(1, {"sessid": 1}, txid=10))
    await portal.send.send(DataIn(1, "text", ("look",), {}, txid=11))
    await portal.send.send(DataIn(99, "text", ("nobody",), {}, txid=12))  # unknown session
    await trio.testing.wait_all_tasks_blocked()
    assert Loaded() in portal.out
    done = [m.txid for m in portal.out if isinstance(m, Done)]
    assert done == [10, 11, 12]
    outputs = {m.args[0]: m.txid for m in portal.out if isinstance(m, DataOut)}
    assert outputs == {"welcome": 10, "ok look": 11}
    (look_done,) = [m for m in portal.out if isinstance(m, Done) and m.txid == 11]
    assert look_done.sync_data["cmd_total"] == 1  # the counters travel with Done


async def test_pause_waits_for_running_input_then_saves(nursery: trio.Nursery) -> None:
    gate = trio.Event()

    async def text(session: ServerSession, line: str) -> None:
        await gate.wait()
        session.msg(f"finally {line}")

    class Saving(RecordingHooks):
        async def at_handler_pause(self) -> None:
            self.events.append(("saved", 0, ""))

    portal = ChannelPortal()
    hooks = Saving()
    handler = Handler(Settings(), {"text": text}, hooks=hooks)
    await nursery.start(handler.run, portal)
    await portal.send.send(Connect(1, {"sessid": 1}, txid=1))
    await portal.send.send(DataIn(1, "text", ("slow",), {}, txid=2))
    await portal.send.send(DataIn(1, "text", ("queued",), {}, txid=3))
    await portal.send.send(Pause())
    await trio.testing.wait_all_tasks_blocked()
    assert Paused() not in portal.out  # still working on "slow"
    gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert Paused() in portal.out
    paused_at = portal.out.index(Paused())
    before = portal.out[:paused_at]
    assert [m.txid for m in before if isinstance(m, Done)] == [1, 2, 3]
    assert [m.args[0] for m in before if isinstance(m, DataOut)][-2:] == [
        "finally slow",
        "finally queued",
    ]
    assert ("saved", 0, "") in hooks.events
    # Fresh sync data for every session goes out before Paused.
    assert any(isinstance(m, SessionUpdate) and m.sessid == 1 for m in before)
    await portal.send.send(Resume())
    await portal.send.send(DataIn(1, "text", ("after",), {}, txid=4))
    await trio.testing.wait_all_tasks_blocked()
    assert [m.txid for m in portal.out if isinstance(m, Done)][-1] == 4


async def test_broadcast_is_one_message_for_many_sessions(nursery: trio.Nursery) -> None:
    def text(session: ServerSession, line: str) -> None:
        assert session.handler is not None
        everyone = list(session.handler.sessions.values())
        session.handler.broadcast(everyone, f"|r{line}", **{"Room.Info": ((), {"num": 1})})

    handler, portal, _ = await start(nursery, {"text": text})
    for sessid in (1, 2, 3, 4):
        await portal.send.send(connect(sessid))
    await portal.send.send(Disconnect(3, "gone"))
    await portal.send.send(DataIn(1, "text", ("hello",), {}, txid=7))
    await trio.testing.wait_all_tasks_blocked()
    sent = [m for m in portal.out if isinstance(m, Broadcast)]
    assert sent == [
        Broadcast((1, 2, 4), "Room.Info", (), {"num": 1}, txid=7),  # 3 has gone: left out
        Broadcast((1, 2, 4), "text", ("|rhello",), {}, txid=7),
    ]
    assert not [m for m in portal.out if isinstance(m, DataOut) and "hello" in str(m.args)]
    handler.broadcast([], text="to nobody")  # nothing at all
    assert len([m for m in portal.out if isinstance(m, Broadcast)]) == 2

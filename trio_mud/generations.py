"""Handler generations: who takes the players' input, and hot restarts.

A *generation* is one handler's time at the helm, from :meth:`Generations.attach`
to its retirement. :class:`Generations` is the portal's supervisor of them:

- it carries input towards the live handler, a message per session in turn,
  and queues it, in order and bounded per session, while no handler takes
  input (during a reload or after a crash);
- it numbers every message (``txid``), holds the output a handler produces
  for one until its ``Done`` arrives, and so delivers everything exactly
  once: when a handler dies, what it had not finished goes to the next one
  and what it said about it is dropped; a message in hand at two deaths in a
  row is dropped for good (a poison message);
- it pauses the serving generation while a new one loads the snapshot, lets
  the new one take over or the old one resume, restarts a dead one with
  back-off, and retires them all at shutdown.

It needs little of the portal (:class:`GenerationHost`): the connections by
sessid, a way to route output to them, and the portal itself to hand to the
:class:`Starter`. It knows nothing of sockets or transports.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from functools import partial
from typing import Any, Protocol

import attrs
import trio
from attrs import Factory, define, frozen

from . import markup
from .messages import (
    BanList,
    Broadcast,
    Connect,
    Counters,
    DataIn,
    DataOut,
    Disconnect,
    Done,
    FromHandler,
    Loaded,
    Pause,
    Paused,
    PortalMessage,
    ReloadRequest,
    Resume,
    SessionUpdate,
    ShutdownRequest,
    SyncData,
    ToHandler,
    describe,
)
from .settings import Settings
from .transports.connection import Connection

log = logging.getLogger("trio_mud.portal")


@define
class PortalLink:
    """What a handler gets when it attaches to a portal.

    ``snapshot`` holds the sync data of every session a handler already knew
    at attach time; ``inbound`` carries everything after that; ``send_nowait``
    takes the handler's messages and never blocks.
    """

    inbound: trio.MemoryReceiveChannel[ToHandler]
    snapshot: list[SyncData]
    send_nowait: Callable[[FromHandler], None]


class Starter(Protocol):
    """Runs one handler generation (in this process or another).

    It must call ``await portal.attach()``, have the handler load the snapshot
    and send :class:`~trio_mud.messages.Loaded`, then call
    ``task_status.started()``; it returns when the generation ends.
    """

    def __call__(self, portal: Any, *, task_status: trio.TaskStatus[Any]) -> Awaitable[None]: ...


class GenerationHost(Protocol):
    """What the generations need of the portal."""

    @property
    def connections(self) -> Mapping[int, Connection]:
        """The connections open now, by sessid."""
        ...

    def route(self, message: DataOut | Broadcast | Disconnect | SessionUpdate) -> None:
        """Deliver a handler's message to its connection(s); never blocks."""
        ...

    async def attach(self) -> PortalLink:
        """What a starter's handler calls (the portal hands on to :meth:`Generations.attach`)."""
        ...

    def control(self, message: ShutdownRequest | BanList | Counters) -> None:
        """Act on a handler's request to the portal (shutdown, bans, counters)."""
        ...


#: Command latency buckets (upper bounds, seconds; +Inf is implied) ...
COMMAND_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: ... and reload duration buckets.
RELOAD_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class LatencyHistogram:
    """Counts of durations by upper bound, and their sum (Prometheus's shape)."""

    def __init__(self, bounds: tuple[float, ...] = COMMAND_BOUNDS) -> None:
        #: Upper bounds in seconds (the last bucket, +Inf, is implied).
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


@frozen
class ReloadRecord:
    """One reload: when it ended (epoch seconds), how long it took, its error."""

    at: float
    seconds: float
    error: str | None


@define(eq=False)
class _Generation:
    """One handler's time at the helm, from attach to retirement."""

    number: int
    send: trio.MemorySendChannel[ToHandler]
    receive: trio.MemoryReceiveChannel[ToHandler]
    paused: trio.Event = Factory(trio.Event)
    ended: bool = False
    started_at: float = Factory(time.monotonic)


@define(eq=False)
class _Slot:
    """Lets a generation's runner learn which generation it became."""

    generation: _Generation | None = None


_SLOT: ContextVar[_Slot] = ContextVar("trio_mud_generation_slot")


class StatusTap:
    """Wraps a task status: remembers ``started()``, and can run a callback then."""

    def __init__(
        self, inner: trio.TaskStatus[Any], on_started: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self.on_started = on_started
        self.done = False

    def started(self, value: Any = None) -> None:
        """Pass ``value`` on, first telling ``on_started`` (if any)."""
        self.done = True
        if self.on_started is not None:
            self.on_started()
        self.inner.started(value)


#: Most output held back for one unfinished message; beyond it, output flows.
_MAX_HELD = 10_000


def _describe(exc: BaseException) -> str:
    """An exception as one line for an admin: its type and message."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__


class _Given(enum.Enum):
    """What became of a message given to a handler (see Generations._send_to)."""

    SENT = "sent"
    KEPT = "kept"  # not given: the caller still holds it
    TAKEN_BACK = "taken back"  # the handler was lost; it is queued again already


def _numbered(message: PortalMessage, txid: int) -> PortalMessage:
    """``message`` as sent to a handler: with its txid (what attrs.evolve does, cheaper)."""
    if type(message) is DataIn:
        return DataIn(message.sessid, message.cmdname, message.args, message.kwargs, txid)
    return attrs.evolve(message, txid=txid)


async def send_in_turn(channel: trio.MemorySendChannel[Any], value: Any) -> None:
    """Send ``value``, waiting only while ``channel`` is full.

    No checkpoint while there is room: the link's readers pass on a whole
    read at once and checkpoint once per read; a yield per message was most
    of their cost. Waiting senders are served in order, so order is kept.
    """
    try:
        channel.send_nowait(value)
    except trio.WouldBlock:
        await channel.send(value)


def queued_nowait(channel: trio.MemoryReceiveChannel[Any], most: int) -> list[Any]:
    """What is queued in ``channel`` already (at most ``most``), without waiting.

    Both ends of the link use it to take a burst in one go: the handler to
    handle it before yielding, the link's writers to send it in one write.
    """
    items: list[Any] = []
    while len(items) < most:
        try:
            items.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return items


class Generations:
    """Runs handler generations for a portal; see the module's docstring.

    Args:
        settings: the server's configuration.
        host: the portal (see :class:`GenerationHost`).
        starter: how to run a generation; None when handlers are started by
            hand (``handler.run(portal)``).

    Resource handling:
        :meth:`run` owns every generation's task; :meth:`retire` lets them
        finish and stop (within ``shutdown_grace`` twice at most).
    """

    def __init__(
        self, settings: Settings, host: GenerationHost, *, starter: Starter | None = None
    ) -> None:
        self.settings = settings
        self.starter = starter
        self._host = host
        self._system: trio.Nursery | None = None
        self._gen: _Generation | None = None
        self._candidate: _Generation | None = None
        self._live = False
        self._numbers = itertools.count(1)
        self._takeover = trio.Semaphore(1)
        self._reload_lock = trio.Lock()
        self._running_generations = 0
        self._generation_ended = trio.lowlevel.ParkingLot()
        self._stopping = False
        #: Players were told of a restart and await word of its end.
        self._restart_notice = False
        self._recovering = False
        #: Restarts since the last generation that stayed up.
        self._failures = 0
        # -- messages on their way
        self._txids = itertools.count(1)
        #: Messages a handler has, by id: their connection, and when they went.
        self._inflight: dict[int, tuple[Connection, PortalMessage, float]] = {}
        #: How long typed commands took, from leaving the portal to done.
        self.command_latency = LatencyHistogram()
        #: Messages that were in hand when a handler died, by id (the message
        #: is kept too, so the id stays its own): if the next one dies with
        #: one of them in hand as well, it is dropped, never replayed again.
        self._suspects: dict[int, PortalMessage] = {}
        self.poisoned = 0
        #: Reloads so far: how many worked and failed, how long they took, the last.
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.reload_durations = LatencyHistogram(RELOAD_BOUNDS)
        self.last_reload: ReloadRecord | None = None
        #: What a ReloadRequest (an admin's in-game ``reload``) runs; by
        #: default :meth:`reload` (a server sets its own, which reads settings too).
        self.reload_hook: Callable[[], Awaitable[str | None]] | None = None
        #: ... and generations started after a crash.
        self.restarts = 0
        self._held: dict[int, list[DataOut | Broadcast]] = {}
        self._ready: deque[Connection] = deque()
        self._ready_ids: set[int] = set()
        self._wakeup = trio.lowlevel.ParkingLot()
        self._progress = trio.lowlevel.ParkingLot()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Feed input to handlers until cancelled; with a starter, the first
        generation is live before ``task_status.started()``."""
        async with trio.open_nursery() as system:
            self._system = system
            system.start_soon(self._pump)
            if self.starter is not None:
                await self.start_generation()
            task_status.started()
            await trio.sleep_forever()

    def close(self) -> None:
        """The portal is stopping: no more restarts; the live handler's input ends."""
        self._stopping = True
        self._live = False
        if self._gen is not None:
            self._gen.send.close()

    @property
    def in_flight(self) -> int:
        """Messages a handler has but has not finished."""
        return len(self._inflight)

    async def to_handler(self, conn: Connection, message: PortalMessage) -> None:
        """Pass ``message`` on, waiting while the handler is busy.

        While no handler is live, or the session has input queued already,
        the message joins the session's queue instead, so order is kept.
        """
        gen = self._gen
        if self._live and gen is not None and not conn.pending:
            if await self._send_to(gen, conn, message) is _Given.KEPT:
                conn.pending.insert(0, message)
                self._mark_ready(conn)
        else:
            self.queue_nowait(conn, message)

    def queue_nowait(self, conn: Connection, message: PortalMessage) -> None:
        """Queue ``message`` for the handler; never blocks.

        Typed input beyond ``max_pending_input`` waiting messages is dropped,
        and the player is told.
        """
        if isinstance(message, DataIn) and len(conn.pending) >= self.settings.max_pending_input:
            if not conn.told_input_dropped:
                conn.told_input_dropped = True
                notice = self.settings.input_dropped_message
                conn.send_nowait(DataOut(conn.session.sessid, "text", (notice,)))
            log.warning("sessid %d: input queue full; input dropped", conn.session.sessid)
            return
        conn.pending.append(message)
        self._mark_ready(conn)

    def _mark_ready(self, conn: Connection) -> None:
        if conn.session.sessid not in self._ready_ids:
            self._ready_ids.add(conn.session.sessid)
            self._ready.append(conn)
        self._wakeup.unpark_all()

    async def _send_to(self, gen: _Generation, conn: Connection, message: PortalMessage) -> _Given:
        """Give ``message`` to ``gen``, numbered.

        Returns :attr:`_Given.SENT`; :attr:`_Given.KEPT` when that handler is gone and
        the message was not given (the caller still holds it); or
        :attr:`_Given.TAKEN_BACK` when the handler was lost while the send waited,
        and the message went back to the session's queue with the rest of
        what that handler had in hand (the caller must not queue it again).
        """
        txid = next(self._txids)
        # In hand before the send: the handler may answer before we resume.
        self._inflight[txid] = (conn, message, time.monotonic())
        if isinstance(message, Connect):
            conn.introduced = True
        numbered = _numbered(message, txid)
        try:
            await send_in_turn(gen.send, numbered)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self._inflight.pop(txid, None) is None:
                return _Given.TAKEN_BACK  # by _generation_lost, while the send waited
            self._generation_lost(gen, "its input channel closed")
            return _Given.KEPT
        except trio.Cancelled:
            self._inflight.pop(txid, None)  # a cancelled send sent nothing
            raise
        return _Given.SENT

    async def _pump(self) -> None:
        """Feed queued input to the live handler, a message per session in turn."""
        while True:
            while self._live and self._ready and self._gen is not None:
                conn = self._ready.popleft()
                self._ready_ids.discard(conn.session.sessid)
                if not conn.pending:
                    continue
                message = conn.pending[0]
                outcome = await self._send_to(self._gen, conn, message)
                if outcome is _Given.SENT:
                    del conn.pending[0]
                    conn.told_input_dropped = False
                elif outcome is _Given.TAKEN_BACK:
                    # Back among what the lost handler had in hand, at the
                    # front: the copy where it was (the last) goes.
                    for index in range(len(conn.pending) - 1, -1, -1):
                        if conn.pending[index] is message:
                            del conn.pending[index]
                            break
                else:
                    await trio.lowlevel.checkpoint()  # never spin on a handler that is gone
                if conn.pending:
                    self._mark_ready(conn)
            self._progress.unpark_all()
            await self._wakeup.park()

    async def attach(self) -> PortalLink:
        """Let a handler generation take over; returns once it may.

        A generation serving now is paused first: it finishes everything it
        was given, saves, and says ``Paused``. The link's snapshot holds the
        sync data of every session a handler already knew. The caller must
        load it and send ``Loaded`` (or fail, and the old one resumes).
        """
        await self._takeover.acquire()
        send, receive = trio.open_memory_channel[ToHandler](self.settings.inbound_queue_size)
        gen = _Generation(next(self._numbers), send, receive)
        slot = _SLOT.get(None)
        if slot is not None:
            slot.generation = gen
        self._candidate = gen
        old = self._gen
        if old is not None and not old.ended:
            await self._pause(old)
        snapshot = [c.session.get_sync_data() for c in self._host.connections.values() if c.known]
        log.info("handler generation %d attaching (%d sessions)", gen.number, len(snapshot))
        return PortalLink(receive, snapshot, partial(self._from_handler, gen))

    async def _pause(self, gen: _Generation) -> None:
        self._live = False
        self._notice(self.settings.reload_message)
        self._restart_notice = True  # so "restarted" (or "failed") follows
        with trio.move_on_after(self.settings.pause_timeout):
            try:
                await gen.send.send(Pause())
                await gen.paused.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if not gen.paused.is_set():
            self._generation_lost(gen, "it did not pause in time")

    def _from_handler(self, gen: _Generation, message: FromHandler) -> None:
        """Act on a message from handler generation ``gen``. Never blocks."""
        if gen.ended:
            return  # a retired or dead generation: not listened to
        if isinstance(message, Done):
            entry = self._inflight.pop(message.txid, None)
            if entry is not None:
                self._suspects.pop(id(entry[1]), None)
                if isinstance(entry[1], Connect):
                    entry[0].known = True
                elif isinstance(entry[1], DataIn):
                    self.command_latency.observe(time.monotonic() - entry[2])
            conn = self._host.connections.get(message.sessid)
            if message.sync_data and conn is not None:
                conn.session.load_sync_data(message.sync_data)
            for held in self._held.pop(message.txid, ()):
                self._host.route(held)
            self._progress.unpark_all()
        elif isinstance(message, DataOut | Broadcast) and message.txid in self._inflight:
            waiting = self._held.setdefault(message.txid, [])
            if len(waiting) < _MAX_HELD:
                waiting.append(message)
            else:
                self._host.route(message)
        elif isinstance(message, Paused):
            gen.paused.set()
        elif isinstance(message, Loaded):
            self._take_over(gen)
        elif isinstance(message, ReloadRequest):
            if self._system is not None:
                self._system.start_soon(self._reload_for, message.sessid)
        elif isinstance(message, ShutdownRequest | BanList | Counters):
            self._host.control(message)
        else:
            self._host.route(message)

    def _take_over(self, gen: _Generation) -> None:
        if gen is not self._candidate:
            return
        old, self._gen, self._candidate = self._gen, gen, None
        if old is not None and not old.ended:
            old.ended = True
            old.send.close()  # the old handler returns
        self._live = True
        self._takeover.release()
        self._wakeup.unpark_all()
        log.info("handler generation %d is live", gen.number)
        if self._restart_notice:
            self._restart_notice = False
            self._notice(self.settings.reload_done_message)

    def _candidate_failed(self, gen: _Generation | None) -> None:
        """A generation died before taking over: the old one carries on."""
        if gen is None or gen is not self._candidate:
            return
        gen.ended = True
        gen.send.close()
        self._candidate = None
        old = self._gen
        if old is not None and not old.ended:
            if old.paused.is_set():
                old.paused = trio.Event()
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    old.send.send_nowait(Resume())
            self._live = True
            self._wakeup.unpark_all()
            if self._restart_notice:
                self._restart_notice = False
                self._notice(self.settings.reload_failed_message)
        self._takeover.release()

    def _generation_lost(self, gen: _Generation, why: str) -> None:
        """``gen`` is gone unasked: take back what it had not finished."""
        if gen.ended:
            return
        gen.ended = True
        gen.send.close()
        if gen is not self._gen:
            return
        self._live = False
        log.error("handler generation %d lost: %s", gen.number, why)
        # What it was given and had not finished goes back, in order, to be
        # handled by the next generation; what it said about it is dropped.
        # Unless the generation before died with it in hand too: then it may
        # be what kills them, and it is dropped instead.
        returned: dict[int, tuple[Connection, list[PortalMessage]]] = {}
        suspects: dict[int, PortalMessage] = {}
        for _, (conn, message, _) in sorted(self._inflight.items()):
            if id(message) in self._suspects:
                self._drop_poisoned(conn, message)
                continue
            suspects[id(message)] = message
            returned.setdefault(conn.session.sessid, (conn, []))[1].append(message)
        self._suspects = suspects
        for conn, messages in returned.values():
            conn.pending[0:0] = messages
            self._mark_ready(conn)
        self._inflight.clear()
        self._held.clear()
        if self._stopping:
            return
        self._notice(self.settings.crash_message)
        self._restart_notice = True
        if self.starter is not None and self._system is not None and not self._recovering:
            self._system.start_soon(self._recover)

    def _drop_poisoned(self, conn: Connection, message: PortalMessage) -> None:
        """Two handlers in a row died with ``message`` in hand: never replay it."""
        self.poisoned += 1
        log.error(
            "sessid %d: %s was in hand when two handlers in a row died; dropped, not replayed",
            conn.session.sessid,
            describe(message),
        )
        if isinstance(message, DataIn):
            conn.send_nowait(
                DataOut(conn.session.sessid, "text", (self.settings.poisoned_input_message,))
            )
        elif isinstance(message, Connect | SessionUpdate):
            # The game cannot know this session as it is: end it, cleanly.
            conn.close(self.settings.poisoned_input_message)

    async def start_generation(self) -> None:
        """Start a handler generation with the starter; return once it is live.

        Raises whatever the generation raised if it could not take over (the
        one serving before goes on serving).
        """
        if self.starter is None or self._system is None:
            raise RuntimeError("this portal has no starter, or is not running")
        await self._system.start(self._run_generation)

    async def _run_generation(self, *, task_status: trio.TaskStatus[None]) -> None:
        assert self.starter is not None
        slot = _Slot()
        _SLOT.set(slot)
        status = StatusTap(task_status)
        self._running_generations += 1
        try:
            await self.starter(self._host, task_status=status)
        except Exception as exc:
            if not status.done:
                self._candidate_failed(slot.generation)
                raise
            log.error("handler generation failed: %r", exc, exc_info=exc)
        finally:
            self._running_generations -= 1
            self._generation_ended.unpark_all()
        if not status.done:
            self._candidate_failed(slot.generation)
            raise RuntimeError("the handler generation ended before it took over")
        if slot.generation is not None:
            self._generation_lost(slot.generation, "it ended")

    async def reload(self) -> str | None:
        """Replace the handler generation; None, or why it failed.

        Players see ``reload_message`` and then ``reload_done_message`` (or
        ``reload_failed_message``); if the new generation cannot start, the
        old one never stops serving.
        """
        async with self._reload_lock:
            started = time.monotonic()
            error: str | None = None
            try:
                await self.start_generation()
            except Exception as exc:
                error = _describe(exc)
                log.error("reload failed: %s", error)
            self.last_reload = ReloadRecord(time.time(), time.monotonic() - started, error)
            self.reload_durations.observe(self.last_reload.seconds)
            if error is None:
                self.reloads_ok += 1
            else:
                self.reloads_failed += 1
        return error

    async def _reload_for(self, sessid: int) -> None:
        error = await (self.reload_hook or self.reload)()
        conn = self._host.connections.get(sessid)
        if error is not None and conn is not None:
            conn.send_nowait(DataOut(sessid, "text", (markup.escape(f"Reload failed: {error}"),)))

    async def _recover(self) -> None:
        """Start a new generation after a crash, backing off while it keeps failing."""
        self._recovering = True
        try:
            while not self._stopping:
                delay = self._restart_delay()
                if delay:
                    log.warning("restarting the handler in %.1f s", delay)
                    await trio.sleep(delay)
                async with self._reload_lock:
                    if self._live or self._stopping:
                        return
                    try:
                        await self.start_generation()
                        self.restarts += 1
                        return
                    except Exception as exc:
                        log.error("handler restart failed: %s", _describe(exc))
        finally:
            self._recovering = False

    def _restart_delay(self) -> float:
        """How long to wait before the next restart; counts it.

        At once the first time, then ``restart_backoff`` doubling up to
        ``restart_backoff_max``, whether the restarts fail to start or start
        and die again; a generation that stayed up ``restart_stable_after``
        seconds starts the count afresh.
        """
        gen = self._gen
        if (
            gen is not None
            and time.monotonic() - gen.started_at > self.settings.restart_stable_after
        ):
            self._failures = 0
        restarts, self._failures = self._failures, self._failures + 1
        if restarts == 0:
            return 0.0
        delay = self.settings.restart_backoff * 2 ** (restarts - 1)
        return float(min(self.settings.restart_backoff_max, delay))

    def _notice(self, text: str) -> None:
        """Tell every connected player something (restart notices)."""
        if text and self._host.connections:
            self._host.route(Broadcast(tuple(self._host.connections), "text", (text,)))

    async def retire(self) -> None:
        """After the last connection: let the handler finish, then stop it."""
        self._stopping = True
        with trio.move_on_after(self.settings.shutdown_grace):
            while self._live and (self._ready or self._inflight):
                await self._progress.park()  # the pump and the handler finish up
        self._live = False  # nothing more goes to a handler (the pump stops)
        for gen in (self._gen, self._candidate):
            if gen is not None and not gen.ended:
                gen.ended = True
                gen.send.close()
        with trio.move_on_after(self.settings.shutdown_grace):
            while self._running_generations:
                await self._generation_ended.park()

    @property
    def live(self) -> bool:
        """Whether a handler is taking input now."""
        return self._live

    @property
    def number(self) -> int:
        """The number of the newest generation (1 + reloads + restarts so far)."""
        current = self._candidate or self._gen
        return 0 if current is None else current.number

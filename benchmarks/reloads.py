"""Reloads: successive SIGHUPs to one running server while players type.

    python benchmarks/reloads.py [--players 100] [--reloads 10] [--embedded]
                                 [--pythonpath DIR] [--snapshot] [--interval 0]
                                 [--control]

The real server (``python -m trio_mud``, process mode unless ``--embedded``)
runs in a child process on 127.0.0.1 with a temporary data directory; its
stdout and stderr are read line by line (each line stamped with the time it
arrived) and kept in a file under /tmp. N players log in (cheap argon2id, t=1, 8 MiB), and
each types ``look zq<player>x<seq>`` in a closed loop: it sends one, waits for
its answer (``You see no 'zq..' here.``, which names the command it answers),
and sends the next (after ``--interval`` seconds, 0 by default; at most
``--max-rate`` a second, 40 by default, under the server's 80). One more
client, the watcher, is logged in and only reads.

Then, ``--reloads`` times, ``--gap`` seconds apart: SIGHUP to the portal, and
the reload's duration is from the signal to the moment the watcher reads
"... Server restarted.". The portal's log lines of that reload (server process
started, generation attaching, generation live, old process exited) are shown
relative to the signal. Once the old server process is gone (or 30 s have
passed), the portal's and the new server process's RSS, open fds and threads
are read, with the number of server processes alive and of zombie children.

At the end the players stop, every command must have been answered (exactly
once) and no client disconnected; the tenth/first duration ratio (target
<= 1.3x) and the growth of fds, RSS and threads are printed, and what the
portal holds (its fds and what they point to, its threads, its children) is
compared with what it held before the first reload and after the first.

``--control`` sends no SIGHUP (the same schedule and samples): RSS that grows
in a control run grows from the typing, not from the reloads.

``--pythonpath DIR`` puts DIR first on the server's PYTHONPATH (and runs it in
a temporary directory, so that the current one does not shadow DIR);
``--snapshot`` copies that trio_mud/ at the start, so that every reload loads
the same code even if the checkout changes meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio
from _procs import children_of, code_version, fd_count, machine, proc_state, take_snapshot

LISTENING = re.compile(r"telnet listening on 127\.0\.0\.1 port (\d+)")
ANSWER = re.compile(rb"You see no 'zq(\d+)x(\d+)' here\.")
SCREEN_END = b"shows this screen again"
RESTARTING = b"Server restarting..."
RESTARTED = b"... Server restarted."
NOTICES = {
    "restarting": RESTARTING,
    "restarted": RESTARTED,
    "restart failed": b"Server restart failed",
    "crash": b"The server stopped unexpectedly",
    "input dropped": b"cannot keep more of your input",
    "too fast": b"You entered commands too fast",
}
#: Portal log lines that mark the phases of a reload (pattern, short name).
PHASES = (
    (re.compile(r"SIGHUP: reloading"), "sighup-logged"),
    (re.compile(r"server process (\d+) started"), "process-started"),
    (re.compile(r"handler generation (\d+) attaching"), "attaching"),
    (re.compile(r"handler generation (\d+) is live"), "live"),
    (re.compile(r"server process (\d+) exited"), "old-exited"),
)
PASSWORD = "reloads-password"
TARGET_RATIO = 1.3
LATE = 5.0  # seconds: a command unanswered for longer when a reload is sampled is late


# -- /proc ------------------------------------------------------------------------------


def status(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as lines:
            for line in lines:
                name, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    fields[name] = int(parts[0])
    except OSError:
        return {}
    return fields


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            return raw.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def server_pids(portal: int) -> list[int]:
    """The portal's ``trio_mud.serverproc`` children that are not zombies."""
    return [
        pid
        for pid in children_of(portal)
        if "trio_mud.serverproc" in cmdline(pid) and proc_state(pid) not in (None, "Z")
    ]


def zombies(portal: int) -> list[int]:
    return [pid for pid in children_of(portal) if proc_state(pid) == "Z"]


def thread_names(pid: int) -> Counter[str]:
    names: Counter[str] = Counter()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/comm") as comm:
                names[comm.read().strip()] += 1
    except OSError:
        pass
    return names


def _socket_tables() -> dict[str, str]:
    """Socket inode -> what it is, from /proc/net/{tcp,tcp6,unix}."""
    table: dict[str, str] = {}

    def address(text: str) -> str:
        host, port = text.split(":")
        if len(host) == 8:
            ip = ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0))
        else:
            ip = "[v6]"
        return f"{ip}:{int(port, 16)}"

    states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/net/{name}") as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                state = states.get(parts[3], parts[3])
                table[parts[9]] = f"tcp {address(parts[1])} -> {address(parts[2])} {state}"
    with contextlib.suppress(OSError), open("/proc/net/unix") as lines:
        next(lines)
        for line in lines:
            parts = line.split()
            if len(parts) >= 7:
                path = parts[7] if len(parts) > 7 else "(unnamed)"
                table[parts[6]] = f"unix {path} state {parts[5]}"
    return table


def _holders(target: str, exclude: int) -> list[int]:
    """Other processes that hold an fd pointing at ``target`` (a pipe, a socket)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == exclude:
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{name}/fd/{fd}") == target:
                        found.append(int(name))
                        break
        except OSError:
            continue
    return found


def smaps_rss(pid: int) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Every mapping of /proc/<pid>/smaps: (start, perms, name) -> (size, Rss) in KiB.

    Keyed by where it starts, so that a mapping that grows (the heap, a malloc
    arena) is the same one before and after."""
    found: dict[tuple[str, str, str], tuple[int, int]] = {}
    header = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
    key = None
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps") as lines:
        for line in lines:
            if match := header.match(line):
                key = (match[1], match[3], match[4] or "(anonymous)")
                found[key] = ((int(match[2], 16) - int(match[1], 16)) // 1024, 0)
            elif key is not None and line.startswith("Rss:"):
                found[key] = (found[key][0], int(line.split()[1]))
    return found


def fd_table(pid: int) -> dict[int, str]:
    """fd -> what it points to (ls -l /proc/<pid>/fd)."""
    table = {}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                table[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        pass
    return table


def describe_fd(pid: int, target: str, sockets: dict[str, str]) -> str:
    match = re.match(r"(socket|pipe):\[(\d+)\]", target)
    if not match:
        return target
    kind, inode = match.groups()
    what = sockets.get(inode, "") if kind == "socket" else ""
    others = _holders(target, pid)
    held = ", ".join(f"{p} ({proc_state(p)}) {cmdline(p)[:60]}" for p in others) or "nobody"
    return f"{target} {what}; also held by: {held}"


def kind_of(target: str) -> str:
    return re.sub(r"\[\d+\]", "", target) if target.startswith(("socket", "pipe")) else target


# -- the server ---------------------------------------------------------------------------


@dataclass
class LogLine:
    at: float  # trio.current_time() when it arrived
    text: str


class ServerLog:
    """The portal's stderr, line by line, stamped on arrival, copied to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[LogLine] = []
        self.arrived = trio.lowlevel.ParkingLot()

    async def follow(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        with open(self.path, "wb") as copy:  # noqa: ASYNC230 (a local file, small writes)
            async for data in stream:
                copy.write(data)
                now = trio.current_time()
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    self.lines.append(LogLine(now, raw.decode(errors="replace")))
                if lines:
                    copy.flush()
                    self.arrived.unpark_all()

    async def wait_for(self, pattern: re.Pattern[str], after: int = 0) -> LogLine:
        while True:
            for line in self.lines[after:]:
                if pattern.search(line.text):
                    return line
            await self.arrived.park()


def server_env(pythonpath: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [pythonpath, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
    return env


def where_trio_mud(env: dict[str, str], cwd: str) -> str:
    found = subprocess.run(
        [sys.executable, "-c", "import trio_mud; print(trio_mud.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    return (found.stdout or found.stderr).strip()


# -- clients ----------------------------------------------------------------------------


class Sources:
    """Loopback source addresses 127.0.0.2-254, each paced under the server's
    default per-address connection rate (a burst of 20, then 4 a second)."""

    def __init__(self, rate: float = 4.0, burst: int = 20) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens: dict[int, float] = {}
        self.stamp: dict[int, float] = {}
        self.locks: dict[int, trio.Lock] = {}

    async def connect(self, port: int, index: int) -> trio.SocketStream:
        x = 2 + index % 253
        async with self.locks.setdefault(x, trio.Lock()):
            while True:
                now = trio.current_time()
                tokens = min(
                    self.burst,
                    self.tokens.get(x, self.burst) + (now - self.stamp.get(x, now)) * self.rate,
                )
                self.stamp[x] = now
                if tokens >= 1:
                    self.tokens[x] = tokens - 1
                    break
                self.tokens[x] = tokens
                await trio.sleep((1 - tokens) / self.rate)
        sock = trio.socket.socket()
        try:
            await sock.bind((f"127.0.0.{x}", 0))
            await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)


@dataclass
class Switch:
    on: bool = True


@dataclass
class Stats:
    sent: int = 0
    answered: int = 0
    duplicated: int = 0
    unexpected: int = 0
    rate_dropped: int = 0  # commands the portal dropped for the command rate
    disconnects: list[str] = field(default_factory=list)
    notices: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (answered at, latency)
    stopping: bool = False


class Player:
    def __init__(self, index: int, stream: trio.SocketStream, stats: Stats) -> None:
        self.index = index
        self.stream = stream
        self.stats = stats
        self.buffer = bytearray()
        self.pending: dict[int, float] = {}
        self.done: set[int] = set()
        self.seq = 0
        self.answer = trio.Event()
        self.connected = True
        self.seen: dict[bytes, list[float]] = {RESTARTING: [], RESTARTED: []}
        self.seen_changed = trio.lowlevel.ParkingLot()

    async def read_past(self, marker: bytes) -> None:
        """While logging in: read until ``marker`` and the end of its line."""
        while True:
            at = self.buffer.find(marker)
            if at >= 0 and (end := self.buffer.find(b"\n", at)) >= 0:
                del self.buffer[: end + 1]
                return
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError(f"closed while logging in: {bytes(self.buffer[-200:])!r}")
            self.buffer += data

    def gone(self, why: str) -> None:
        if self.connected:
            self.connected = False
            self.answer.set()
            if not self.stats.stopping:
                self.stats.disconnects.append(f"client {self.index}: {why}")

    async def reader(self) -> None:
        stats = self.stats
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    self.gone("EOF")
                    return
                self.buffer += data
                end = self.buffer.rfind(b"\n")
                if end < 0:
                    continue
                text = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                now = trio.current_time()
                for match in ANSWER.finditer(text):
                    index, seq = int(match[1]), int(match[2])
                    sent = self.pending.pop(seq, None) if index == self.index else None
                    if sent is None:
                        if index == self.index and seq in self.done:
                            stats.duplicated += 1
                        else:
                            stats.unexpected += 1
                        continue
                    self.done.add(seq)
                    stats.answered += 1
                    stats.latencies.append((now, now - sent))
                    self.answer.set()
                for name, marker in NOTICES.items():
                    if marker in text:
                        stats.notices[name] += text.count(marker)
                if NOTICES["too fast"] in text and self.pending:
                    # the portal dropped the command in hand (a closed loop has one)
                    self.pending.pop(max(self.pending))
                    stats.rate_dropped += 1
                    self.answer.set()
                for marker, times in self.seen.items():
                    if marker in text:
                        times.extend([now] * text.count(marker))
                        self.seen_changed.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.gone(f"read error {exc!r}")

    async def typist(self, typing: Switch, interval: float, max_rate: float) -> None:
        """A closed loop: one command, its answer, the next (until ``typing`` is off),
        at most ``max_rate`` commands a second."""
        next_at = trio.current_time()
        while self.connected and typing.on:
            await trio.sleep_until(next_at)
            if not typing.on:  # stopped while pacing: send nothing more
                return
            next_at = trio.current_time() + 1 / max_rate
            self.seq += 1
            self.answer = trio.Event()
            self.pending[self.seq] = trio.current_time()
            self.stats.sent += 1
            try:
                await self.stream.send_all(f"look zq{self.index}x{self.seq}\r\n".encode())
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.gone(f"write error {exc!r}")
                return
            await self.answer.wait()
            if interval:
                await trio.sleep(interval)

    async def wait_seen(self, marker: bytes, count: int) -> float:
        while len(self.seen[marker]) < count:
            await self.seen_changed.park()
        return self.seen[marker][count - 1]


# -- the run -------------------------------------------------------------------------------


@dataclass
class After:
    """What one reload took and left behind."""

    number: int
    duration: float  # SIGHUP -> the watcher reads "... Server restarted."
    phases: dict[str, float]
    old_gone: float | None  # SIGHUP -> the old server process gone (None: it is not)
    portal_rss: int
    portal_fds: int | None
    portal_threads: int
    server_pid: int | None
    server_rss: int | None
    server_fds: int | None
    server_threads: int | None
    servers_alive: int
    zombies: int
    children: int
    answered: int  # commands answered since the previous reload's sample
    worst: float  # longest latency of the commands answered from SIGHUP to the sample
    late: int  # commands unanswered for more than LATE seconds at the sample
    disconnected: int  # clients disconnected so far


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


@dataclass
class PortalView:
    """What the portal holds at one moment: fds (and what they point to), threads,
    children; ``described`` explains the fds not in ``compared_with``."""

    label: str
    fds: dict[int, str]
    threads: Counter[str]
    children: list[tuple[int, str, str]]
    #: (start, perms, name) -> (size KiB, Rss KiB), for every mapping
    maps: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    described: dict[int, str] = field(default_factory=dict)


def view_portal(pid: int, label: str, compared_with: Sequence[PortalView] = ()) -> PortalView:
    view = PortalView(
        label,
        fd_table(pid),
        thread_names(pid),
        [(k, proc_state(k) or "?", cmdline(k)[:80]) for k in children_of(pid)],
        smaps_rss(pid),
    )
    if compared_with:
        sockets = _socket_tables()
        for fd, target in view.fds.items():
            if any(other.fds.get(fd) != target for other in compared_with):
                view.described[fd] = describe_fd(pid, target, sockets)
    return view


async def run(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mode = "embedded" if args.embedded else "process"
    if args.control:
        print("CONTROL RUN: no SIGHUP is sent; 'duration' is a fixed 0.5 s wait")
    print(
        f"reloads: {args.reloads} SIGHUPs {args.gap:g} s apart, {mode} mode, {args.players}"
        f" players typing `look zq<n>x<seq>` in a closed loop"
        f"{f' ({args.interval:g} s between answer and next command)' if args.interval else ''}"
        f", plus one watcher"
    )
    print(f"machine: {machine()}")
    workdir = tempfile.mkdtemp(prefix="reloads-")
    print(f"code: {code_version(args.pythonpath)}")
    snapshot = None
    if args.snapshot:
        snapshot = args.pythonpath = take_snapshot(args.pythonpath)
        print(f"server code: a copy of it in {snapshot} (--snapshot; every reload runs it)")
    env = server_env(args.pythonpath)
    print(f"server code: trio_mud from {where_trio_mud(env, workdir)}")
    log_path = Path(f"/tmp/reloads-{mode}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    argv = [
        sys.executable, "-m", "trio_mud",
        "--set", "max_connections_per_address=100000",  # many clients on loopback
        "--set", "creation_throttle_limit=100000", "--set", "login_throttle_limit=100000",
        "--set", "game_prompt=",  # the same output as the figures measured before prompts
        "--no-web", "--telnet-port", "0",
        "--data-dir", os.path.join(workdir, "data"), "--log-level", "INFO",
        "--idle-timeout", "0",
        "--set", "password_hash_time_cost=1", "--set", "password_hash_memory_kib=8192",
        *(["--embedded"] if args.embedded else []),
    ]  # fmt: skip
    print(f"server: {' '.join(argv[1:])}")
    print(f"server stderr: {log_path}", flush=True)
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
    )
    log = ServerLog(log_path)
    began = time.perf_counter()
    try:
        with trio.fail_after(args.timeout):
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None
                nursery.start_soon(log.follow, process.stdout)
                await exercise(args, process, log)
                nursery.cancel_scope.cancel()
    finally:
        if process.poll() is None:  # the harness broke: leave nothing running
            for pid in server_pids(process.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        if snapshot:
            shutil.rmtree(snapshot, ignore_errors=True)
        print(f"reloads: done in {time.perf_counter() - began:.0f} s")


async def exercise(args: argparse.Namespace, process: trio.Process, log: ServerLog) -> None:
    with trio.fail_after(60):
        line = await log.wait_for(LISTENING)
    port = int(LISTENING.search(line.text).group(1))  # type: ignore[union-attr]
    portal = process.pid
    stats = Stats()
    sources = Sources()
    players: list[Player] = []
    print(f"portal pid {portal}, telnet port {port}, server process(es) {server_pids(portal)}")

    async def log_in(index: int, name: str) -> Player:
        player = Player(index, await sources.connect(port, index), stats)
        await player.read_past(SCREEN_END)
        await player.stream.send_all(f"create {name} {PASSWORD}\r\n".encode())
        await player.read_past(b"Exits:")
        return player

    started = trio.current_time()
    limit = trio.Semaphore(50)

    async def join(index: int) -> None:
        async with limit:
            players.append(await log_in(index, f"Typist{index}"))

    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            for index in range(args.players):
                nursery.start_soon(join, index)
        watcher = await log_in(args.players, "Watcher")
    took = trio.current_time() - started
    print(f"logged in {len(players)} players and the watcher in {took:.1f} s")

    typing = Switch()
    rows: list[After] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher.reader)
        for player in players:
            nursery.start_soon(player.reader)
            nursery.start_soon(player.typist, typing, args.interval, args.max_rate)
        await trio.sleep(args.gap)
        baseline = sample_baseline(portal)
        views = [view_portal(portal, "before the first reload")]
        base_answered = stats.answered
        server_text = (
            f"server {baseline['server_pid']} RSS {mib(baseline['server_rss'])} MiB, fds"
            f" {baseline['server_fds']}, threads {baseline['server_threads']}"
            if baseline["server_pid"]
            else "no server process (embedded)"
        )
        print(
            f"before the first reload: portal RSS {mib(baseline['portal_rss'])} MiB,"
            f" fds {baseline['portal_fds']}, threads {baseline['portal_threads']};"
            f" {server_text}; {stats.answered} commands answered in the first {args.gap:g} s"
        )
        print(
            "\n  # | duration | portal log, ms after SIGHUP:"
            " started / attaching / live / old exited | old gone"
            " | portal RSS  fds thr | server   pid    RSS  fds thr | alive zomb kids"
            f" | answered worst(ms) late disc  (late: unanswered > {LATE:g} s; disc: so far)"
        )
        last_answered = base_answered
        for number in range(1, args.reloads + 1):
            row = await one_reload(
                args, number, portal, log, watcher, players, stats, last_answered
            )
            last_answered += row.answered
            rows.append(row)
            print(row_text(row), flush=True)
            if number == 1:
                views.append(view_portal(portal, "after reload 1"))
            if number < args.reloads:
                await trio.sleep(args.gap)
        views.append(view_portal(portal, f"after reload {args.reloads}", views[:2]))
        # stop typing; every command sent must be answered
        typing.on = False
        for player in players:
            player.answer.set()
        deadline = trio.current_time() + args.drain_timeout
        while any(p.pending and p.connected for p in players):
            if trio.current_time() > deadline:
                break
            await trio.sleep(0.1)
        stats.stopping = True
        process.send_signal(signal.SIGINT)
        with trio.move_on_after(30):
            await process.wait()
        if process.poll() is None:
            print("the server did not stop within 30 s of SIGINT: SIGKILL")
            process.kill()
        nursery.cancel_scope.cancel()
    for player in [*players, watcher]:
        await player.stream.aclose()
    report(args, rows, baseline, stats, players, log)
    inspect(views)


def sample_baseline(portal: int) -> dict[str, int | None]:
    servers = server_pids(portal)
    server = servers[-1] if servers else None
    p = status(portal)
    s = status(server) if server else {}
    return {
        "portal_rss": p.get("VmRSS"),
        "portal_fds": fd_count(portal),
        "portal_threads": p.get("Threads"),
        "server_pid": server,
        "server_rss": s.get("VmRSS"),
        "server_fds": fd_count(server) if server else None,
        "server_threads": s.get("Threads"),
    }


async def one_reload(
    args: argparse.Namespace,
    number: int,
    portal: int,
    log: ServerLog,
    watcher: Player,
    players: list[Player],
    stats: Stats,
    answered_before: int,
) -> After:
    old = server_pids(portal)
    log_from = len(log.lines)
    latencies_from = len(stats.latencies)
    signalled = trio.current_time()
    if args.control:  # no reload: the same schedule and samples
        await trio.sleep(0.5)
        old = []
        restarted = trio.current_time()
    else:
        os.kill(portal, signal.SIGHUP)
        with trio.fail_after(120):
            restarted = await watcher.wait_seen(RESTARTED, number)
    duration = restarted - signalled
    old_gone: float | None = None
    with trio.move_on_after(30):
        while True:
            now = trio.current_time()
            if not any(proc_state(pid) not in (None, "Z") for pid in old):
                old_gone = now - signalled
                break
            await trio.sleep(0.01)
    if not args.embedded and old:
        with trio.move_on_after(10):  # the portal logs the exit once it has reaped it
            await log.wait_for(re.compile(rf"server process {old[0]} exited"), log_from)
    await trio.sleep(args.settle)
    phases: dict[str, float] = {}
    for line in log.lines[log_from:]:
        for pattern, name in PHASES:
            if name not in phases and pattern.search(line.text):
                if name == "old-exited" and old and str(old[0]) not in line.text:
                    continue
                phases[name] = line.at - signalled
    servers = server_pids(portal)
    server = max(servers) if servers else None
    p = status(portal)
    s = status(server) if server else {}
    window = [latency for _, latency in stats.latencies[latencies_from:]]
    kids = children_of(portal)
    now = trio.current_time()
    return After(
        number=number,
        duration=duration,
        phases=phases,
        old_gone=old_gone if old else None,
        portal_rss=p.get("VmRSS", 0),
        portal_fds=fd_count(portal),
        portal_threads=p.get("Threads", 0),
        server_pid=server,
        server_rss=s.get("VmRSS"),
        server_fds=fd_count(server) if server else None,
        server_threads=s.get("Threads"),
        servers_alive=len(servers),
        zombies=len(zombies(portal)),
        children=len(kids),
        answered=stats.answered - answered_before,
        worst=max(window, default=0.0),
        late=sum(1 for p in players for t in p.pending.values() if now - t > LATE),
        disconnected=len(stats.disconnects),  # the watcher's too: it shares the stats
    )


def row_text(row: After) -> str:
    def ms(name: str) -> str:
        value = row.phases.get(name)
        return "-" if value is None else f"{value * 1000:.0f}"

    gone = "-" if row.old_gone is None else f"{row.old_gone * 1000:.0f} ms"
    phases = f"{ms('process-started')} / {ms('attaching')} / {ms('live')} / {ms('old-exited')}"
    return (
        f" {row.number:>2} | {row.duration * 1000:6.0f} ms | {phases:<37} | {gone:>8}"
        f" | {mib(row.portal_rss):>6} MiB {row.portal_fds!s:>4} {row.portal_threads:>3}"
        f" | {row.server_pid!s:>7} {mib(row.server_rss):>6} {row.server_fds!s:>4}"
        f" {row.server_threads!s:>3} | {row.servers_alive:>5} {row.zombies:>4} {row.children:>4}"
        f" | {row.answered:>8} {row.worst * 1000:9.0f} {row.late:>4} {row.disconnected:>4}"
    )


def report(
    args: argparse.Namespace,
    rows: list[After],
    baseline: dict[str, int | None],
    stats: Stats,
    players: list[Player],
    log: ServerLog,
) -> None:
    print("\n== totals ==")
    unanswered = sum(len(p.pending) for p in players)
    print(
        f"commands sent {stats.sent}, answered {stats.answered}, UNANSWERED {unanswered}"
        f" (at {sum(1 for p in players if p.pending)} players), duplicated {stats.duplicated},"
        f" answers to nothing sent {stats.unexpected}, dropped for the command rate"
        f" {stats.rate_dropped}"
    )
    print(f"clients disconnected: {len(stats.disconnects)}")
    for why in stats.disconnects[:10]:
        print(f"  {why}")
    notices = ", ".join(f"{k} {v}" for k, v in sorted(stats.notices.items())) or "-"
    print(f"notices seen by the players: {notices}")
    if not rows:
        return
    durations = [r.duration for r in rows]
    print(
        "reload durations (ms): "
        + ", ".join(f"{d * 1000:.0f}" for d in durations)
        + f"; median {statistics.median(durations) * 1000:.0f}"
    )
    ratio = rows[-1].duration / rows[0].duration
    print(
        f"last/first duration: {ratio:.2f}x (target <= {TARGET_RATIO:g}x:"
        f" {'ok' if ratio <= TARGET_RATIO else 'NO'})"
    )
    if len(durations) >= 6:
        # one pair of reloads is noisy on a loaded 2-core machine: the trend too
        early, late = statistics.median(durations[:3]), statistics.median(durations[-3:])
        slope = statistics.linear_regression(range(len(durations)), durations).slope
        print(
            f"trend: median of the last 3 / median of the first 3: {late / early:.2f}x;"
            f" least-squares slope {slope * 1000:+.1f} ms per reload"
        )
    first, last = rows[0], rows[-1]

    def change(a: int | None, b: int | None, unit: str = "") -> str:
        if a is None or b is None:
            return "-"
        return f"{a}{unit} -> {b}{unit} ({b - a:+d})"

    print(
        f"portal fds: before {baseline['portal_fds']}, after reload 1 -> after reload"
        f" {last.number}: {change(first.portal_fds, last.portal_fds)}"
    )
    print(
        f"portal RSS (KiB): before {baseline['portal_rss']}, after reload 1 -> after reload"
        f" {last.number}: {change(first.portal_rss, last.portal_rss)}"
    )
    print(
        f"portal threads: before {baseline['portal_threads']}, after reload 1 -> after"
        f" reload {last.number}: {change(first.portal_threads, last.portal_threads)}"
    )
    if not args.embedded:
        print(
            f"server process fds: before {baseline['server_fds']}, new process after reload 1"
            f" -> after reload {last.number}: {change(first.server_fds, last.server_fds)}"
        )
        print(
            f"server process RSS (KiB): before {baseline['server_rss']}, after reload 1 ->"
            f" after reload {last.number}: {change(first.server_rss, last.server_rss)}"
        )
        alive = [r.servers_alive for r in rows]
        dead = [r.zombies for r in rows]
        print(f"server processes alive after each reload: {alive}; zombies {dead}")
    kinds: Counter[str] = Counter()
    for line in log.lines:
        for level in (" WARNING ", " ERROR ", " CRITICAL "):
            if level in line.text:
                kinds[level.strip() + " " + re.sub(r"\d+", "N", line.text.split(level, 1)[1])] += 1
    print(f"server log {log.path}: {len(log.lines)} lines")
    for kind, count in kinds.most_common(10):
        print(f"  {count:>5} x {kind[:200]}")
    verdict = (
        unanswered == 0
        and stats.rate_dropped == 0
        and not stats.disconnects
        and stats.duplicated == 0
        and stats.unexpected == 0
    )
    print(f"every command answered once and nobody disconnected: {'yes' if verdict else 'NO'}")


def inspect(views: list[PortalView]) -> None:
    """What the portal held before the first reload, after the first, after the last."""
    print("\n== what the portal holds (ls -l /proc/<portal>/fd, its threads, its children) ==")
    kinds = sorted({kind_of(t) for v in views for t in v.fds.values()})
    print("fds by kind: " + " | ".join(v.label for v in views))
    for kind in kinds:
        counts = [Counter(map(kind_of, v.fds.values()))[kind] for v in views]
        print(f"  {kind:<28} " + " -> ".join(str(c) for c in counts))
    for v in views:
        print(f"threads {v.label}: {dict(v.threads)}")
    for v in views:
        print(f"children {v.label}: {v.children}")
    last = views[-1]
    for other in views[:-1]:
        new = {fd: t for fd, t in last.fds.items() if other.fds.get(fd) != t}
        closed = {fd: t for fd, t in other.fds.items() if last.fds.get(fd) != t}
        print(
            f"{last.label} vs {other.label}: {len(new)} fds open now that were not (the same)"
            f" then; {len(closed)} open then and closed (or reused) since"
        )
        for fd, target in sorted(new.items())[:25]:
            print(f"  new fd {fd} -> {last.described.get(fd, target)}")
        if len(new) > 25:
            print(f"  ... and {len(new) - 25} more")
        # where the RSS went: mappings that are new or grew (from /proc/<portal>/smaps)
        total = sum(r for _, r in last.maps.values()) - sum(r for _, r in other.maps.values())
        changes = sorted(
            (
                (rss - other.maps.get(key, (0, 0))[1], key, size)
                for key, (size, rss) in last.maps.items()
            ),
            reverse=True,
        )
        gone = [other.maps[key][1] for key in other.maps if key not in last.maps]
        print(
            f"  smaps: Rss {total:+d} KiB in all; {len(gone)} mapping(s) gone (with"
            f" {sum(gone)} KiB of Rss); new or grown by >= 64 KiB of Rss (anonymous unless"
            " named):"
        )
        for delta, key, size in changes:
            if delta < 64:
                break
            start, perms, name = key
            was = other.maps.get(key)
            how = "new" if was is None else f"size {was[0]} ->"
            print(f"    {delta:+7d} KiB Rss  {start} {perms} {how} {size} KiB  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=100)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--gap", type=float, default=3.0, help="seconds of typing between reloads")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds before sampling /proc")
    parser.add_argument("--interval", type=float, default=0.0, help="a player's pause per command")
    parser.add_argument(
        "--max-rate",
        type=float,
        default=40.0,
        help="a player's most commands a second (the server's limit is 80)",
    )
    parser.add_argument("--embedded", action="store_true", help="the game in the portal process")
    parser.add_argument(
        "--control",
        action="store_true",
        help="send no SIGHUP: the same schedule and samples, to tell growth that comes"
        " from the reloads from growth that comes from the typing alone",
    )
    parser.add_argument("--pythonpath", help="put DIR first on the server's PYTHONPATH")
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="run a copy of trio_mud/ taken at the start (every reload loads the same code)",
    )
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on the whole run")
    trio.run(run, parser.parse_args())

"""Soak test: N telnet clients type for M minutes through reloads and a kill -9.

    python benchmarks/soak.py [--clients 500] [--minutes 10] [--reload-every 60]
                              [--kill-at 5] [--interval 2] [--snapshot]

Runs the real server (``python -m trio_mud``, process mode: a portal process
and a ``trio_mud.serverproc`` child that runs the game) on 127.0.0.1 with its
own temporary data directory; its stderr goes to a file under /tmp. N clients
each create an account, then each types ``look zq<client>x<seq>`` every
``--interval`` seconds (an open loop: a client does not wait for answers), so
that every answer (``You see no 'zq..' here.``) names the command it answers.

Every ``--reload-every`` seconds (the first at half that, so that reloads fall
between the once-a-minute samples) the portal gets SIGHUP: a hot reload onto a
fresh server process. At minute ``--kill-at`` the server process gets SIGKILL;
the portal starts a new one and replays what was unfinished. Each command must
be answered exactly once and no client may be disconnected.

Once a minute it prints the RSS and open file descriptors of the portal and of
the current server process, and the command counts (``pendng``: sent and not
answered yet; ``lost?``: of those, sent more than 30 s ago; ``cpu%``: over the
minute, or over its life for a server process younger than that; latency: of
the commands answered that minute, from sending to the answer's arrival, so a
command typed during a reload or restart includes the gap); at the end the totals and
a PASS/FAIL line against the targets: nothing lost, nothing duplicated, nobody
disconnected, RSS growth after the first minute under 5 % (portal and server),
file descriptors flat. The exit status is 0 whatever the verdict, unless the
harness itself broke. Password hashing is set cheap (argon2id t=1, 8 MiB).

``--snapshot`` runs a copy of ``trio_mud/`` taken at the start (put first on
PYTHONPATH), so that every reload loads the same code while the checkout is
being edited; without it the server runs from the checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
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
from dataclasses import dataclass
from pathlib import Path

import trio
from _procs import children_of, code_version, fd_count, machine

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")
#: Complete telnet sequences: IAC WILL/WONT/DO/DONT <option>, IAC SB ... IAC SE,
#: and two-byte commands (IAC GA, IAC NOP, IAC IAC, ...). What is left of an
#: IAC after this is an incomplete sequence at the end of what has arrived.
IAC_SEQUENCE = re.compile(rb"\xff(?:[\xfb-\xfe].|\xfa.*?\xff\xf0|[^\xfa-\xfe])", re.S)
ANSWER = re.compile(rb"You see no 'zq(\d+)x(\d+)' here\.")
CONNECTION_SCREEN = b"shows this screen again"
NOTICES = {
    "restarting": b"Server restarting...",
    "restarted": b"... Server restarted.",
    "restart failed": b"Server restart failed",
    "crash": b"The server stopped unexpectedly",
    "input dropped": b"cannot keep more of your input",
    "too fast": b"You entered commands too fast",
    "shutting down": b"The server is shutting down",
}
REPO = Path(__file__).resolve().parent.parent
LOST_AFTER = 30.0  # seconds without an answer after which a command counts as lost
FD_TOLERANCE = 2  # "flat": the last minute has at most this many more fds than the first
RSS_TARGET = 5.0  # per cent growth from minute 1 to the last minute


# -- /proc ------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    fields = proc_stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_age(pid: int) -> float | None:
    fields = proc_stat(pid)
    if fields is None:
        return None
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as uptime:
        return float(uptime.read().split()[0]) - started


def server_pids(portal: int) -> list[int]:
    """The portal's ``trio_mud.serverproc`` children, oldest first."""
    found = []
    for pid in children_of(portal):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"trio_mud.serverproc" not in cmdline.read():
                    continue
        except OSError:
            continue
        fields = proc_stat(pid)
        if fields is not None and fields[0] != "Z":
            found.append((int(fields[19]), pid))
    return [pid for _, pid in sorted(found)]


def read_bytes(path: Path) -> bytes:
    return path.read_bytes()


def take_snapshot() -> Path:
    """Copy the checkout's trio_mud/ to /tmp, so that every reload loads the same code
    even while the checkout is being edited; the directory's name ends with a hash."""
    parent = Path(tempfile.mkdtemp(prefix="soak-code-"))
    target = parent / "trio_mud"
    shutil.copytree(REPO / "trio_mud", target, ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted(target.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(target)).encode() + b"\0" + path.read_bytes())
    print(f"server code: a copy of {REPO / 'trio_mud'} in {target},"
          f" sha256 of its files {digest.hexdigest()[:16]}")  # fmt: skip
    return target


# -- bookkeeping ------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        self.duplicated = 0
        self.unexpected = 0
        self.out_of_order = 0
        self.disconnects: list[tuple[float, int, str]] = []
        self.send_errors = 0
        self.notices: Counter[str] = Counter()
        self.window: list[float] = []  # latencies of this minute
        self.latencies: list[float] = []  # all latencies
        self.closing = False  # the harness is shutting the server down
        self.t0 = 0.0


class Client:
    def __init__(self, index: int, stream: trio.SocketStream, stats: Stats) -> None:
        self.index = index
        self.stream = stream
        self.stats = stats
        self.raw = b""
        self.text = bytearray()  # complete lines while logging in
        self.pending: dict[int, float] = {}  # seq -> when sent
        self.done: set[int] = set()
        self.last_seq = -1
        self.seq = 0
        self.connected = True
        self.last_words = b""

    def feed(self, data: bytes) -> bytes:
        """Complete lines of text that arrived, telnet sequences removed."""
        raw = self.raw + data
        cut = -1
        if b"\xff" in raw:
            raw = IAC_SEQUENCE.sub(b"", raw)
            cut = raw.find(b"\xff")
        head = raw if cut < 0 else raw[:cut]
        end = head.rfind(b"\n")
        if end < 0:
            self.raw = raw
            return b""
        self.raw = raw[end + 1 :]
        return head[: end + 1]

    async def read_past(self, marker: bytes) -> None:
        while marker not in self.text:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError(f"closed while logging in: {bytes(self.text[-200:])!r}")
            self.text += self.feed(data)
        self.text.clear()

    def gone(self, why: str) -> None:
        if self.connected:
            self.connected = False
            if not self.stats.closing:
                when = trio.current_time() - self.stats.t0
                last = self.last_words.decode(errors="replace").strip()[-200:]
                self.stats.disconnects.append((when, self.index, f"{why}; last text: {last!r}"))

    async def reader(self) -> None:
        stats = self.stats
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    self.gone("EOF")
                    return
                text = self.feed(data)
                if not text:
                    continue
                self.last_words = text[-300:]
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
                    if seq < self.last_seq:
                        stats.out_of_order += 1
                    else:
                        self.last_seq = seq
                    stats.answered += 1
                    stats.window.append(now - sent)
                for name, marker in NOTICES.items():
                    if marker in text:
                        stats.notices[name] += text.count(marker)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.gone(f"read error {exc!r}")

    async def writer(self, start: float, end: float, interval: float) -> None:
        next_at = start
        while self.connected:
            await trio.sleep_until(next_at)
            if next_at >= end or not self.connected:
                return
            seq = self.seq
            self.seq += 1
            self.pending[seq] = trio.current_time()
            self.stats.sent += 1
            try:
                await self.stream.send_all(f"look zq{self.index}x{seq}\r\n".encode())
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.stats.send_errors += 1
                self.gone(f"write error {exc!r}")
                return
            next_at += interval


@dataclass
class Row:
    """One minute's sample."""

    minute: int
    portal_rss: int | None  # KiB
    portal_fds: int | None
    portal_cpu: float | None  # seconds, cumulative
    server_pid: int | None
    server_rss: int | None
    server_fds: int | None
    server_cpu: float | None
    sent: int
    answered: int
    pending: int
    late: int  # unanswered for more than LOST_AFTER seconds
    duplicated: int
    disconnects: int
    latency: str
    load: str
    portal_pct: float | None = None
    server_pct: float | None = None

    HEADER = (
        "min | portal  RSS   fds cpu% | server     RSS   fds cpu% |     sent answered"
        " pendng  lost?  dup  disc | latency ms      | load\n"
        "    |        MiB             |    pid     MiB            |                 "
        "                           | p50/p99/max     |"
    )

    def line(self) -> str:
        def text(value: object) -> str:
            return "-" if value is None else str(value)

        def cpu(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        return (
            f"{self.minute:>3} | {mib(self.portal_rss):>11} {text(self.portal_fds):>5}"
            f" {cpu(self.portal_pct):>4} | {text(self.server_pid):>6} {mib(self.server_rss):>7}"
            f" {text(self.server_fds):>5} {cpu(self.server_pct):>4} | {self.sent:>8}"
            f" {self.answered:>8} {self.pending:>6} {self.late:>6} {self.duplicated:>4}"
            f" {self.disconnects:>5} | {self.latency:<15} | {self.load}"
        )


# -- the run ----------------------------------------------------------------------------


def server_argv(data_dir: str, clients: int) -> list[str]:
    return [
        sys.executable, "-m", "trio_mud",
        "--set", "max_connections_per_address=100000",  # many clients on loopback
        "--set", "creation_throttle_limit=100000", "--set", "login_throttle_limit=100000",
        "--set", "game_prompt=",  # the same output as the figures measured before prompts
        "--no-web", "--telnet-port", "0",
        "--data-dir", data_dir, "--log-level", "INFO", "--idle-timeout", "0",
        "--set", "password_hash_time_cost=1", "--set", "password_hash_memory_kib=8192",
        "--set", f"connection_rate_burst={max(1000, clients * 2)}",
        "--set", f"max_connection_rate={max(1000, clients * 2)}",
    ]  # fmt: skip


async def start_server(
    argv: list[str], log_path: Path, code_dir: Path | None
) -> tuple[trio.Process, int]:
    """Start the portal (its server processes inherit its environment and cwd)."""
    env = dict(os.environ)
    cwd = None
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir.parent)  # ahead of the editable install
        cwd = code_dir.parent
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, env=env, cwd=cwd
        )
    finally:
        os.close(log_fd)
    with trio.fail_after(60):
        while not (match := LISTENING.search(read_bytes(log_path))):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited; see {log_path}")
            await trio.sleep(0.1)
    return process, int(match.group(1))


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def latency_text(values: list[float]) -> str:
    if not values:
        return "-"
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.0f}/{pct(ms, 0.99):.0f}/{max(ms):.0f}"


def growth(first: int | None, last: int | None) -> float | None:
    if not first or last is None:
        return None
    return (last - first) * 100 / first


async def run(args: argparse.Namespace) -> None:
    stats = Stats()
    print(
        f"soak: {args.clients} clients, {args.minutes:g} min, one command per client every "
        f"{args.interval:g} s (~{args.clients / args.interval:.0f} commands/s), SIGHUP every "
        f"{args.reload_every:g} s, SIGKILL of the server process at minute {args.kill_at:g}"
    )
    print(f"machine: {machine()}")
    print(f"code: {code_version(None)}")
    data_dir = tempfile.mkdtemp(prefix="soak-data-")
    code_dir = None
    if args.snapshot:
        code_dir = take_snapshot()
    else:
        print(f"server code: the checkout itself, {REPO} (reloads load what is there then)")
    log_path = Path(args.server_log or f"/tmp/soak-server-{time.strftime('%Y%m%d-%H%M%S')}.log")
    print(f"server stderr: {log_path}; data dir: {data_dir}", flush=True)
    process, port = await start_server(server_argv(data_dir, args.clients), log_path, code_dir)
    try:
        await soak(args, stats, process, port, log_path)
    finally:
        if process.poll() is None:  # the harness broke: leave nothing running
            for pid in server_pids(process.pid):
                os.kill(pid, signal.SIGKILL)
            process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
        if code_dir is not None:
            shutil.rmtree(code_dir.parent, ignore_errors=True)


async def soak(
    args: argparse.Namespace, stats: Stats, process: trio.Process, port: int, log_path: Path
) -> None:
    duration = args.minutes * 60
    portal = process.pid
    print(f"portal pid {portal}, telnet port {port}, server pid(s) {server_pids(portal)}")
    rng = random.Random(args.seed)
    clients: list[Client] = []
    login_failures: list[str] = []
    logged_in = trio.Event()
    go = trio.Event()
    events: list[str] = []
    rows: list[Row] = []

    def log_event(text: str) -> None:
        line = f"  [t={trio.current_time() - stats.t0:6.1f} s] {text}"
        events.append(line)
        print(line, flush=True)

    async def client_task(index: int, limit: trio.Semaphore) -> None:
        try:
            async with limit:
                with trio.fail_after(120):
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    client = Client(index, stream, stats)
                    await client.read_past(CONNECTION_SCREEN)
                    await stream.send_all(f"create Soak{index} soak-password-{index}\r\n".encode())
                    await client.read_past(b"Exits:")
        except (trio.TooSlowError, ConnectionError, OSError) as exc:
            login_failures.append(f"client {index}: {exc!r}")
            if len(clients) + len(login_failures) == args.clients:
                logged_in.set()
            return
        clients.append(client)
        if len(clients) + len(login_failures) == args.clients:
            logged_in.set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.reader)
            await go.wait()
            offset = rng.uniform(0, args.interval)
            await client.writer(stats.t0 + offset, stats.t0 + duration, args.interval)
            await trio.sleep_forever()  # the reader carries on until the end

    def sample(minute: int, last: Row | None) -> Row:
        now = trio.current_time()
        servers = server_pids(portal)
        server = servers[-1] if servers else None
        row = Row(
            minute=minute,
            portal_rss=proc_status_kib(portal, "VmRSS"),
            portal_fds=fd_count(portal),
            portal_cpu=cpu_seconds(portal),
            server_pid=server,
            server_rss=None if server is None else proc_status_kib(server, "VmRSS"),
            server_fds=None if server is None else fd_count(server),
            server_cpu=None if server is None else cpu_seconds(server),
            sent=stats.sent,
            answered=stats.answered,
            pending=sum(len(c.pending) for c in clients),
            late=sum(1 for c in clients for t in c.pending.values() if now - t > LOST_AFTER),
            duplicated=stats.duplicated,
            disconnects=len(stats.disconnects),
            latency=latency_text(stats.window),
            load=loadavg(),
        )
        stats.latencies.extend(stats.window)
        stats.window = []
        # CPU use over the minute; a server process younger than that: over its life
        if last is not None and row.portal_cpu is not None and last.portal_cpu is not None:
            row.portal_pct = (row.portal_cpu - last.portal_cpu) / 60 * 100
        if server is not None and row.server_cpu is not None:
            if last is not None and last.server_pid == server and last.server_cpu is not None:
                row.server_pct = (row.server_cpu - last.server_cpu) / 60 * 100
            elif age := process_age(server):
                row.server_pct = row.server_cpu / age * 100
        return row

    async def monitor() -> None:
        print(Row.HEADER, flush=True)
        last = None
        for minute in range(1, int(args.minutes) + 1):
            await trio.sleep_until(stats.t0 + minute * 60)
            row = sample(minute, last)
            rows.append(row)
            print(row.line(), flush=True)
            last = row

    async def reload_outcome(before: list[int]) -> None:
        with trio.move_on_after(20):
            while True:
                if len(now := server_pids(portal)) == 1 and now != before:
                    log_event(f"  reloaded: new server process {now[0]}")
                    return
                await trio.sleep(0.1)
        log_event(f"  no new server process 20 s after SIGHUP (now {server_pids(portal)})")

    async def signals() -> None:
        plan: list[tuple[float, str]] = []
        if args.reload_every > 0:
            at = args.reload_every / 2
            while at < duration - 5:
                plan.append((at, "reload"))
                at += args.reload_every
        if 0 < args.kill_at * 60 < duration:
            plan.append((args.kill_at * 60, "kill"))
        for at, what in sorted(plan):
            await trio.sleep_until(stats.t0 + at)
            if what == "reload":
                before = server_pids(portal)
                os.kill(portal, signal.SIGHUP)
                log_event(f"SIGHUP to the portal (pid {portal}); server was {before}")
                nursery.start_soon(reload_outcome, before)
                continue
            with trio.move_on_after(30):
                while True:  # two during a reload: kill once it is over
                    if len(servers := server_pids(portal)) == 1:
                        break
                    await trio.sleep(0.2)
            if len(servers) != 1:
                log_event(f"SIGKILL skipped: server processes {servers}")
                continue
            os.kill(servers[0], signal.SIGKILL)
            log_event(f"SIGKILL to the server process (pid {servers[0]})")
            with trio.move_on_after(30):
                while True:
                    if (after := server_pids(portal)) and after[-1] != servers[0]:
                        break
                    await trio.sleep(0.05)
            log_event(f"  the portal runs a new server process: {server_pids(portal)}")

    def watch_portal() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"the portal exited with {process.returncode}; see {log_path}")

    with trio.fail_after(duration + 900):  # bounded whatever happens
        async with trio.open_nursery() as nursery:
            limit = trio.Semaphore(args.login_concurrency)
            started = trio.current_time()
            for index in range(args.clients):
                nursery.start_soon(client_task, index, limit)
            with trio.fail_after(600):
                await logged_in.wait()
            login_time = trio.current_time() - started
            print(
                f"logged in {len(clients)} clients in {login_time:.1f} s"
                f" ({len(login_failures)} failed)",
                flush=True,
            )
            for failure in login_failures[:5]:
                print(f"  login failure: {failure}")
            stats.t0 = trio.current_time()
            go.set()
            async with trio.open_nursery() as timeline:
                timeline.start_soon(monitor)
                timeline.start_soon(signals)
                while trio.current_time() < stats.t0 + duration + 1:
                    watch_portal()
                    await trio.sleep(1)
            # every writer has stopped; wait for the outstanding answers
            deadline = trio.current_time() + args.drain_timeout
            while any(c.pending for c in clients) and trio.current_time() < deadline:
                watch_portal()
                await trio.sleep(0.1)
            drained = trio.current_time() - stats.t0 - duration
            stats.latencies.extend(stats.window)
            final_servers = server_pids(portal)
            stats.closing = True
            os.kill(portal, signal.SIGINT)
            stopping = trio.current_time()
            with trio.move_on_after(30) as waited:
                await process.wait()
            if waited.cancelled_caught:
                print("the server did not stop within 30 s of SIGINT: SIGKILL")
                process.kill()
                await process.wait()
            stop_time = trio.current_time() - stopping
            nursery.cancel_scope.cancel()
    for client in clients:
        await client.stream.aclose()
    leftovers = [pid for pid in final_servers if proc_stat(pid) is not None]
    report(args, stats, clients, rows, events, login_failures, log_path, process.returncode)
    print(
        f"drain after the last command: {drained:.1f} s; server stopped {stop_time:.1f} s"
        f" after SIGINT, exit status {process.returncode}"
    )
    if leftovers:
        print(f"server process(es) {leftovers} still running after the portal exited")


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return loadavg.read().split()[0]
    except OSError:
        return "-"


def report(
    args: argparse.Namespace,
    stats: Stats,
    clients: list[Client],
    rows: list[Row],
    events: list[str],
    login_failures: list[str],
    log_path: Path,
    exit_status: int | None,
) -> None:
    lost = sum(len(c.pending) for c in clients)
    lost_clients = sum(1 for c in clients if c.pending)
    print("\n== totals ==")
    print(f"machine: {machine()}")
    print(f"clients logged in: {len(clients)} of {args.clients}")
    print(
        f"commands sent {stats.sent}, answered once {stats.answered},"
        f" LOST {lost} (at {lost_clients} clients), DUPLICATED {stats.duplicated},"
        f" answers to no command sent {stats.unexpected},"
        f" answered out of order {stats.out_of_order}"
    )
    print(f"clients disconnected: {len(stats.disconnects)}; send errors: {stats.send_errors}")
    for when, index, why in stats.disconnects[:10]:
        print(f"  t={when:.1f} s client {index}: {why}")
    if stats.latencies:
        print(f"latency over the run (ms): {latency_text(stats.latencies)} (p50/p99/max)")
    reloads = sum(1 for e in events if "SIGHUP" in e)
    kills = sum(1 for e in events if "SIGKILL to" in e)
    notices = ", ".join(f"{name} {count}" for name, count in sorted(stats.notices.items()))
    print(
        f"reloads sent {reloads}, kills sent {kills}; notices seen by clients: {notices or '-'}"
        f" (expected: restarting {reloads * len(clients)}, restarted"
        f" {(reloads + kills) * len(clients)}, crash {kills * len(clients)})"
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"harness CPU: {usage.ru_utime + usage.ru_stime:.0f} s, max RSS "
        f"{usage.ru_maxrss / 1024:.0f} MiB"
    )

    verdicts: list[tuple[str, bool]] = [
        (f"lost {lost} == 0", lost == 0),
        (f"duplicated {stats.duplicated} == 0", stats.duplicated == 0),
        (f"disconnected {len(stats.disconnects)} == 0", not stats.disconnects),
        (f"login failures {len(login_failures)} == 0", not login_failures),
        (f"unexpected answers {stats.unexpected} == 0", stats.unexpected == 0),
    ]
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        print("\n".join([Row.HEADER, first.line(), last.line()]))
        for who, rss, fds in (
            ("portal", (first.portal_rss, last.portal_rss), (first.portal_fds, last.portal_fds)),
            ("server", (first.server_rss, last.server_rss), (first.server_fds, last.server_fds)),
        ):
            g = growth(*rss)
            shown = "-" if g is None else f"{g:+.1f} %"
            print(
                f"{who} RSS: minute 1 {mib(rss[0])} MiB, minute {last.minute}"
                f" {mib(rss[1])} MiB, growth {shown}"
            )
            verdicts.append(
                (f"{who} RSS growth {shown} < {RSS_TARGET:g} %", g is not None and g < RSS_TARGET)
            )
            print(f"{who} fds: minute 1 {fds[0]}, minute {last.minute} {fds[1]}")
            flat = fds[0] is not None and fds[1] is not None and fds[1] - fds[0] <= FD_TOLERANCE
            verdicts.append(
                (f"{who} fds {fds[0]} -> {fds[1]} flat (+{FD_TOLERANCE} allowed)", flat)
            )
    else:
        verdicts.append(("at least 2 minutes sampled for RSS and fds", False))
    print(f"portal exit status after SIGINT: {exit_status}")
    log_lines = read_bytes(log_path).decode(errors="replace").splitlines()
    kinds: Counter[str] = Counter()
    tracebacks = 0
    for line in log_lines:
        if "Traceback (most recent call last)" in line:
            tracebacks += 1
        for level in (" WARNING ", " ERROR ", " CRITICAL "):
            if level in line:  # count each message without its time stamp and numbers
                kinds[level.strip() + " " + re.sub(r"\d+", "N", line.split(level, 1)[1])] += 1
    print(f"server log {log_path}: {len(log_lines)} lines, {tracebacks} traceback(s)")
    for kind, count in kinds.most_common(15):
        print(f"  {count:>5} x {kind[:240]}")
    failed = [text for text, ok in verdicts if not ok]
    print("targets: " + "; ".join(f"{text}: {'ok' if ok else 'NO'}" for text, ok in verdicts))
    print("RESULT: " + ("PASS" if not failed else "FAIL (" + "; ".join(failed) + ")"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument(
        "--reload-every", type=float, default=60, help="seconds between SIGHUPs; 0 for none"
    )
    parser.add_argument(
        "--kill-at", type=float, default=5, help="minute of the SIGKILL of the server; 0 for none"
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between one client's commands"
    )
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--login-concurrency", type=int, default=50)
    parser.add_argument("--server-log", help="where the server's stderr goes (default /tmp/...)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="run a copy of trio_mud/ taken at the start (the checkout may change meanwhile)",
    )
    trio.run(run, parser.parse_args())

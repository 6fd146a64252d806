"""Memory footprint: RSS per connection, the first-login jump, 10,000 connections.

    python benchmarks/footprint.py [--part a] [--part b] [--part c] [--pythonpath DIR]
                                   [--snapshot]

Each part runs the real server (``python -m trio_mud --no-web --telnet-port 0``)
in a child process on 127.0.0.1, with a temporary data directory and its
stderr in a file under /tmp. RSS is VmRSS from /proc/<pid>/status of the
portal and of its server process (its child whose command line contains
``trio_mud.serverproc``); it is read only once every client has its answer,
every 0.25 s until the last readings agree (within 64 KiB), and the median of
those is taken.

Clients connect from loopback source addresses 127.0.0.2-254 (bound before
connect), each address paced under the server's default per-address limit
(a burst of 20, then 4 a second; the server allows 5), so that no run needs
to change the connection rate limit.

a) Marginal RSS per connection, (RSS at 2N - RSS at N) / N with N = 1,000:
   idle unauthenticated telnet connections (each has read the whole
   connection screen), and logged-in players (process mode: portal, server
   and both; embedded mode). Players log in with cheap argon2id (t=1, 8 MiB),
   at most 100 at a time, and then walk away from the start room so that the
   six rooms around it hold ~N/3 players each (an arrival is announced to
   everyone in the room).
b) The first-login jump: the server process's RSS (and VmHWM, threads,
   smaps_rollup, and its largest anonymous mappings) before any login, after
   1, 10 and 100 logins (``create``, one argon2id hash each; the 10 and the
   100 are sent at once), and after 15 s idle. With the default argon2id
   settings, with MALLOC_ARENA_MAX=2 in the environment of the portal (which
   its server processes inherit), and with cheap argon2id (t=1, 8 MiB); then
   cheap with MALLOC_ARENA_MAX=2, and cheap with glibc's mmap threshold fixed
   at its default 128 KiB (MALLOC_MMAP_THRESHOLD_=131072).
c) 10,000 connections on defaults: ``python -m trio_mud --no-web
   --telnet-port 0 --data-dir DIR`` and nothing else. Every client must read
   the whole connection screen, then send ``who`` and read ``Players online``.

``--pythonpath DIR`` puts DIR first on the PYTHONPATH of the server processes
(and runs them in a temporary directory, so that the current directory does
not shadow it): ``--pythonpath /work/wt9`` measures the code in /work/wt9.
``--snapshot`` runs a copy of that trio_mud/ taken at the start.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from _procs import children_of, code_version, fd_count, machine, proc_state, take_snapshot

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")
#: The end of the connection screen: its last text line and the rule under it.
SCREEN_END = re.compile(rb'"look" shows this screen again\.\r?\n=+\r?\n')
#: What the whole connection screen holds, before its end.
SCREEN_PARTS = (b"Welcome to", b"connect <name> <password>", b"create <name> <password>")
REFUSALS = (b"Too many connections from your address", b"The server is full")
CHEAP_ARGON2 = ("--set", "password_hash_time_cost=1", "--set", "password_hash_memory_kib=8192")
PASSWORD = "footprint-password"
#: Where a player walks after logging in, away from the start room (the square).
PATHS = (("north",), ("east",), ("west",), ("south",), ("north", "north"), ("east", "up"))
TARGET_IDLE_KIB = 8.0  # per unauthenticated telnet connection, portal
TARGET_PLAYER_KIB = 16.0  # per logged-in telnet player, portal and server together


# -- /proc -------------------------------------------------------------------------------


def status(pid: int) -> dict[str, int]:
    """Numeric fields of /proc/<pid>/status (kB figures in KiB), or {} if it is gone."""
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


def server_pids(portal: int) -> list[int]:
    """The portal's live ``trio_mud.serverproc`` children."""
    found = []
    for pid in children_of(portal):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"trio_mud.serverproc" not in cmdline.read():
                    continue
        except OSError:
            continue
        if proc_state(pid) not in (None, "Z"):
            found.append(pid)
    return found


def smaps_rollup(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as lines:
            for line in lines:
                name, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    fields[name] = int(parts[0])
    except OSError:
        pass
    return fields


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    name: str
    fields: dict[str, int]

    @property
    def size_kib(self) -> int:
        return (self.end - self.start) // 1024

    @property
    def anonymous(self) -> bool:
        return not self.name or self.name.startswith("[")

    def text(self) -> str:
        return (
            f"{self.start:012x}-{self.end:012x} {self.perms} size {self.size_kib:>8} KiB"
            f"  Rss {self.fields.get('Rss', 0):>7} KiB  Anonymous"
            f" {self.fields.get('Anonymous', 0):>7} KiB  {self.name or '(anonymous)'}"
        )


def smaps(pid: int) -> list[Mapping]:
    mappings: list[Mapping] = []
    header = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
    try:
        with open(f"/proc/{pid}/smaps") as lines:
            for line in lines:
                match = header.match(line)
                if match:
                    start, end, perms, name = match.groups()
                    mappings.append(Mapping(int(start, 16), int(end, 16), perms, name, {}))
                elif mappings:
                    name, _, value = line.partition(":")
                    parts = value.split()
                    if len(parts) == 2 and parts[1] == "kB":
                        mappings[-1].fields[name] = int(parts[0])
    except OSError:
        pass
    return mappings


@dataclass
class Reading:
    """One process's figures, settled."""

    rss: int  # KiB, median of the stable window
    hwm: int
    anon: int
    threads: int
    fds: int | None
    stable: bool
    waited: float


async def settle(
    pids: dict[str, int], *, window: int = 5, tolerance: int = 64, limit: float = 30.0
) -> dict[str, Reading]:
    """Read RSS every 0.25 s until the last ``window`` readings of every process lie
    within ``tolerance`` KiB; the median of those (bounded by ``limit`` seconds)."""
    started = trio.current_time()
    history: dict[str, list[dict[str, int]]] = {name: [] for name in pids}
    while True:
        for name, pid in pids.items():
            history[name].append(status(pid))
        stable = all(
            len(h) >= window
            and max(s.get("VmRSS", 0) for s in h[-window:])
            - min(s.get("VmRSS", 0) for s in h[-window:])
            <= tolerance
            for h in history.values()
        )
        waited = trio.current_time() - started
        if stable or waited > limit:
            break
        await trio.sleep(0.25)
    readings = {}
    for name, pid in pids.items():
        last = history[name][-window:]
        readings[name] = Reading(
            rss=int(statistics.median(s.get("VmRSS", 0) for s in last)),
            hwm=last[-1].get("VmHWM", 0),
            anon=last[-1].get("RssAnon", 0),
            threads=last[-1].get("Threads", 0),
            fds=fd_count(pid),
            stable=stable,
            waited=waited,
        )
    return readings


# -- the server ----------------------------------------------------------------------------


def server_env(pythonpath: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [pythonpath, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
    env.update(extra or {})
    return env


def where_trio_mud(env: dict[str, str], cwd: str) -> str:
    """The trio_mud a server started with ``env`` in ``cwd`` imports."""
    found = subprocess.run(
        [sys.executable, "-c", "import trio_mud; print(trio_mud.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    return (found.stdout or found.stderr).strip()


class Server:
    """``python -m trio_mud`` in a child process, its stderr in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.workdir = tempfile.mkdtemp(prefix="footprint-")
        self.data_dir = os.path.join(self.workdir, "data")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        self.log_path = Path(f"/tmp/footprint-{slug}-{stamp}-{os.getpid()}.log")
        self.process: trio.Process | None = None
        self.port = 0

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "trio_mud",
        "--set", "max_connections_per_address=100000",  # many clients on loopback
        "--set", "creation_throttle_limit=100000", "--set", "login_throttle_limit=100000",
        "--set", "game_prompt=",  # the same output as the figures measured before prompts
        "--no-web", "--telnet-port", "0",
                "--data-dir", self.data_dir, *self.args]  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")

    async def start(self) -> None:
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.process = await trio.lowlevel.open_process(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=self.env,
                cwd=self.workdir,  # not the checkout: it would shadow --pythonpath
            )
        finally:
            os.close(log_fd)
        with trio.fail_after(60):
            while not (match := LISTENING.search(self.log_path.read_bytes())):
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited:\n{self.log_text()[-2000:]}")
                await trio.sleep(0.05)
        self.port = int(match.group(1))

    def pids(self) -> dict[str, int]:
        found = {"portal": self.pid}
        servers = server_pids(self.pid)
        if servers:
            found["server"] = max(servers)
        return found

    async def stop(self) -> None:
        if self.process is None:
            return
        servers = server_pids(self.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with trio.move_on_after(30):
                await self.process.wait()
            if self.process.poll() is None:
                print(f"  ({self.name}: no exit 30 s after SIGINT; SIGKILL)")
                self.process.kill()
                await self.process.wait()
        for pid in servers:
            if proc_state(pid) not in (None, "Z"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- clients ---------------------------------------------------------------------------


class Refused(Exception):
    """The server refused the connection (its one line says why)."""


class Sources:
    """Loopback source addresses 127.0.0.2-254, each paced as a token bucket."""

    def __init__(self, rate: float = 4.0, burst: int = 20) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens: dict[int, float] = {}
        self.stamp: dict[int, float] = {}
        self.locks: dict[int, trio.Lock] = {}

    async def _take(self, x: int) -> None:
        lock = self.locks.setdefault(x, trio.Lock())
        async with lock:
            while True:
                now = trio.current_time()
                tokens = min(
                    self.burst,
                    self.tokens.get(x, self.burst) + (now - self.stamp.get(x, now)) * self.rate,
                )
                self.stamp[x] = now
                if tokens >= 1:
                    self.tokens[x] = tokens - 1
                    return
                self.tokens[x] = tokens
                await trio.sleep((1 - tokens) / self.rate)

    async def connect(self, port: int, index: int) -> trio.SocketStream:
        x = 2 + index % 253
        await self._take(x)
        sock = trio.socket.socket()
        try:
            await sock.bind((f"127.0.0.{x}", 0))
            await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)


class Client:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def read_until(self, pattern: re.Pattern[bytes] | bytes) -> bytes:
        """Read until ``pattern`` (and, for bytes, the end of its line); what came
        up to there is consumed and returned."""
        while True:
            if isinstance(pattern, bytes):
                at = self.buffer.find(pattern)
                end = self.buffer.find(b"\n", at) + 1 if at >= 0 else 0
            else:
                match = pattern.search(self.buffer)
                end = match.end() if match else 0
            if end > 0:
                text = bytes(self.buffer[:end])
                del self.buffer[:end]
                return text
            data = await self.stream.receive_some(65536)
            if not data:
                for refusal in REFUSALS:
                    if refusal in self.buffer:
                        raise Refused(refusal.decode())
                raise ConnectionError(f"EOF; last bytes {bytes(self.buffer[-120:])!r}")
            self.buffer += data

    async def read_screen(self) -> None:
        text = await self.read_until(SCREEN_END)
        missing = [part for part in SCREEN_PARTS if part not in text]
        if missing:
            raise ConnectionError(f"connection screen without {missing!r}")

    async def command(self, line: str, answer: bytes) -> None:
        await self.stream.send_all(line.encode() + b"\r\n")
        await self.read_until(answer)


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def gather(count: int, limit: int, job: Callable[[int], Awaitable[None]]) -> float:
    """Run ``job(0..count-1)``, at most ``limit`` at once; the seconds it took."""
    started = trio.current_time()
    semaphore = trio.Semaphore(limit)

    async def one(index: int) -> None:
        async with semaphore:
            await job(index)

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    return trio.current_time() - started


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


# -- part a: RSS per connection -------------------------------------------------------------


async def per_connection(
    args: argparse.Namespace, sources: Sources, kind: str, mode: str
) -> dict[str, float]:
    """(RSS at 2N - RSS at N) / N, in KiB, per process (and both together)."""
    n = args.step
    extra = ["--embedded"] if mode == "embedded" else []
    server = Server(f"a-{kind}-{mode}", [*CHEAP_ARGON2, *extra], server_env(args.pythonpath))
    clients: list[Client] = []
    await server.start()
    print(f"\n[a] {kind} telnet connections, {mode} mode; server log {server.log_path}")
    try:

        async def join(index: int) -> None:
            client = Client(await sources.connect(server.port, index))
            clients.append(client)
            await client.read_screen()
            if kind == "players":
                await client.stream.send_all(f"create Fp{index} {PASSWORD}\r\n".encode())
                await client.read_until(b"Exits:")
                for step in PATHS[index % len(PATHS)]:
                    await client.command(step, b"Exits:")

        empty = await settle(server.pids())
        print(
            "      0 connections: "
            + "  ".join(
                f"{name} RSS {mib(r.rss)} (threads {r.threads})" for name, r in empty.items()
            )
        )
        readings: list[dict[str, Reading]] = []
        for batch in range(2):
            with trio.fail_after(args.phase_timeout):
                took = await gather(n, 100, lambda i, b=batch: join(b * n + i))
            got = await settle(server.pids())
            readings.append(got)
            shown = "  ".join(
                f"{name} RSS {mib(r.rss)} (threads {r.threads}, fds {r.fds})"
                for name, r in got.items()
            )
            print(
                f"  {len(clients):>5} connections ({took:.1f} s for this {n});"
                f" settled in {got['portal'].waited:.1f} s"
                f"{'' if got['portal'].stable else ' (NOT stable)'}: {shown}"
            )
        result: dict[str, float] = {}
        for name in readings[0]:
            if name in readings[1]:
                result[name] = (readings[1][name].rss - readings[0][name].rss) / n
        if "server" in result:
            result["both"] = result["portal"] + result["server"]
        return result
    finally:
        for client in clients:
            await client.stream.aclose()
        await server.stop()


async def part_a(args: argparse.Namespace, sources: Sources) -> None:
    n = args.step
    print(f"\n== a) marginal RSS per connection: (RSS at {2 * n} - RSS at {n}) / {n} ==")
    idle = await per_connection(args, sources, "idle", "process")
    players = await per_connection(args, sources, "players", "process")
    embedded = await per_connection(args, sources, "players", "embedded")

    def verdict(value: float, target: float) -> str:
        return f"target <= {target:g} KiB: {'ok' if value <= target else 'OVER'}"

    print(f"\n  results (KiB per connection, from {n} to {2 * n}):")
    print(
        f"  idle unauthenticated, portal:          {idle['portal']:7.2f} KiB"
        f"   {verdict(idle['portal'], TARGET_IDLE_KIB)}"
    )
    if "server" in idle:
        print(f"  idle unauthenticated, server process:  {idle['server']:7.2f} KiB   (information)")
    print(f"  logged-in player, process mode, portal: {players['portal']:7.2f} KiB")
    print(f"  logged-in player, process mode, server: {players.get('server', 0):7.2f} KiB")
    both = players.get("both", players["portal"])
    print(
        f"  logged-in player, process mode, both:   {both:7.2f} KiB"
        f"   {verdict(both, TARGET_PLAYER_KIB)}"
    )
    print(
        f"  logged-in player, embedded mode:        {embedded['portal']:7.2f} KiB"
        f"   {verdict(embedded['portal'], TARGET_PLAYER_KIB)}"
    )


# -- part b: the first-login jump -----------------------------------------------------------


def mapping_lines(before: list[Mapping], after: list[Mapping], top: int) -> list[str]:
    """The largest anonymous mappings by Rss after, and what is new or grew since before."""
    old = {(m.start, m.end): m for m in before}
    lines = [f"    largest anonymous mappings by Rss (top {top}):"]
    anonymous = sorted(
        (m for m in after if m.anonymous), key=lambda m: m.fields.get("Rss", 0), reverse=True
    )
    for m in anonymous[:top]:
        mark = "" if (m.start, m.end) in old else "  [new]"
        lines.append(f"      {m.text()}{mark}")
    grown = []
    for m in after:
        if not m.anonymous:
            continue
        was = old.get((m.start, m.end))
        delta = m.fields.get("Rss", 0) - (was.fields.get("Rss", 0) if was else 0)
        if delta >= 256:
            grown.append((delta, m, was is None))
    grown.sort(key=lambda g: g[0], reverse=True)
    total = sum(delta for delta, _, _ in grown)
    lines.append(
        f"    anonymous mappings new or grown by >= 256 KiB Rss since the previous step:"
        f" {len(grown)}, +{total} KiB in all"
    )
    for delta, m, new in grown[:top]:
        lines.append(f"      +{delta:>7} KiB {'new  ' if new else 'grown'} {m.text()}")
    sizes = Counter(
        m.size_kib for m in after if m.anonymous and m.size_kib >= 1024 and m.perms != "---p"
    )
    lines.append(
        "    anonymous rw mappings >= 1 MiB by size (KiB x count): "
        + ", ".join(f"{size} x {count}" for size, count in sorted(sizes.items()))
    )
    return lines


async def first_logins(
    args: argparse.Namespace, sources: Sources, name: str, settings: tuple[str, ...], env: dict
) -> list[tuple[str, dict[str, Reading]]]:
    server = Server(f"b-{name}", list(settings), server_env(args.pythonpath, env))
    clients: list[Client] = []
    await server.start()
    print(f"\n[b] {name}: server log {server.log_path}")
    steps: list[tuple[str, dict[str, Reading]]] = []
    try:
        pids = server.pids()
        if "server" not in pids:
            print("  no server process (embedded?)")
            return steps

        async def connect(index: int) -> None:
            client = Client(await sources.connect(server.port, index))
            clients.append(client)
            await client.read_screen()

        async def log_in(client: Client, index: int) -> None:
            await client.stream.send_all(f"create Fl{index} {PASSWORD}\r\n".encode())
            await client.read_until(b"Exits:")

        with trio.fail_after(args.phase_timeout):
            await gather(args.logins[-1], 100, connect)
        maps = smaps(pids["server"])

        async def step(label: str, *, show_maps: bool) -> None:
            nonlocal maps
            got = await settle(pids)
            steps.append((label, got))
            s, p = got["server"], got["portal"]
            roll = smaps_rollup(pids["server"])
            print(
                f"  {label:<28} server VmRSS {s.rss:>7} KiB  VmHWM {s.hwm:>7} KiB"
                f"  RssAnon {s.anon:>7} KiB  Threads {s.threads:>3}  fds {s.fds}"
                f" | portal VmRSS {p.rss:>7} KiB  Threads {p.threads}"
                f"{'' if s.stable else '  (NOT stable)'}"
            )
            print(
                "    smaps_rollup: "
                + "  ".join(
                    f"{key} {roll.get(key, 0)}"
                    for key in ("Rss", "Pss", "Anonymous", "Private_Dirty", "Shared_Clean")
                )
                + " (KiB)"
            )
            now = smaps(pids["server"])
            if show_maps:
                for line in mapping_lines(maps, now, args.top_mappings):
                    print(line)
            maps = now

        print(f"  {len(clients)} connections open at the connection screen")
        await step("before any login", show_maps=False)
        done = 0
        for target in args.logins:
            started = trio.current_time()
            with trio.fail_after(args.phase_timeout):
                async with trio.open_nursery() as nursery:
                    for index in range(done, target):
                        nursery.start_soon(log_in, clients[index], index)
            took = trio.current_time() - started
            print(f"  ({target - done} login(s) answered in {took:.2f} s)")
            done = target
            await step(f"after {target} login(s)", show_maps=target in args.logins[:1])
            if target == args.logins[0] or target == args.logins[-1]:
                await trio.sleep(args.idle_wait)
                await step(f"after {target} + {args.idle_wait:g} s idle", show_maps=False)
        await step("end (all logins)", show_maps=True)
        return steps
    finally:
        for client in clients:
            await client.stream.aclose()
        await server.stop()


async def part_b(args: argparse.Namespace, sources: Sources) -> None:
    logins = ", ".join(str(n) for n in args.logins)
    print(f"\n== b) the first-login jump: server process RSS before and after {logins} logins ==")
    variants = [
        ("default argon2id (t=3, 64 MiB, 4 at once)", (), {}),
        ("default argon2id, MALLOC_ARENA_MAX=2", (), {"MALLOC_ARENA_MAX": "2"}),
        ("cheap argon2id (t=1, 8 MiB)", CHEAP_ARGON2, {}),
        # two more, to see which malloc setting the cheap case responds to
        ("cheap argon2id, MALLOC_ARENA_MAX=2", CHEAP_ARGON2, {"MALLOC_ARENA_MAX": "2"}),
        (
            "cheap argon2id, MALLOC_MMAP_THRESHOLD_=131072 (fixed)",
            CHEAP_ARGON2,
            {"MALLOC_MMAP_THRESHOLD_": "131072"},
        ),
    ]
    results = []
    for name, settings, env in variants:
        results.append((name, await first_logins(args, sources, name, settings, env)))
    print("\n  summary: server process VmRSS (KiB), and the change from 'before any login'")
    for name, steps in results:
        if not steps:
            continue
        base = steps[0][1]["server"].rss
        cells = "  ".join(
            f"{label}: {r['server'].rss} ({r['server'].rss - base:+d}, threads"
            f" {r['server'].threads})"
            for label, r in steps[1:]
        )
        print(f"  {name}: before {base}; {cells}")


# -- part c: 10,000 connections on defaults -------------------------------------------------


@dataclass
class Tally:
    connected: int = 0
    screens: int = 0
    answered: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # refusals, every attempt
    failed: Counter[str] = field(default_factory=Counter)  # clients that gave up, why


async def part_c(args: argparse.Namespace, sources: Sources) -> None:
    n = args.connections
    print(f"\n== c) {n} telnet connections, server on defaults ==")
    server = Server("c-defaults", [], server_env(args.pythonpath))
    print(f"  server: {' '.join(server.argv)}")
    await server.start()
    print(f"  server log {server.log_path}")
    for line in server.log_text().splitlines():
        if "max_connections" in line:
            print(f"  log: {line}")
    empty = await settle(server.pids())
    for name, r in empty.items():
        print(
            f"  before any connection: {name} VmRSS {mib(r.rss)}, fds {r.fds}, threads {r.threads}"
        )
    tally = Tally()
    clients: list[Client] = []
    finished = trio.Event()
    count = 0
    times: dict[str, float] = {}
    started = trio.current_time()

    def mark(name: str, value: int) -> None:
        if value == n:
            times[name] = trio.current_time() - started

    async def connect_and_read_screen(index: int) -> Client:
        """Connect until admitted (3 attempts, 1 s apart); the client has the screen."""
        for attempt in range(1, 4):
            client = Client(await sources.connect(server.port, index))
            tally.connected += 1
            try:
                await client.read_screen()
                return client
            except Refused as exc:
                tally.connected -= 1
                tally.refused[str(exc)] += 1
                await client.stream.aclose()
                if attempt == 3:
                    raise
                await trio.sleep(1)
        raise AssertionError("unreachable")

    async def one(index: int) -> None:
        nonlocal count
        try:
            client = await connect_and_read_screen(index)
            clients.append(client)
            mark("connected", tally.connected)
            tally.screens += 1
            mark("screens", tally.screens)
            await client.command("who", b"Players online")
            tally.answered += 1
            mark("answered", tally.answered)
        except (OSError, ConnectionError, trio.BrokenResourceError, Refused) as exc:
            code = getattr(exc, "errno", None)
            kind = errno.errorcode.get(code, "") if code else ""
            tally.failed[f"{type(exc).__name__} {kind} {exc}".strip()[:160]] += 1
        finally:
            count += 1
            if count == n:
                finished.set()

    async def progress() -> None:
        while True:
            await trio.sleep(10)
            st = status(server.pid)
            print(
                f"  t={trio.current_time() - started:5.0f} s: connected {tally.connected},"
                f" screens {tally.screens}, who answered {tally.answered}, refused"
                f" {sum(tally.refused.values())}, failed {sum(tally.failed.values())};"
                f" portal RSS {mib(st.get('VmRSS', 0))}, fds {fd_count(server.pid)}",
                flush=True,
            )

    try:
        with trio.move_on_after(args.c_timeout) as bounded:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress)
                for index in range(n):
                    nursery.start_soon(one, index)
                await finished.wait()
                nursery.cancel_scope.cancel()
        elapsed = trio.current_time() - started
        if bounded.cancelled_caught:
            print(f"  STOPPED at the {args.c_timeout:g} s bound")
        got = await settle(server.pids())
        print(f"\n  connections attempted: {n}; time taken {elapsed:.1f} s")
        print(
            f"  connected {tally.connected} ({times.get('connected', float('nan')):.1f} s),"
            f" got the whole screen {tally.screens}"
            f" ({times.get('screens', float('nan')):.1f} s), answered `who`"
            f" {tally.answered} ({times.get('answered', float('nan')):.1f} s)"
        )
        print(
            f"  refusals (a refused client retries after 1 s, 3 attempts at most):"
            f" {sum(tally.refused.values())}"
        )
        for kind, number in tally.refused.most_common():
            print(f"    {number} x {kind}")
        print(f"  clients that failed: {sum(tally.failed.values())}")
        for kind, number in tally.failed.most_common(10):
            print(f"    {number} x {kind}")
        for name, r in got.items():
            print(
                f"  {name}: VmRSS {mib(r.rss)} (VmHWM {mib(r.hwm)}), fds {r.fds},"
                f" threads {r.threads}{'' if r.stable else ' (NOT stable)'}"
            )
        if "server" in got:
            print(f"  portal + server: {mib(got['portal'].rss + got['server'].rss)}")
        opened = max(1, tally.screens)
        for name, r in got.items():
            print(
                f"  {name} RSS growth from no connection to {tally.screens}:"
                f" {mib(r.rss - empty[name].rss)}, {(r.rss - empty[name].rss) / opened:.1f} KiB"
                " per connection"
            )
    finally:
        for client in clients:
            await client.stream.aclose()
        await server.stop()
    lines = server.log_text().splitlines()
    notable = [
        line
        for line in lines
        if any(word in line for word in (" WARNING ", " ERROR ", " CRITICAL ", "refused"))
        or "Traceback" in line
    ]
    kinds = Counter(re.sub(r"\d+", "N", line.split(": ", 1)[-1])[:200] for line in notable)
    print(f"  server log: {len(lines)} lines, {len(notable)} warning/error/refusal lines")
    for kind, number in kinds.most_common(15):
        print(f"    {number} x {kind}")


# -- main ----------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    limit = raise_file_limit()
    print(f"footprint: parts {', '.join(args.part)}; {machine()}")
    print(f"client RLIMIT_NOFILE soft limit {limit}")
    print(f"code: {code_version(args.pythonpath)}")
    snapshot = None
    if args.snapshot:
        snapshot = args.pythonpath = take_snapshot(args.pythonpath)
        print(f"server code: a copy of it in {snapshot} (--snapshot)")
    probe = tempfile.mkdtemp(prefix="footprint-probe-")
    print(f"server code: trio_mud from {where_trio_mud(server_env(args.pythonpath), probe)}")
    os.rmdir(probe)
    try:
        await run_parts(args)
    finally:
        if snapshot:
            shutil.rmtree(snapshot, ignore_errors=True)


async def run_parts(args: argparse.Namespace) -> None:
    sources = Sources()
    started = time.perf_counter()
    with trio.fail_after(args.timeout):
        if "a" in args.part:
            await part_a(args, sources)
        if "b" in args.part:
            await part_b(args, sources)
        if "c" in args.part:
            await part_c(args, sources)
    print(f"\nfootprint: done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", action="append", choices=["a", "b", "c"])
    parser.add_argument("--pythonpath", help="put DIR first on the servers' PYTHONPATH")
    parser.add_argument(
        "--snapshot", action="store_true", help="run a copy of trio_mud/ taken at the start"
    )
    parser.add_argument("--step", type=int, default=1000, help="a: N (measures N to 2N)")
    parser.add_argument(
        "--logins", default="1,10,100", help="b: login counts, ascending (default 1,10,100)"
    )
    parser.add_argument("--idle-wait", type=float, default=15.0, help="b: idle seconds")
    parser.add_argument("--top-mappings", type=int, default=10)
    parser.add_argument("--connections", type=int, default=10_000, help="c: how many")
    parser.add_argument("--c-timeout", type=float, default=600.0, help="c: bound in seconds")
    parser.add_argument("--phase-timeout", type=float, default=600.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="bound on the whole run")
    arguments = parser.parse_args()
    arguments.part = sorted(set(arguments.part or ["a", "b", "c"]))
    arguments.logins = [int(x) for x in arguments.logins.split(",")]
    trio.run(main, arguments)

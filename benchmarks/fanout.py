"""Fan-out benchmark: what a room's broadcast costs, against a bare socket write.

    python benchmarks/fanout.py [--sizes 100,500,1000] [--modes process,embedded]
                                [--deliveries 200000] [--look-clients 100]
                                [--look-commands 200] [--pythonpath DIR] [--quick]

All in one run, on 127.0.0.1, each server a child process of this one:

- ``say`` in one room: N clients log in to trio_mud (``create BenchI ...``;
  everybody starts in the same room). Then a closed loop: ``--speakers``
  clients each send ``say <token>`` and wait for their own
  ``You say, "<token>"`` before the next; every other client gets
  ``BenchI says, "<token>"``, one delivery per listener. The number of
  deliveries is fixed (says = deliveries / (N - 1)), so a run is bounded
  whatever N. Every client reads everything all along (one reader task
  each), and the deliveries are counted on the listeners.
- the same clients and says against a bare Trio broadcast server (each line
  read is written to every connected client, the sender included): the
  floor for fan-out in Python.
- ``look`` among ``--look-clients`` players in one room, each sending ``look``
  ``--look-commands`` times (waiting for ``Exits:``), against a bare Trio
  line-echo server with the same load.

Server CPU is utime + stime from /proc/<pid>/stat of the server process and
all its descendants (the ``trio_mud.serverproc`` child in process mode),
read just before and just after a measured phase, so the load generator's own
CPU (it shares the machine) is not in the server figures. Logging in is not
measured (each arrival is told to everyone in the room: O(N^2) at login).
Password hashing is set cheap (argon2id t=1, 8 MiB), and the command rate
limit is raised (``--command-rate``) because a closed-loop client at small N
types faster than a person, and a command dropped for the rate would stall it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from _procs import code_version, machine, write_calls

#: The floor for fan-out: every line read goes to every connected client (the
#: sender included), each client with its own writer task that sends all that
#: is queued for it in one write.
BROADCAST_SERVER = """
import trio
clients = set()
class Client:
    __slots__ = ("stream", "out", "wake")
    def __init__(self, stream):
        self.stream = stream
        self.out = bytearray()
        self.wake = trio.Event()
async def writer(client):
    try:
        while True:
            await client.wake.wait()
            client.wake = trio.Event()
            data = bytes(client.out)
            client.out.clear()
            await client.stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
async def serve(stream):
    client = Client(stream)
    clients.add(client)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, client)
            buffer = b""
            try:
                async for data in stream:
                    buffer += data
                    *lines, buffer = buffer.split(b"\\n")
                    if lines:
                        out = b"".join(line + b"\\n" for line in lines)
                        for other in clients:
                            other.out += out
                            other.wake.set()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()
    finally:
        clients.discard(client)
async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(serve, listeners)
trio.run(main)
"""

#: The floor for commands: load.py's bare line-echo server.
ECHO_SERVER = """
import trio
async def echo(stream):
    buffer = b""
    try:
        async for data in stream:
            buffer += data
            *lines, buffer = buffer.split(b"\\n")
            if lines:
                await stream.send_all(b"".join(line + b"\\n" for line in lines))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(echo, listeners)
trio.run(main)
"""

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")
PROBLEM_WORDS = (b"WARNING", b"ERROR", b"CRITICAL", b"Traceback")
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: What the clients look for: (own echo of a say, prefix), (a say of someone
#: else), (end of a look answer).
MUD_OWN_SAY = b'You say, "'
MUD_OTHER_SAY = b' says, "'
FLOOR_SAY = b"say t"


# -- server processes --------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime + stime in ticks, start time) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parens);
    # rest[0] is field 3 (state), so field k is rest[k - 3]: ppid is 4,
    # utime 14, stime 15, starttime 22.
    rest = stat[stat.rfind(b")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19])


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, utime + stime, start time) for every process we can read."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (entry := _proc_stat(int(name))) is not None:
            table[int(name)] = entry
    return table


def tree_cpu(root: int) -> dict[int, tuple[int, int]]:
    """(CPU ticks (utime + stime), start time) of ``root`` and all its descendants, by pid."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, tuple[int, int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found[pid] = table[pid][1:]
            todo.extend(children.get(pid, ()))
    return found


def _start_time(pid: int) -> int | None:
    entry = _proc_stat(pid)
    return None if entry is None else entry[2]


def machine_ticks() -> tuple[int, int]:
    """CPU ticks of the whole machine from /proc/stat: (processes, interrupts + steal).

    Processes: user + nice + system time (every process's utime and stime);
    the rest: irq + softirq (loopback TCP is processed mostly in softirq) + steal.
    """
    with open("/proc/stat") as file:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(x) for x in file.readline().split()[1:9]
        )
    return user + nice + system, irq + softirq + steal


def growth(before: dict[int, int], after: dict[int, int]) -> int:
    """How much per-process counters (CPU ticks, write calls) grew between two
    readings (a process new since counts in full)."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


@dataclass
class Server:
    """A server child process: its port, what it said that looks like trouble."""

    name: str
    argv: list[str]
    announces_on_stderr: bool
    port_from: Callable[[bytes], int | None]
    process: trio.Process | None = None
    port: int | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    #: Every process seen in the server's tree: pid -> start time.
    descendants: dict[int, int] = field(default_factory=dict)
    _port_found: trio.Event = field(default_factory=trio.Event)

    async def _watch(self, stream: trio.abc.ReceiveStream, announces: bool) -> None:
        """Read a pipe to its end (so that logging never blocks the server)."""
        pending = b""
        while chunk := await stream.receive_some(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if announces and self.port is None:
                    self.port = self.port_from(line)
                    if self.port is not None:
                        self._port_found.set()
                if any(word in line for word in PROBLEM_WORDS):
                    self.problem_count += 1
                    if len(self.problems) < 20:
                        self.problems.append(line.decode(errors="replace")[:300])

    def cpu(self) -> dict[int, int]:
        """CPU ticks of each process in the server's tree, by pid."""
        assert self.process is not None
        reading = tree_cpu(self.process.pid)
        self.descendants.update((pid, start) for pid, (_, start) in reading.items())
        return {pid: ticks for pid, (ticks, _) in reading.items()}

    def writes(self) -> dict[int, int]:
        """Write system calls of each process in the server's tree (as the last
        :meth:`cpu` reading found it), by pid."""
        return write_calls(self.descendants)


@asynccontextmanager
async def running(server: Server, *, cwd: str, env: dict[str, str]) -> AsyncIterator[Server]:
    """Start ``server``, yield it once its port is known, stop its whole tree."""
    process = await trio.lowlevel.open_process(
        server.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env
    )
    server.process = process
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(server._watch, process.stdout, not server.announces_on_stderr)
            nursery.start_soon(server._watch, process.stderr, server.announces_on_stderr)
            with trio.fail_after(60):
                port_wait = trio.Event()

                async def port_or_exit() -> None:
                    await process.wait()
                    port_wait.set()

                async def port_found() -> None:
                    await server._port_found.wait()
                    port_wait.set()

                async with trio.open_nursery() as waiting:
                    waiting.start_soon(port_or_exit)
                    waiting.start_soon(port_found)
                    await port_wait.wait()
                    waiting.cancel_scope.cancel()
            if server.port is None:
                raise RuntimeError(f"{server.name} exited: {server.problems}")
            server.cpu()
            yield server
            await stop(server)
    finally:
        await stop(server)


async def stop(server: Server) -> None:
    """SIGTERM the server, SIGKILL it after 20 s; SIGKILL descendants left over."""
    process = server.process
    assert process is not None
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            server.cpu()
            process.terminate()
            with trio.move_on_after(20):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        # A descendant left running (the same pid and start time: not a reused pid).
        for pid, start in server.descendants.items():
            if pid != process.pid and _start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def mud_server(args: argparse.Namespace, data_dir: str, embedded: bool, clients: int) -> Server:
    argv = [
        sys.executable, "-m", "trio_mud",
        "--set", "max_connections_per_address=100000",  # many clients on loopback
        "--set", "creation_throttle_limit=100000", "--set", "login_throttle_limit=100000",
        "--set", "game_prompt=",  # the same output as the figures measured before prompts
        "--no-web", "--telnet-port", "0",
        "--data-dir", data_dir, "--log-level", "INFO",
        "--set", "password_hash_time_cost=1", "--set", "password_hash_memory_kib=8192",
        "--set", f"connection_rate_burst={clients * 2}",
        "--set", f"max_connection_rate={clients * 2}",
        "--set", f"max_command_rate={args.command_rate}",
        "--set", f"command_rate_burst={args.command_rate}",
        *(["--embedded"] if embedded else []),
    ]  # fmt: skip

    def port_from(line: bytes) -> int | None:
        match = LISTENING.search(line)
        return int(match.group(1)) if match else None

    return Server("trio_mud", argv, True, port_from)


def floor_server(name: str, script: str) -> Server:
    def port_from(line: bytes) -> int | None:
        return int(line) if line.strip().isdigit() else None

    return Server(name, [sys.executable, "-c", script], False, port_from)


# -- clients --------------------------------------------------------------------------


@dataclass
class Totals:
    """Counters shared by all the readers of one run."""

    received: int = 0
    counted: int = 0
    target: int = -1
    reached: trio.Event = field(default_factory=trio.Event)


async def open_socket(port: int) -> socket.socket:
    """A non-blocking stdlib socket connected to 127.0.0.1:``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.connect(("127.0.0.1", port))
    except BlockingIOError:
        await trio.lowlevel.wait_writable(sock)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            sock.close()
            raise OSError(error, os.strerror(error)) from None
    return sock


class Client:
    """A raw telnet client whose reader task counts ``marker`` lines and waits for one."""

    def __init__(self, sock: socket.socket, totals: Totals, marker: bytes) -> None:
        self.sock = sock
        self.totals = totals
        self.marker = marker
        self.pending = b""
        self.counted = 0
        self.waiting: bytes | None = None
        self.arrived = trio.Event()
        self.eof = False

    def expect(self, text: bytes) -> trio.Event:
        """Wait for ``text`` in a line that arrives from now on."""
        self.arrived = trio.Event()
        self.waiting = text
        return self.arrived

    async def send(self, data: bytes) -> None:
        while data:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            data = data[sent:]

    async def read(self) -> None:
        totals = self.totals
        marker = self.marker
        sock = self.sock
        wait_readable = trio.lowlevel.wait_readable
        while True:
            await wait_readable(sock)
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.eof = True
                return
            totals.received += len(data)
            cut = data.rfind(b"\n") + 1
            if not cut:
                self.pending += data
                continue
            lines = self.pending + data[:cut] if self.pending else data[:cut]
            self.pending = data[cut:]
            found = lines.count(marker)
            if found:
                self.counted += found
                totals.counted += found
                if totals.counted >= totals.target >= 0:
                    totals.reached.set()
            if self.waiting is not None and self.waiting in lines:
                self.waiting = None
                self.arrived.set()


async def connect_all(
    nursery: trio.Nursery,
    port: int,
    count: int,
    totals: Totals,
    marker: bytes,
    log_in: bool,
    concurrency: int,
) -> list[Client]:
    """Open ``count`` clients (logged in as Bench0.. if ``log_in``), readers running."""
    clients: list[Client | None] = [None] * count
    limit = trio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with limit:
            client = Client(await open_socket(port), totals, marker)
            if log_in:
                screen = client.expect(b"shows this screen again")
            nursery.start_soon(client.read)
            if log_in:
                await screen.wait()
                entered = client.expect(b"Exits:")
                await client.send(f"create Bench{index} benchmark-password\r\n".encode())
                await entered.wait()
            clients[index] = client

    async with trio.open_nursery() as connecting:
        for index in range(count):
            connecting.start_soon(one, index)
    return [client for client in clients if client is not None]


async def quiesce(totals: Totals, quiet: float, limit: float = 120.0) -> None:
    """Wait until nothing has arrived for ``quiet`` seconds (at most ``limit``)."""
    with trio.move_on_after(limit):
        last = -1
        while totals.received != last:
            last = totals.received
            await trio.sleep(quiet)


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


@dataclass
class Phase:
    """One measured phase on one server."""

    label: str
    setup_time: float
    operations: int  # deliveries (say) or commands (look)
    expected: int
    wall: float
    ticks: int
    #: Write system calls of the server processes during the phase.
    writes: int
    latencies: list[float]
    harness_cpu: float
    #: CPU seconds all processes on the machine used during the phase.
    machine_cpu: float
    #: CPU seconds of irq, softirq and steal during the phase.
    irq_cpu: float
    mismatched: int = 0
    disconnects: int = 0
    problems: int = 0

    @property
    def us_per_op(self) -> float:
        return self.ticks / CLK_TCK / max(self.operations, 1) * 1e6

    @property
    def writes_per_op(self) -> float:
        return self.writes / max(self.operations, 1)

    @property
    def other_cpu(self) -> float:
        """Process CPU seconds used by neither the server nor this harness (others' load)."""
        return self.machine_cpu - self.ticks / CLK_TCK - self.harness_cpu

    @property
    def rate(self) -> float:
        return self.operations / self.wall if self.wall else 0.0

    def latency(self) -> tuple[float, float, float]:
        ms = sorted(x * 1000 for x in self.latencies) or [float("nan")]
        return statistics.median(ms), percentile(ms, 0.99), ms[-1]


async def say_phase(
    args: argparse.Namespace, server: Server, label: str, size: int, is_mud: bool
) -> Phase:
    """N clients in one room; speakers say in a closed loop; count deliveries."""
    assert server.port is not None
    totals = Totals()
    marker = MUD_OTHER_SAY if is_mud else FLOOR_SAY
    own = MUD_OWN_SAY if is_mud else b"say "
    says = max(1, args.deliveries // max(size - 1, 1))
    speakers = min(size, args.speakers, says)
    shares = [says // speakers + (1 if k < says % speakers else 0) for k in range(speakers)]
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        with trio.fail_after(args.timeout):
            clients = await connect_all(
                nursery, server.port, size, totals, marker, is_mud, args.login_concurrency
            )
            await quiesce(totals, args.quiet)
        setup_time = time.perf_counter() - started
        for client in clients:
            client.counted = 0
        totals.counted = 0
        # The broadcast floor echoes a speaker's own line with the same marker.
        totals.target = says * (size - 1) + (0 if is_mud else says)
        if totals.target == 0:
            totals.reached.set()

        async def speak(index: int, count: int) -> None:
            client = clients[index]
            send = client.send
            for seq in range(count):
                token = b"t%dx%dz" % (index, seq)
                echoed = client.expect(own + token)
                sent = time.perf_counter()
                await send(b"say " + token + b"\r\n")
                await echoed.wait()
                latencies.append(time.perf_counter() - sent)

        before = server.cpu()
        writes_before = server.writes()
        cpu_before = time.process_time()
        machine_before = machine_ticks()
        started = time.perf_counter()
        with trio.move_on_after(args.timeout):
            async with trio.open_nursery() as speaking:
                for index, count in enumerate(shares):
                    speaking.start_soon(speak, index, count)
            await totals.reached.wait()
        wall = time.perf_counter() - started
        after = server.cpu()
        writes_after = server.writes()
        harness_cpu = time.process_time() - cpu_before
        machine_after = machine_ticks()
        machine_cpu = (machine_after[0] - machine_before[0]) / CLK_TCK
        irq_cpu = (machine_after[1] - machine_before[1]) / CLK_TCK
        delivered = totals.counted - (0 if is_mud else says)
        mismatched = 0
        for index, client in enumerate(clients):
            own_says = shares[index] if index < speakers else 0
            got = client.counted - (0 if is_mud else own_says)
            mismatched += got != says - own_says
        disconnects = sum(client.eof for client in clients) + (size - len(clients))
        nursery.cancel_scope.cancel()
    await stop(server)
    for client in clients:
        client.sock.close()
    return Phase(
        label=label,
        setup_time=setup_time,
        operations=delivered,
        expected=says * (size - 1),
        wall=wall,
        ticks=growth(before, after),
        writes=growth(writes_before, writes_after),
        latencies=latencies,
        harness_cpu=harness_cpu,
        machine_cpu=machine_cpu,
        irq_cpu=irq_cpu,
        mismatched=mismatched,
        disconnects=disconnects,
        problems=server.problem_count,
    )


async def look_phase(args: argparse.Namespace, server: Server, label: str, is_mud: bool) -> Phase:
    """Clients in one room each send ``look`` K times, waiting for each answer."""
    assert server.port is not None
    totals = Totals()
    size, commands = args.look_clients, args.look_commands
    answer = b"Exits:" if is_mud else b"look"
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        with trio.fail_after(args.timeout):
            clients = await connect_all(
                nursery, server.port, size, totals, answer, is_mud, args.login_concurrency
            )
            await quiesce(totals, args.quiet)
        setup_time = time.perf_counter() - started
        for client in clients:
            client.counted = 0
        totals.counted = 0

        async def play(client: Client) -> None:
            send = client.send
            for _ in range(commands):
                answered = client.expect(answer)
                sent = time.perf_counter()
                await send(b"look\r\n")
                await answered.wait()
                latencies.append(time.perf_counter() - sent)

        before = server.cpu()
        writes_before = server.writes()
        cpu_before = time.process_time()
        machine_before = machine_ticks()
        started = time.perf_counter()
        with trio.move_on_after(args.timeout):
            async with trio.open_nursery() as playing:
                for client in clients:
                    playing.start_soon(play, client)
        wall = time.perf_counter() - started
        after = server.cpu()
        writes_after = server.writes()
        harness_cpu = time.process_time() - cpu_before
        machine_after = machine_ticks()
        machine_cpu = (machine_after[0] - machine_before[0]) / CLK_TCK
        irq_cpu = (machine_after[1] - machine_before[1]) / CLK_TCK
        disconnects = sum(client.eof for client in clients) + (size - len(clients))
        nursery.cancel_scope.cancel()
    await stop(server)
    for client in clients:
        client.sock.close()
    return Phase(
        label=label,
        setup_time=setup_time,
        operations=len(latencies),
        expected=size * commands,
        wall=wall,
        ticks=growth(before, after),
        writes=growth(writes_before, writes_after),
        latencies=latencies,
        harness_cpu=harness_cpu,
        machine_cpu=machine_cpu,
        irq_cpu=irq_cpu,
        mismatched=size * commands - len(latencies),
        disconnects=disconnects,
        problems=server.problem_count,
    )


# -- the run --------------------------------------------------------------------------------


@dataclass
class Results:
    say: dict[tuple[int, str, str], Phase] = field(default_factory=dict)
    look: dict[tuple[str, str], Phase] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def measure(args: argparse.Namespace, env: dict[str, str], results: Results) -> None:
    def note(server: Server, label: str) -> None:
        for line in server.problems:
            results.problems.append(f"[{label}] {line}")
        if server.problem_count > len(server.problems):
            extra = server.problem_count - len(server.problems)
            results.problems.append(f"[{label}] ... and {extra} more")

    for size in args.sizes:
        for mode in args.modes:
            with tempfile.TemporaryDirectory(prefix="fanout-") as data_dir:
                label = f"say N={size} broadcast floor (paired with {mode})"
                server = floor_server("broadcast", BROADCAST_SERVER)
                async with running(server, cwd=data_dir, env=env):
                    phase = await say_phase(args, server, label, size, is_mud=False)
                results.say[size, mode, "floor"] = phase
                note(server, label)
                progress(phase)
            with tempfile.TemporaryDirectory(prefix="fanout-") as data_dir:
                label = f"say N={size} trio_mud {mode}"
                server = mud_server(args, data_dir, mode == "embedded", size)
                async with running(server, cwd=data_dir, env=env):
                    phase = await say_phase(args, server, label, size, is_mud=True)
                results.say[size, mode, "mud"] = phase
                note(server, label)
                progress(phase)
    for mode in args.modes:
        with tempfile.TemporaryDirectory(prefix="fanout-") as data_dir:
            label = f"look echo floor (paired with {mode})"
            server = floor_server("echo", ECHO_SERVER)
            async with running(server, cwd=data_dir, env=env):
                phase = await look_phase(args, server, label, is_mud=False)
            results.look[mode, "floor"] = phase
            note(server, label)
            progress(phase)
        with tempfile.TemporaryDirectory(prefix="fanout-") as data_dir:
            label = f"look trio_mud {mode}"
            server = mud_server(args, data_dir, mode == "embedded", args.look_clients)
            async with running(server, cwd=data_dir, env=env):
                phase = await look_phase(args, server, label, is_mud=True)
            results.look[mode, "mud"] = phase
            note(server, label)
            progress(phase)


def progress(phase: Phase) -> None:
    print(
        f"  done: {phase.label}: setup {phase.setup_time:.1f} s, measured {phase.wall:.2f} s",
        flush=True,
    )


def ratio_line(name: str, top: Phase, bottom: Phase, target: float) -> str:
    """``top``'s CPU per operation over ``bottom``'s, against ``target``."""
    if not top.ticks or not bottom.ticks:
        return f"  {name:<46}    n/a  (a side measured 0 CPU ticks: make the run longer)"
    value = top.us_per_op / bottom.us_per_op
    verdict = "ok" if value <= target else "OVER"
    return f"  {name:<46} {value:6.2f}x  (target <= {target:g}x: {verdict})"


def report(args: argparse.Namespace, results: Results) -> None:
    tick_us = 1e6 / CLK_TCK
    print()
    print(
        f"say in one room: {args.deliveries} deliveries per run, up to {args.speakers} speakers"
        " at once (latency: from sending a say to its own echo, queued behind the others' says)"
    )
    header = (
        f"{'N':>5} {'mode':<9} {'server':<9} {'says':>6} {'delivered':>19} {'wall s':>7}"
        f" {'deliv/s':>9} {'cpu s':>6} {'us/deliv':>8} {'wr/deliv':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'setup s':>7} {'load cpu s':>10} {'other cpu s':>11} {'irq s':>5}"
    )
    print(header)
    print("-" * len(header))
    for (size, mode, kind), phase in results.say.items():
        says = phase.expected // max(size - 1, 1)
        p50, p99, _ = phase.latency()
        delivered = f"{phase.operations}/{phase.expected}"
        print(
            f"{size:>5} {mode:<9} {'floor' if kind == 'floor' else 'trio_mud':<9} {says:>6}"
            f" {delivered:>19} {phase.wall:>7.2f} {phase.rate:>9.0f}"
            f" {phase.ticks / CLK_TCK:>6.2f} {phase.us_per_op:>8.2f} {phase.writes_per_op:>8.3f}"
            f" {p50:>7.2f} {p99:>7.2f} {phase.setup_time:>7.1f} {phase.harness_cpu:>10.2f}"
            f" {phase.other_cpu:>11.2f} {phase.irq_cpu:>5.2f}"
        )
    print()
    print(
        f"look among {args.look_clients} players, {args.look_commands} commands each"
        " (floor: bare echo, cost per line)"
    )
    header = (
        f"{'mode':<9} {'server':<9} {'commands':>15} {'wall s':>7} {'cmd/s':>8} {'cpu s':>6}"
        f" {'us/cmd':>8} {'wr/cmd':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'setup s':>7}"
        f" {'load cpu s':>10} {'other cpu s':>11} {'irq s':>5}"
    )
    print(header)
    print("-" * len(header))
    for (mode, kind), phase in results.look.items():
        p50, p99, worst = phase.latency()
        commands = f"{phase.operations}/{phase.expected}"
        print(
            f"{mode:<9} {'echo' if kind == 'floor' else 'trio_mud':<9} {commands:>15}"
            f" {phase.wall:>7.2f} {phase.rate:>8.0f} {phase.ticks / CLK_TCK:>6.2f}"
            f" {phase.us_per_op:>8.2f} {phase.writes_per_op:>6.2f} {p50:>7.2f} {p99:>7.2f}"
            f" {worst:>7.2f}"
            f" {phase.setup_time:>7.1f} {phase.harness_cpu:>10.2f}"
            f" {phase.other_cpu:>11.2f} {phase.irq_cpu:>5.2f}"
        )
    print(
        f"(server CPU from /proc/<pid>/stat in ticks of {tick_us:.0f} us, server processes only;"
        " wr: write(2) calls of the server processes (syscw in /proc/<pid>/io: send(2), which"
        " the floors and a telnet drain use, is not counted) per delivery or command;"
        " load cpu: this harness; other cpu: all other processes, irq: irq + softirq +"
        " steal, from /proc/stat)"
    )

    print()
    print("ratios (server CPU per operation)")
    say = results.say
    for size in args.sizes:
        for mode in args.modes:
            top, bottom = say[size, mode, "mud"], say[size, mode, "floor"]
            print(ratio_line(f"say / broadcast floor, N={size} {mode}", top, bottom, 2))
    small, large = min(args.sizes), max(args.sizes)
    if small != large:
        for mode in args.modes:
            top, bottom = say[large, mode, "mud"], say[small, mode, "mud"]
            print(ratio_line(f"say N={large} / N={small}, {mode}", top, bottom, 1.3))
    if "process" in args.modes and "embedded" in args.modes:
        for size in args.sizes:
            top, bottom = say[size, "process", "mud"], say[size, "embedded", "mud"]
            print(ratio_line(f"process / embedded, say N={size}", top, bottom, 1.3))
        top, bottom = results.look["process", "mud"], results.look["embedded", "mud"]
        print(ratio_line("process / embedded, look", top, bottom, 1.3))
    for mode in args.modes:
        top, bottom = results.look[mode, "mud"], results.look[mode, "floor"]
        print(ratio_line(f"look / echo floor, {mode}", top, bottom, 4))

    print()
    trouble = False
    for phase in [*results.say.values(), *results.look.values()]:
        if phase.operations != phase.expected or phase.mismatched or phase.disconnects:
            trouble = True
            print(
                f"CHECK {phase.label}: {phase.operations}/{phase.expected} done,"
                f" {phase.mismatched} clients with a wrong count, {phase.disconnects} disconnected"
            )
    if not trouble:
        print(
            "every delivery and answer arrived; every client got exactly its share; no disconnects"
        )
    if results.problems:
        print(f"server stderr lines with {'/'.join(w.decode() for w in PROBLEM_WORDS)}:")
        for line in results.problems:
            print(f"  {line}")
    else:
        print("server stderr: no warnings or errors")


def server_env(pythonpath: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if pythonpath:
        path = os.path.abspath(pythonpath)
        env["PYTHONPATH"] = path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="clients in the room, per run (100,500,1000)")
    parser.add_argument("--modes", default="process,embedded", help="process and/or embedded")
    parser.add_argument("--deliveries", type=int, help="say deliveries per run (200000)")
    parser.add_argument("--speakers", type=int, default=50, help="most clients saying at once")
    parser.add_argument("--look-clients", type=int, help="players in the look room (100)")
    parser.add_argument("--look-commands", type=int, help="looks per client (200)")
    parser.add_argument("--login-concurrency", type=int, default=50)
    parser.add_argument(
        "--command-rate", type=int, default=100_000, help="max_command_rate and its burst"
    )
    parser.add_argument("--quiet", type=float, default=0.5, help="silence before measuring, s")
    parser.add_argument("--timeout", type=float, default=600, help="bound on each phase, s")
    parser.add_argument("--pythonpath", help="put DIR first on the servers' PYTHONPATH")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small run: sizes 20,50, 20000 deliveries, 20 look clients x 50 (other options"
        " still apply)",
    )
    args = parser.parse_args()
    defaults = (
        {"sizes": "20,50", "deliveries": 20_000, "look_clients": 20, "look_commands": 50}
        if args.quick
        else {
            "sizes": "100,500,1000",
            "deliveries": 200_000,
            "look_clients": 100,
            "look_commands": 200,
        }
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    args.modes = [mode.strip() for mode in args.modes.split(",")]
    if any(mode not in ("process", "embedded") for mode in args.modes):
        parser.error("--modes takes process and/or embedded")
    if min(args.sizes) < 2:
        parser.error("--sizes: a room needs at least 2 clients")

    env = server_env(args.pythonpath)
    with tempfile.TemporaryDirectory(prefix="fanout-") as cwd:
        where = subprocess.run(
            [sys.executable, "-c", "import trio_mud; print(trio_mud.__file__)"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    print(machine())
    print("load average before the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    imported = where.stdout.strip()
    print(f"servers import trio_mud from {imported or where.stderr.strip()}")
    if imported:
        print(f"  {code_version(os.path.dirname(os.path.dirname(imported)))}")
    print(
        f"sizes {args.sizes}, modes {args.modes}, {args.deliveries} deliveries per say run,"
        f" look {args.look_clients} x {args.look_commands}"
    )
    results = Results()
    started = time.perf_counter()
    trio.run(measure, args, env, results)
    report(args, results)
    print("load average after the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"total run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

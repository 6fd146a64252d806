"""Load benchmark: N telnet clients log in and each send K commands.

Runs the real server (``python -m trio_mud``) in a child process on
127.0.0.1, then runs the same client load against a bare Trio line-echo
server in another child process, and prints both with their ratio.

    python benchmarks/load.py --clients 200 --commands 20

Every client sends one command, waits for the whole answer, and sends the
next; latency is from sending a command to the end of its answer. Password
hashing is set cheap (argon2id t=1, 8 MiB) so the figures are about commands,
not about hashing; the login phase is timed on its own.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import trio

ECHO_SERVER = """
import sys, trio
async def echo(stream):
    buffer = b""
    async for data in stream:
        buffer += data
        *lines, buffer = buffer.split(b"\\n")
        if lines:
            await stream.send_all(b"".join(line + b"\\n" for line in lines))
async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(echo, listeners)
trio.run(main)
"""

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")


class LineClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def read_past(self, marker: bytes) -> None:
        """Read until ``marker`` and the end of its line have arrived."""
        while True:
            at = self.buffer.find(marker)
            if at >= 0:
                end = self.buffer.find(b"\n", at)
                if end >= 0:
                    del self.buffer[: end + 1]
                    return
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buffer += data


async def start_child(
    argv: list[str], port_from: Callable[[bytes], int | None], *, announces_on_stderr: bool
) -> tuple[trio.Process, int]:
    """Start a server process and read the port it announces."""
    process = await trio.lowlevel.open_process(argv, stdout=-1, stderr=-1)
    stream = process.stderr if announces_on_stderr else process.stdout
    assert stream is not None
    seen = b""
    with trio.fail_after(30):
        while True:
            port = port_from(seen)
            if port is not None:
                return process, port
            chunk = await stream.receive_some()
            if not chunk:
                raise RuntimeError(f"server exited: {seen.decode(errors='replace')}")
            seen += chunk


async def drain(process: trio.Process) -> None:
    """Keep reading a child's pipes so that it never blocks on logging."""
    async with trio.open_nursery() as nursery:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                nursery.start_soon(_drain_one, stream)


async def _drain_one(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some():
        pass


async def run_load(
    port: int,
    clients: int,
    commands: int,
    login: Callable[[LineClient, int], Awaitable[None]],
    command: bytes,
    marker: bytes,
) -> tuple[float, float, list[float]]:
    """Returns (login seconds, command-phase seconds, latencies)."""
    connected: list[LineClient] = []
    latencies: list[float] = []

    async def log_in(index: int) -> None:
        client = LineClient(await trio.open_tcp_stream("127.0.0.1", port))
        await login(client, index)
        connected.append(client)

    async def play(client: LineClient) -> None:
        for _ in range(commands):
            started = time.perf_counter()
            await client.stream.send_all(command)
            await client.read_past(marker)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(clients):
            nursery.start_soon(log_in, index)
    login_time = time.perf_counter() - started
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for client in connected:
            nursery.start_soon(play, client)
    play_time = time.perf_counter() - started
    for client in connected:
        await client.stream.aclose()
    return login_time, play_time, latencies


def describe(name: str, login_time: float, play_time: float, latencies: list[float]) -> float:
    rate = len(latencies) / play_time
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{name:<10} login {login_time:6.2f} s | {len(ms)} commands in {play_time:6.2f} s"
        f" = {rate:8.0f} cmd/s | latency p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        f"  max {ms[-1]:6.2f} ms"
    )
    return rate


async def main(clients: int, commands: int, embedded: bool) -> None:
    python = sys.version.split()[0]
    mode = "embedded" if embedded else "process"
    cores = os.cpu_count()
    print(f"{clients} clients x {commands} commands, {mode} mode; {cores} cores; Python {python}")
    with tempfile.TemporaryDirectory() as data_dir:
        mud_argv = [
            sys.executable,
            "-m",
            "trio_mud",
            "--no-web",
            "--telnet-port",
            "0",
            "--data-dir",
            data_dir,
            "--log-level",
            "INFO",
            "--set",
            "password_hash_time_cost=1",
            "--set",
            "password_hash_memory_kib=8192",
            "--set",
            f"connection_rate_burst={clients * 2}",
            "--set",
            "max_connections_per_address=100000",
            "--set",
            "creation_throttle_limit=100000",
            "--set",
            "login_throttle_limit=100000",
            "--set",
            "game_prompt=",
            "--set",
            f"max_connection_rate={clients * 2}",
        ]

        def mud_port(seen: bytes) -> int | None:
            match = LISTENING.search(seen)
            return int(match.group(1)) if match else None

        async def mud_login(client: LineClient, index: int) -> None:
            await client.read_past(b"shows this screen again")
            await client.stream.send_all(f"create Bench{index} benchmark-password\r\n".encode())
            await client.read_past(b"Exits:")

        async def no_login(client: LineClient, index: int) -> None:
            pass

        def echo_port(seen: bytes) -> int | None:
            return int(seen.split()[0]) if seen.strip() else None

        async def load_child(
            argv: list[str],
            port_from: Callable[[bytes], int | None],
            on_stderr: bool,
            login: Callable[[LineClient, int], Awaitable[None]],
            answer: bytes,
        ) -> tuple[float, float, list[float]]:
            """Start a server, put the load on it, stop it."""
            process, port = await start_child(argv, port_from, announces_on_stderr=on_stderr)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, process)
                result = await run_load(port, clients, commands, login, b"look\r\n", answer)
                process.terminate()
            await process.wait()
            return result

        with trio.fail_after(600):
            mud = await load_child(mud_argv, mud_port, True, mud_login, b"Exits:")
            echo_argv = [sys.executable, "-c", ECHO_SERVER]
            echo = await load_child(echo_argv, echo_port, False, no_login, b"look")

    mud_rate = describe("trio_mud", *mud)
    echo_rate = describe("bare echo", *echo)
    print(f"trio_mud does {mud_rate / echo_rate:.2f}x the command rate of a bare Trio echo server")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument(
        "--embedded", action="store_true", help="run the game inside the portal's process"
    )
    args = parser.parse_args()
    trio.run(main, args.clients, args.commands, args.embedded)

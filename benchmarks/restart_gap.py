"""Restart gap: from a reload to answered commands, with many sessions.

    python benchmarks/restart_gap.py [--sessions 1000] [--reloads 3]

For each mode (embedded: the handler in the portal's process; process: a
fresh server process per reload) the real server runs in a child process on
127.0.0.1. N clients log in. Then, a few times over:

- baseline: every client sends ``look`` at once; time until all are answered;
- reload: SIGHUP to the server (the same path as the in-game ``reload``);
  every client sends ``look`` as soon as it sees "Server restarting...";
  the time from the signal to the first and to the last answer.

Password hashing is set cheap (argon2id t=1, 8 MiB): this measures restarts.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time

import trio

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")


class Player:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def read_past(self, marker: bytes) -> float:
        """Read until ``marker`` and its line end; when it arrived."""
        while True:
            at = self.buffer.find(marker)
            if at >= 0 and (end := self.buffer.find(b"\n", at)) >= 0:
                del self.buffer[: end + 1]
                return time.perf_counter()
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.buffer += data


async def start_server(data_dir: str, embedded: bool, sessions: int) -> tuple[trio.Process, int]:
    argv = [
        sys.executable, "-m", "trio_mud",
        "--set", "max_connections_per_address=100000",  # many clients on loopback
        "--set", "creation_throttle_limit=100000", "--set", "login_throttle_limit=100000",
        "--set", "game_prompt=",  # the same output as the figures measured before prompts
        "--telnet-port", "0", "--data-dir", data_dir,
        "--log-level", "INFO", "--no-web",
        "--set", "password_hash_time_cost=1", "--set", "password_hash_memory_kib=8192",
        "--set", f"connection_rate_burst={sessions * 2}",
        "--set", f"max_connection_rate={sessions * 2}",
        *(["--embedded"] if embedded else []),
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(argv, stderr=-1)
    assert process.stderr is not None
    seen = b""
    with trio.fail_after(60):
        while not (match := LISTENING.search(seen)):
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise RuntimeError(seen.decode(errors="replace"))
            seen += chunk
    return process, int(match.group(1))


async def drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some():
        pass


async def log_in(port: int, count: int) -> list[Player]:
    players: list[Player] = []
    limit = trio.Semaphore(50)

    async def one(index: int) -> None:
        async with limit:
            player = Player(await trio.open_tcp_stream("127.0.0.1", port))
            await player.read_past(b"shows this screen again")
            await player.stream.send_all(f"create Gap{index} benchmark-password\r\n".encode())
            await player.read_past(b"Exits:")
            players.append(player)

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    return players


async def everyone_looks(players: list[Player], wait_for: bytes | None) -> list[float]:
    answered: list[float] = []

    async def one(player: Player) -> None:
        if wait_for is not None:
            await player.read_past(wait_for)
        await player.stream.send_all(b"look\r\n")
        answered.append(await player.read_past(b"Exits:"))

    async with trio.open_nursery() as nursery:
        for player in players:
            nursery.start_soon(one, player)
    return answered


async def run_mode(embedded: bool, sessions: int, reloads: int) -> None:
    name = "embedded" if embedded else "process"
    with tempfile.TemporaryDirectory() as data_dir:
        process, port = await start_server(data_dir, embedded, sessions)
        async with trio.open_nursery() as nursery:
            assert process.stderr is not None
            nursery.start_soon(drain, process.stderr)
            started = time.perf_counter()
            players = await log_in(port, sessions)
            print(f"{name}: {sessions} sessions logged in in {time.perf_counter() - started:.1f} s")
            for round_ in range(1, reloads + 1):
                sent = time.perf_counter()
                base = await everyone_looks(players, None)
                baseline = (max(base) - sent) * 1000
                sent = time.perf_counter()
                process.send_signal(signal.SIGHUP)
                answers = await everyone_looks(players, b"Server restarting...")
                first, last = (min(answers) - sent) * 1000, (max(answers) - sent) * 1000
                middle = statistics.median(answers) - sent
                print(
                    f"  reload {round_}: first answer {first:7.1f} ms, median {middle * 1000:7.1f}"
                    f" ms, all {sessions} answered {last:7.1f} ms | baseline, no reload:"
                    f" all answered {baseline:6.1f} ms"
                )
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                await process.wait()
            nursery.cancel_scope.cancel()


async def main(sessions: int, reloads: int) -> None:
    print(f"{sessions} sessions, {reloads} reloads per mode; {os.cpu_count()} cores; "
          f"Python {sys.version.split()[0]}")  # fmt: skip
    with trio.fail_after(900):  # a load run stops by itself
        for embedded in (True, False):
            await run_mode(embedded, sessions, reloads)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--reloads", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.sessions, args.reloads)

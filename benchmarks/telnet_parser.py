"""Telnet parser throughput on a mixed byte stream, beside bytes.split.

    python benchmarks/telnet_parser.py [--megabytes 8] [--chunk 4096]

The stream is what a busy MUD client sends: command lines of various lengths
ending in CR LF, a NAWS resize and a GMCP message now and then, the odd
escaped 255 byte. It is fed in chunks of --chunk bytes (as a socket would
deliver it) to TelnetProtocol and to MudTelnet (which adds the MUD protocols
on top), and the same bytes are split with bytes.split(b"\\n"), the floor any
line parser in Python is measured against.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable

from trio_mud.protocols.mudtelnet import MudTelnet
from trio_mud.protocols.telnet import DO, IAC, SB, SE, WILL, Opt, TelnetProtocol

WORDS = [
    "look",
    "north",
    "say",
    "hello",
    "there",
    "friend",
    "get",
    "sword",
    "from",
    "chest",
    "kill",
    "rat",
    "cast",
    "fireball",
]


def make_stream(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    out = bytearray(bytes((IAC, WILL, Opt.NAWS, IAC, DO, Opt.GMCP)))
    while len(out) < size:
        roll = rng.random()
        if roll < 0.02:
            width = rng.randrange(60, 300)
            out += bytes((IAC, SB, Opt.NAWS, width >> 8, width & 255, 0, 40, IAC, SE))
        elif roll < 0.05:
            out += bytes((IAC, SB, Opt.GMCP)) + b'Core.Ping {"seq": %d}' % len(out)
            out += bytes((IAC, SE))
        elif roll < 0.06:
            out += b"sigh \xff\xff\r\n"
        else:
            words = rng.choices(WORDS, k=rng.randrange(1, 12))
            out += " ".join(words).encode() + b"\r\n"
    return bytes(out)


def timed(func: Callable[[], int], repeat: int) -> tuple[float, int]:
    best = float("inf")
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = func()
        best = min(best, time.perf_counter() - started)
    return best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=8.0)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = make_stream(int(args.megabytes * 1024 * 1024))
    chunks = [data[i : i + args.chunk] for i in range(0, len(data), args.chunk)]
    mb = len(data) / 1024 / 1024

    def split() -> int:
        return sum(len(chunk.split(b"\n")) for chunk in chunks)

    def telnet() -> int:
        proto = TelnetProtocol(remote_options={Opt.NAWS}, local_options={Opt.GMCP})
        return sum(len(proto.receive_data(chunk)) for chunk in chunks)

    def mud() -> int:
        proto = MudTelnet()
        proto.start()
        return sum(len(proto.receive_data(chunk)) for chunk in chunks)

    print(f"{mb:.1f} MiB in {len(chunks)} chunks of {args.chunk} bytes; "
          f"{os.cpu_count()} cores; Python {sys.version.split()[0]}")  # fmt: skip
    base, _ = timed(split, args.repeat)
    print(f"{'bytes.split':<16} {mb / base:8.1f} MiB/s")
    for name, func in [("TelnetProtocol", telnet), ("MudTelnet", mud)]:
        seconds, events = timed(func, args.repeat)
        print(
            f"{name:<16} {mb / seconds:8.1f} MiB/s  {events / seconds / 1e6:5.2f} M events/s"
            f"  {base / seconds:6.3f}x the speed of bytes.split"
        )


if __name__ == "__main__":
    main()

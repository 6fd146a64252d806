"""Fuzz every decoder a client (or the portal link) can reach, at volume.

    python benchmarks/fuzz.py [--examples 120000] [--seed N] [--quick]

The contracts of tests/test_fuzz.py, with plain seeded ``random`` generation
instead of hypothesis (so 100,000+ examples take minutes, and the inputs can
be larger and deeper). For each decoder it prints how many examples ran, how
many raised the error its docstring documents, how many returned normally,
how many raised anything else (must be 0) and how many broke a promise about
what comes back (must be 0), with the time taken; then totals and PASS/FAIL.

Inputs mix random bytes and text with well-formed pieces: telnet negotiations
and subnegotiations (TTYPE, NAWS, NEW-ENVIRON, CHARSET, MSDP, GMCP with
hostile JSON), MCCP3 streams (whole, cut off, corrupt, zlib bombs), server
output calls between feeds, Evennia and mudstandards WebSocket frames, and
portal-link frames. The seed is printed; the same seed and --examples give
the same inputs.

Printed apart, and not deciding PASS/FAIL: "findings", docstring promises
beyond those contracts (finite numbers out of clientjson, tuple keys over
the link), and how long a few adversarial inputs take at two sizes (a decoder
whose time grows much faster than its input can stall the event loop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import struct
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trio_mud.messages import (
    Connect,
    DataIn,
    DataOut,
    Disconnect,
    Done,
    Hello,
    Loaded,
    Pause,
    Paused,
    ReloadRequest,
    Resume,
    SessionUpdate,
    Snapshot,
)
from trio_mud.protocols import clientjson
from trio_mud.protocols.clientjson import ClientJSONError
from trio_mud.protocols.mudtelnet import (
    BadInput,
    FlagsChanged,
    MSSPRequest,
    MudTelnet,
    OOBInput,
    Settled,
    gmcp_input,
    msdp_decode,
    msdp_encode,
    update_gmcp_supports,
)
from trio_mud.protocols.telnet import (
    DO,
    DONT,
    IAC,
    SB,
    SE,
    WILL,
    WONT,
    Command,
    Opt,
    OptionChange,
    Subnegotiation,
    TelnetProtocol,
    TelnetProtocolError,
    TextLine,
)
from trio_mud.protocols.wsformats import (
    SUBPROTOCOLS,
    TERMINAL,
    BadFrame,
    ClientGMCP,
    ClientOOB,
    ClientText,
    decode_frame,
)
from trio_mud.wire import MAX_DEPTH, FrameReader, Undecodable, WireError, decode_body, encode

MESSAGE_TYPES = (
    Connect, DataIn, DataOut, Disconnect, SessionUpdate, Done, Pause, Paused, Resume, Loaded,
    ReloadRequest, Snapshot, Hello,
)  # fmt: skip
MUD_EVENTS = (TextLine, FlagsChanged, OOBInput, Settled, MSSPRequest, BadInput)
TELNET_EVENTS = (TextLine, Command, OptionChange, Subnegotiation)
RESERVED = ("text", "prompt", "default")

#: Shares of --examples per decoder (cheap decoders get more).
SHARES = {
    "telnet.TelnetProtocol": 0.15,
    "mudtelnet.MudTelnet": 0.08,
    "mudtelnet.send_* between feeds": 0.04,
    "mudtelnet.msdp_decode": 0.10,
    "mudtelnet.gmcp (supports+input)": 0.10,
    "clientjson.loads": 0.15,
    "websocket.decode_frame": 0.18,
    "wire.FrameReader/decode_body": 0.10,
    "wire.encode round trip": 0.10,
}


class GeneratorError(Exception):
    """The input generator itself failed: a bug in this script, not in trio_mud."""


class Violation(Exception):
    """A decoder returned something its contract forbids."""


class Finding(Exception):
    """A decoder broke a docstring promise beyond the contracts (counted apart)."""


DOCUMENTED = "documented"
RETURNED = "returned"


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Violation(message)


def depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list | tuple):
            children: list[Any] = list(item)
        elif isinstance(item, dict):
            children = list(item.values())
        else:
            deepest = max(deepest, level)
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def walk(value: Any) -> list[Any]:
    """Every value and dict key inside ``value``, without recursion."""
    out: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        out.append(item)
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return out


def nest(value: Any, kinds: list[str]) -> Any:
    for kind in reversed(kinds):
        if kind == "list":
            value = [value]
        elif kind == "dict":
            value = {"a": value}
        else:
            value = {0: value}
    return value


def iac(*parts: int | bytes) -> bytes:
    out = bytearray()
    for part in parts:
        if isinstance(part, int):
            out.append(part)
        else:
            out += part
    return bytes(out)


def sb(option: int, payload: bytes) -> bytes:
    return iac(IAC, SB, option, payload.replace(b"\xff", b"\xff\xff"), IAC, SE)


# -- random inputs --------------------------------------------------------------------------

INTERESTING_CHARS = (
    '[]{}",:\\ \t\n\r0123456789.eE+-truefalsnull\x00\x7f\u00b2\u00e9\u212a\u0130\u2028'
    "\ufeff\U0001f600\ud800\udfff\uffff"
)


class Gen:
    """Random inputs of every kind the decoders meet."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        bomb_inputs = (b"\x00" * 400_000, b"ab" * 200_000, b"\r\n" * 200_000)
        self.bombs = [zlib.compress(data, 9) for data in bomb_inputs]

    # -- scalars and text --

    def text(self, size: int = 12, *, surrogates: bool = True) -> str:
        rng = self.rng
        n = rng.randrange(size + 1)
        roll = rng.random()
        if roll < 0.4:
            chars = [chr(rng.randrange(32, 127)) for _ in range(n)]
        elif roll < 0.7:
            chars = [rng.choice(INTERESTING_CHARS) for _ in range(n)]
        else:
            chars = [chr(rng.randrange(0x110000)) for _ in range(n)]
        out = "".join(chars)
        if not surrogates:
            out = "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "?" for c in out)
        return out

    def binary(self, size: int = 24) -> bytes:
        return self.rng.randbytes(self.rng.randrange(size + 1))

    def integer(self, *, huge: bool = False) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return rng.randrange(-1000, 1000)
        if roll < 0.85 or not huge:
            return rng.randrange(-(2**100), 2**100)
        return rng.choice([-1, 1]) * 10 ** rng.randrange(4000, 6000) + 7

    def floating(self) -> float:
        rng = self.rng
        roll = rng.random()
        if roll < 0.2:
            return rng.choice([0.0, -0.0, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 0.1])
        if roll < 0.6:
            return rng.uniform(-1e6, 1e6)
        return struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]

    def scalar(self, *, huge: bool = False, surrogates: bool = True, finite: bool = True) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return None
        if roll < 0.2:
            return rng.random() < 0.5
        if roll < 0.45:
            return self.integer(huge=huge)
        if roll < 0.6:
            value = self.floating()
            if finite and not math.isfinite(value):
                return 1.5
            return value
        if roll < 0.7:
            return rng.choice(["__items__", "type", "text", "TEXT", "prompt", "", "Char 1"])
        return self.text(surrogates=surrogates)

    def key(self, *, any_keys: bool = False) -> Any:
        rng = self.rng
        if any_keys and rng.random() < 0.4:
            return rng.choice(
                [rng.randrange(-5, 100), True, False, None, 1.5, -0.0, self.integer(huge=False)]
            )
        if rng.random() < 0.3:
            return rng.choice(["__items__", "type", "k", "", "a", "sessid"])
        return self.text(8, surrogates=False)

    def value(
        self,
        budget: int = 12,
        *,
        any_keys: bool = False,
        huge: bool = False,
        surrogates: bool = True,
        finite: bool = True,
    ) -> Any:
        """A JSON-like value: scalars, lists, dicts (nesting within ``budget``)."""
        rng = self.rng
        if budget <= 0 or rng.random() < 0.45:
            return self.scalar(huge=huge, surrogates=surrogates, finite=finite)
        size = rng.randrange(5)
        kw = {"any_keys": any_keys, "huge": huge, "surrogates": surrogates, "finite": finite}
        if rng.random() < 0.5:
            return [self.value(budget - 1 - rng.randrange(3), **kw) for _ in range(size)]
        if rng.random() < 0.15:
            return {"__items__": self.value(budget - 1, **kw)}
        return {self.key(any_keys=any_keys): self.value(budget - 1, **kw) for _ in range(size)}

    def deep_json(self) -> str:
        rng = self.rng
        levels = rng.choice([rng.randrange(1, 40), rng.randrange(1, 3001)])
        opener = rng.choice(["[", '{"a":', "[1,", '{"__items__":', " [ "])
        closer = "]" if opener.strip()[0] == "[" else "}"
        inner = rng.choice(["1", '"x"', "[]", "{}", "null", '"[[[["', "1e999"])
        tail = closer * levels if rng.random() < 0.7 else closer * rng.randrange(levels + 1)
        return opener * levels + inner + tail

    def huge_number(self) -> str:
        rng = self.rng
        digits = rng.choice([rng.randrange(1, 30), rng.randrange(4290, 4310), rng.randrange(5000)])
        lead = rng.choice(["", "-"])
        tail = rng.choice(["", ".5", "e10", "e999", "E-999", ".0e400", "e+308"])
        return lead + "1" * max(digits, 1) + tail

    def mutate(self, text: str) -> str:
        rng = self.rng
        chars = list(text)
        for _ in range(rng.randrange(1, 4)):
            op = rng.random()
            at = rng.randrange(len(chars) + 1)
            if op < 0.4:
                chars.insert(at, rng.choice(INTERESTING_CHARS))
            elif chars and op < 0.7:
                del chars[min(at, len(chars) - 1)]
            elif chars:
                chars[min(at, len(chars) - 1)] = rng.choice(INTERESTING_CHARS)
        return "".join(chars)

    def json_text(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return json.dumps(self.value(), ensure_ascii=rng.random() < 0.5)
        if roll < 0.4:
            return json.dumps(self.value(), indent=rng.choice([None, 1, "\t"]))
        if roll < 0.55:
            return self.deep_json()
        if roll < 0.65:
            return self.huge_number()
        if roll < 0.7:
            return rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "[1e999]", '{"a":-1e400}'])
        if roll < 0.85:
            return self.mutate(json.dumps(self.value()))
        return self.text(40)

    # -- GMCP, MSDP and the other telnet payloads --

    def supports_list(self) -> list[Any]:
        rng = self.rng
        entries: list[Any] = []
        for _ in range(rng.choice([rng.randrange(5), rng.randrange(200)])):
            roll = rng.random()
            if roll < 0.3:
                entries.append(f"Pkg{rng.randrange(300)} {rng.randrange(100_000)}")
            elif roll < 0.5:
                entries.append(f"Pkg{rng.randrange(300)}")
            elif roll < 0.7:
                entries.append(
                    rng.choice(
                        [
                            "Name \u00b2",
                            "Name 99999999999",
                            " Char 1 ",
                            "Room\t2",
                            "9x",
                            "",
                            "A" * 70,
                        ]
                    )
                )
            else:
                entries.append(self.scalar())
        return entries

    def gmcp_package(self) -> str:
        rng = self.rng
        if rng.random() < 0.7:
            return rng.choice(
                ["Core.Hello", "Core.Supports.Set", "Core.Supports.Add", "Core.Supports.Remove",
                 "core.supports.set", "Char.Login", "Char.Login.Credentials", "Core.Ping", "Text",
                 "text", "Prompt", "default", "Room.Info", ".", "_", "\u00dc.x", "Te\u212ax"]
            )  # fmt: skip
        return self.text(20)

    def gmcp_payload(self) -> bytes:
        rng = self.rng
        kind = rng.random()
        if kind < 0.3:
            package = rng.choice(["Core.Supports.Set", "Core.Supports.Add", "Core.Supports.Remove"])
            data = json.dumps(self.supports_list())
        elif kind < 0.45:
            package = rng.choice(["Core.Hello", "core.hello"])
            data = json.dumps({"client": self.value(3), "version": self.value(3)})
        else:
            package = self.gmcp_package()
            data = "" if rng.random() < 0.1 else self.json_text()
        sep = rng.choice([" ", " ", "  ", "\t", " \n "])
        return (package + sep + data).encode("utf-8", errors="surrogatepass")

    def msdp_payload(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        names = ["LIST", "REPORT", "UNREPORT", "SEND", "RESET", "CLIENT_NAME", "CLIENT_VERSION",
                 "XTERM_256_COLORS", "UTF_8", "ANSI_COLORS", "HEALTH"]  # fmt: skip
        if roll < 0.4:
            variables = {
                rng.choice([*names, self.text(6, surrogates=False)]): self.value(
                    6, surrogates=False
                )
                for _ in range(rng.randrange(4))
            }
            return msdp_encode(variables)
        if roll < 0.7:
            return bytes(
                rng.choice(b"\x01\x02\x03\x04\x05\x06AB1") for _ in range(rng.randrange(60))
            )
        if roll < 0.8:
            n = rng.randrange(1, 60)
            return b"\x01X\x02" + b"\x03\x01Y\x02" * n + b"\x05\x02" * n
        return self.binary(60)

    def ttype_payload(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.7:
            name = rng.choice(
                ["MUDLET 4.17", "TINTIN++", "XTERM-256COLOR", "MTTS 271", "MTTS 99999999",
                 "MTTS -1", "MTTS x", "VT100", "DUMB", "ansi-truecolor", "MTTS \u0663", "MTTS 1_0"]
            )  # fmt: skip
            return b"\x00" + name.encode()
        return self.binary(80)

    def environ_payload(self) -> bytes:
        rng = self.rng
        out = bytearray(rng.choice([b"\x00", b"\x02", b"\x01", b""]))
        for _ in range(rng.randrange(7)):
            out.append(rng.choice([0, 3]))
            names = ["CLIENT_NAME", "CLIENT_VERSION", "TERMINAL_TYPE", "MTTS", "CHARSET"]
            out += rng.choice([*names, self.text(8)]).encode("utf-8", errors="surrogatepass")
            if rng.random() < 0.8:
                out.append(1)
                out += rng.choice(
                    [b"UTF-8", b"utf_8", b"271", b"99999999999", b"\x02\x01", b"", self.binary(12)]
                )
        return bytes(out)

    def charset_payload(self) -> bytes:
        rng = self.rng
        kind = rng.choice([b"\x01", b"\x02", b"\x03", b""])
        if kind == b"\x01":
            prefix = rng.choice([b"", b"[TTABLE]", b"[TTABLE]\x01", b"[TTABLE]\x01;", b"[TTABLE"])
            sep = rng.choice([b";", b" ", b"\x00", b"\xff", b""])
            names = [
                rng.choice([b"UTF-8", b"utf8", b" UTF-8 ", b"KOI8-R"])
                for _ in range(rng.randrange(4))
            ]
            return kind + prefix + sep + sep.join(names)
        if kind == b"\x02":
            return kind + rng.choice([b"UTF-8", b"utf8", b"", self.binary(10)])
        return kind + self.binary(20)

    # -- telnet streams --

    AGREES = (
        iac(IAC, DO, Opt.MCCP3), iac(IAC, DO, Opt.GMCP), iac(IAC, DO, Opt.MSDP),
        iac(IAC, DO, Opt.CHARSET), iac(IAC, DO, Opt.EOR), iac(IAC, DO, Opt.MSSP),
        iac(IAC, DO, Opt.MCCP2), iac(IAC, DO, Opt.SGA), iac(IAC, DO, Opt.ECHO),
        iac(IAC, WILL, Opt.TTYPE), iac(IAC, WILL, Opt.NAWS), iac(IAC, WILL, Opt.NEW_ENVIRON),
        iac(IAC, WILL, Opt.CHARSET), iac(IAC, WILL, Opt.BINARY),
    )  # fmt: skip
    FIXED = (
        b"look\r\n", b"say hi\n", b"\r", b"\n", b"\x00", b"\r\x00", b"\xff\xff", b"\xff",
        iac(IAC, SB), iac(IAC, SE), iac(IAC, SB, Opt.GMCP), iac(IAC, 246), b"ab\xff\xf7",
        b"ab\xff\xf8", iac(IAC, 244), b"\xff\xfa\xff\xff", iac(IAC, SB, Opt.MCCP3, IAC, SE),
    )  # fmt: skip

    def option(self) -> int:
        rng = self.rng
        return rng.choice(list(Opt)) if rng.random() < 0.7 else rng.randrange(256)

    def handshake(self) -> bytes:
        rng = self.rng
        pieces = list(self.AGREES)
        rng.shuffle(pieces)
        names = ["MUDLET 4.17", "XTERM-256COLOR", "MTTS 271", "TINTIN++", "DUMB", "MTTS 2047"]
        for _ in range(rng.randrange(1, 5)):
            pieces.append(sb(Opt.TTYPE, b"\x00" + rng.choice(names).encode()))
        pieces.append(sb(Opt.NAWS, struct.pack(">HH", rng.randrange(65536), rng.randrange(65536))))
        pieces.append(sb(Opt.NEW_ENVIRON, self.environ_payload()))
        pieces.append(sb(Opt.CHARSET, b"\x02UTF-8"))
        pieces.append(sb(Opt.GMCP, b'Core.Supports.Set ["Char 1", "Room 1"]'))
        pieces.append(sb(Opt.MSDP, b"\x01CLIENT_NAME\x02Mudlet\x01UTF_8\x021"))
        return b"".join(pieces)

    def plain_piece(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.2:
            return self.binary()
        if roll < 0.35:
            return rng.choice(self.FIXED)
        if roll < 0.45:
            return rng.choice(self.AGREES)
        if roll < 0.55:
            return iac(IAC, rng.choice([WILL, WONT, DO, DONT]), self.option())
        option = rng.random()
        if option < 0.1:
            return sb(Opt.TTYPE, self.ttype_payload())
        if option < 0.2:
            payload = rng.choice([self.binary(8), rng.randbytes(4)])
            return sb(Opt.NAWS, payload)
        if option < 0.3:
            return sb(Opt.NEW_ENVIRON, self.environ_payload())
        if option < 0.4:
            return sb(Opt.CHARSET, self.charset_payload())
        if option < 0.55:
            return sb(Opt.MSDP, self.msdp_payload())
        if option < 0.9:
            return sb(Opt.GMCP, self.gmcp_payload())
        return sb(self.option(), self.binary(30))

    def mccp3_piece(self) -> bytes:
        rng = self.rng
        inner = b"".join(self.plain_piece() for _ in range(rng.randrange(8)))
        kind = rng.random()
        if kind < 0.3:
            stream = zlib.compress(inner)
        elif kind < 0.5:
            compressor = zlib.compressobj()
            stream = compressor.compress(inner) + compressor.flush(zlib.Z_SYNC_FLUSH)
        elif kind < 0.7:
            corrupt = bytearray(zlib.compress(inner + b"padding\r\n"))
            for _ in range(rng.randrange(1, 4)):
                corrupt[rng.randrange(len(corrupt))] ^= rng.randrange(1, 256)
            stream = bytes(corrupt)
        elif kind < 0.85:
            whole = zlib.compress(inner)
            stream = whole[: rng.randrange(len(whole) + 1)]
        elif kind < 0.92:
            stream = rng.choice(self.bombs)
        else:
            stream = self.binary(40)
        after = b"".join(self.plain_piece() for _ in range(rng.randrange(3)))
        return iac(IAC, SB, Opt.MCCP3, IAC, SE) + stream + after

    def telnet_stream(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.4:
            prefix = self.handshake()
        else:
            prefix = b"".join(rng.sample(self.AGREES, rng.randrange(len(self.AGREES) + 1)))
        pieces = []
        for _ in range(rng.randrange(25)):
            pieces.append(self.mccp3_piece() if rng.random() < 0.08 else self.plain_piece())
        return prefix + b"".join(pieces)

    def chunks(self, data: bytes) -> list[bytes]:
        rng = self.rng
        if rng.random() < 0.3:
            return [data]
        out = []
        at = 0
        # Byte by byte only for short inputs: a 40 kB GMCP message fed one
        # byte a call costs a second and finds nothing 16-byte steps do not.
        caps = [1, 3, 16, 200, 5000] if len(data) < 2000 else [16, 200, 5000]
        step_cap = rng.choice(caps)
        while at < len(data):
            step = rng.randrange(1, step_cap + 1)
            out.append(data[at : at + step])
            at += step
        return out

    def limits(self) -> dict[str, int]:
        return self.rng.choice(
            [
                {},
                {"max_partial_line": 64, "max_subnegotiation": 48, "max_inflated": 256},
                {"max_partial_line": 1, "max_subnegotiation": 1, "max_inflated": 1},
                {"max_partial_line": 10**6, "max_subnegotiation": 10**6, "max_inflated": 10**6},
            ]
        )

    # -- frames --

    def ws_frame(self) -> str | bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return self.binary(60)
        if roll < 0.2:
            return self.text(60)
        if roll < 0.35:
            return self.json_text()
        if roll < 0.65:
            cmdname = rng.choice(
                ["text", "TEXT", "Text", "tExT", "prompt", "Prompt", "DEFAULT", "default", "look",
                 "a.b_c", "x" * 64, "x" * 65, "1text", "text ", "\uff54ext", "\u212a", "",
                 self.text(10), self.scalar()]
            )  # fmt: skip
            args = self.value(4) if rng.random() < 0.2 else [self.value(4) for _ in range(3)]
            kwargs = self.value(4) if rng.random() < 0.2 else {"k": self.value(4)}
            text = json.dumps([cmdname, args, kwargs][: rng.choice([3, 3, 3, 2, 4])])
            return self.mutate(text) if rng.random() < 0.1 else text
        if roll < 0.85:
            envelope: dict[str, Any] = {}
            if rng.random() < 0.9:
                envelope["proto"] = rng.choice(["gmcp", "text", "prompt", "Text", self.scalar()])
            if rng.random() < 0.8:
                envelope["id"] = rng.choice([self.gmcp_package(), self.scalar(), ""])
            if rng.random() < 0.8:
                envelope["data"] = rng.choice(
                    [self.json_text(), self.value(), self.supports_list()]
                )
            return json.dumps(envelope)
        return self.gmcp_payload().decode("utf-8", errors="surrogatepass")

    def link_body(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.15:
            return self.binary(80)
        if roll < 0.3:
            return self.json_text().encode("utf-8", errors="surrogatepass")
        if roll < 0.7:
            fields: dict[str, Any] = {}
            if rng.random() < 0.9:
                fields["type"] = rng.choice([*(c.__name__ for c in MESSAGE_TYPES), self.text(8)])
            for name in ("sessid", "txid", "cmdname", "args", "kwargs", "sync_data", "reason",
                         "sessions", "version", "pid"):  # fmt: skip
                if rng.random() < 0.5:
                    fields[name] = rng.choice(
                        [self.value(4), 1, "1", [1], {"a": 1}, "1" * 5000, 1e308, [{"a": 1}]]
                    )
            if rng.random() < 0.2:
                return json.dumps({"__items__": list(fields.items())}).encode()
            text = json.dumps(fields)
            if rng.random() < 0.1:
                text = text.replace("1e+308", rng.choice(["Infinity", "NaN", "-Infinity"]))
            return text.encode()
        if roll < 0.9:
            value = self.value(any_keys=True, huge=False, surrogates=False)
            message = rng.choice(
                [DataIn(1, "x", (value,), {"k": value}), SessionUpdate(1, {"X": value}),
                 Snapshot(({"a": value},)), DataOut(2, "text", (value,))]
            )  # fmt: skip
            try:
                return encode(message)[4:]
            except WireError:  # not expected for these values; the round trip check says
                return b"{}"
        return rng.choice(
            [b'{"type":"DataIn","sessid":Infinity,"cmdname":"x"}', b'{"type":"Done","txid":NaN}',
             b'{"type":{}}', b'{"type":["DataIn"]}', b'"type"', b'["type"]',
             b'{"__items__":[[{"a":1},2]]}', b'{"__items__":5}', b'{"__items__":[[1]]}',
             b"\xef\xbb\xbf{}", b"\x00\x00\x00{", b'{"type":"Snapshot","sessions":[[1]]}']
        )  # fmt: skip


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except GeneratorError:
            raise
        except Exception as exc:
            raise GeneratorError(f"{method.__name__}: {type(exc).__name__}: {exc}") from exc

    return guarded


for _name, _method in list(vars(Gen).items()):
    if callable(_method) and not _name.startswith("__"):
        setattr(Gen, _name, _guard(_method))


# -- the properties -------------------------------------------------------------------------


def check_telnet(gen: Gen) -> str:
    rng = gen.rng
    local = {gen.option() for _ in range(rng.randrange(9))}
    remote = {gen.option() for _ in range(rng.randrange(9))}
    limit = gen.limits()
    data = gen.telnet_stream()
    protocol = TelnetProtocol(local_options=local, remote_options=remote, **limit)
    if rng.random() < 0.5:
        protocol.request_local(Opt.MCCP3, True)
    raised = False
    for chunk in gen.chunks(data):
        try:
            events = protocol.receive_data(chunk)
        except TelnetProtocolError:
            raised = True
            continue
        odd = [e for e in events if not isinstance(e, TELNET_EVENTS)]
        expect(not odd, f"odd events {odd!r}")
        expect(isinstance(protocol.bytes_to_send(), bytes), "bytes_to_send is not bytes")
    return DOCUMENTED if raised else RETURNED


def check_mudtelnet(gen: Gen) -> str:
    rng = gen.rng
    proto = MudTelnet(
        mccp=rng.random() < 0.8,
        max_json_depth=rng.choice([32, 32, 0, 1, 5, 200]),
        max_gmcp_supports=rng.choice([64, 0, 3]),
        **gen.limits(),
    )
    proto.start()
    proto.data_to_send()
    raised = False
    for chunk in gen.chunks(gen.telnet_stream()):
        try:
            events = proto.receive_data(chunk)
        except TelnetProtocolError:
            raised = True
        else:
            for event in events:
                if not isinstance(event, MUD_EVENTS):
                    raise Violation(f"odd event {event!r}")
                if isinstance(event, OOBInput):
                    expect(event.cmdname not in RESERVED, f"OOB named {event.cmdname!r}")
        expect(len(proto.gmcp_supports) <= proto.max_gmcp_supports, "supports over the cap")
        action = rng.random()
        if action < 0.3:
            expect(isinstance(proto.data_to_send(), bytes), "data_to_send is not bytes")
        elif action < 0.45:
            proto.send_text(gen.text(30, surrogates=True))
        elif action < 0.6:
            proto.send_prompt(gen.text(20), password=True)
        elif action < 0.75:
            package = gen.gmcp_package().encode("utf-8", "replace").decode()
            proto.send_gmcp(package, gen.value(5, huge=False))
    proto.data_to_send()
    proto.close()
    return DOCUMENTED if raised else RETURNED


def check_sends(gen: Gen) -> str:
    """send_text, send_prompt(password=True), send_gmcp and data_to_send, between feeds."""
    rng = gen.rng
    proto = MudTelnet(mccp=rng.random() < 0.8)
    proto.start()
    proto.receive_data(iac(IAC, DO, Opt.GMCP, IAC, DO, Opt.EOR))
    for _ in range(rng.randrange(1, 8)):
        with_protocol_error = False
        try:
            proto.receive_data(gen.plain_piece())
        except TelnetProtocolError:
            with_protocol_error = True
        text = gen.text(30)
        roll = rng.random()
        if roll < 0.25:
            proto.send_text(text, rng.choice(["utf-8", "ascii", "latin-1"]))
        elif roll < 0.5:
            proto.send_prompt(text, password=True)
        elif roll < 0.8:
            package = rng.choice(["Core.", "Char.", ""]) + gen.text(10)
            proto.send_gmcp(package, gen.value(5))
        if with_protocol_error or rng.random() < 0.5:
            expect(isinstance(proto.data_to_send(), bytes), "data_to_send is not bytes")
    return RETURNED


def check_msdp(gen: Gen) -> str:
    pairs = msdp_decode(gen.msdp_payload())
    expect(isinstance(pairs, list), "msdp_decode did not return a list")
    expect(all(isinstance(name, str) for name, _ in pairs), "a non-str MSDP name")
    return RETURNED


def check_gmcp(gen: Gen) -> str:
    rng = gen.rng
    package = rng.choice(
        ["Core.Supports.Set", "Core.Supports.Add", "Core.Supports.Remove", "CORE.SUPPORTS.ADD"]
        if rng.random() < 0.6
        else [gen.gmcp_package()]
    )
    data = gen.supports_list() if rng.random() < 0.6 else gen.value()
    if rng.random() < 0.05:
        data = nest(data, ["list"] * rng.randrange(3000))
    supports = {f"Old{i}": 1 for i in range(rng.randrange(10))}
    cap = rng.choice([0, 1, 5, 64, rng.randrange(100)])
    before = len(supports)
    refused = update_gmcp_supports(supports, package, data, max_packages=cap)
    if refused is not None:
        limit = cap if package.lower().endswith(".set") else max(cap, before)
        expect(len(supports) <= limit, f"{len(supports)} packages kept, cap {cap}")
    result = gmcp_input(package, data)
    expect(isinstance(result, OOBInput), "gmcp_input did not return OOBInput")
    expect(result.cmdname not in RESERVED, f"gmcp_input named {result.cmdname!r}")
    return RETURNED


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def check_clientjson(gen: Gen) -> str:
    rng = gen.rng
    cap = rng.choice([clientjson.DEFAULT_MAX_DEPTH, 0, 1, 3, 10, 100, 5000])
    if rng.random() < 0.25:
        value = gen.value(huge=False)
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        levels = depth(value)
        if levels <= cap:
            try:
                parsed = clientjson.loads(text, max_depth=cap)
            except ClientJSONError:
                # Refused on purpose: lone surrogates cannot travel as UTF-8.
                expect(_has_lone_surrogate(value), "valid JSON within the cap refused")
                return DOCUMENTED
            expect(parsed == json.loads(text), "differs from json")
            return RETURNED
        try:
            clientjson.loads(text, max_depth=cap)
        except ClientJSONError:
            return DOCUMENTED
        raise Violation(f"depth {levels} accepted with max_depth={cap}")
    source: str | bytes = gen.json_text()
    if rng.random() < 0.2:
        source = source.encode("utf-8", errors="surrogatepass")
    try:
        result = clientjson.loads(source, max_depth=cap)
    except ClientJSONError:
        return DOCUMENTED
    expect(depth(result) <= cap, f"result nested {depth(result)} > {cap}")
    if any(isinstance(v, float) and not math.isfinite(v) for v in walk(result)):
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} chars)"
        raise Finding(f"loads({shown!r}) returned a non-finite float")
    return RETURNED


def check_websocket(gen: Gen) -> str:
    rng = gen.rng
    subprotocol = rng.choice([*SUBPROTOCOLS, "unknown.example.org", ""])
    frame = gen.ws_frame()
    cap = rng.choice([clientjson.DEFAULT_MAX_DEPTH, 0, 1, 5, 200])
    try:
        items = decode_frame(subprotocol, frame, max_json_depth=cap)
    except BadFrame:
        return DOCUMENTED
    expect(isinstance(items, list), "decode_frame did not return a list")
    for item in items:
        if not isinstance(item, ClientText | ClientOOB | ClientGMCP):
            raise Violation(f"odd item {item!r}")
        if isinstance(item, ClientOOB):
            expect(item.cmdname.lower() not in RESERVED, f"OOB named {item.cmdname!r}")
        if isinstance(frame, bytes) or subprotocol == TERMINAL:
            expect(isinstance(item, ClientText), "a terminal/bytes frame gave non-text")
    if subprotocol == SUBPROTOCOLS[0] and isinstance(frame, str):
        # Decoded: so the frame is ["cmdname", [args], {kwargs}] JSON.
        cmdname = json.loads(frame)[0]
        if cmdname.lower() == "text":
            expect(items == [ClientText(items[0].text)], "'text' did not give ClientText")
    return RETURNED


def first_oversized(stream: bytes, max_frame: int) -> int | None:
    pos = 0
    while pos + 4 <= len(stream):
        (size,) = struct.unpack_from(">I", stream, pos)
        if size > max_frame:
            return pos + 4
        pos += 4 + size
    return None


def check_frames(gen: Gen) -> str:
    rng = gen.rng
    bodies = [gen.link_body() for _ in range(rng.randrange(1, 5))]
    for body in bodies:
        try:
            message = decode_body(body)
        except WireError:
            continue
        if not isinstance(message, MESSAGE_TYPES):
            raise Violation(f"decode_body gave {message!r}")
    stream = b"".join(struct.pack(">I", len(b)) + b for b in bodies)
    if rng.random() < 0.3:
        stream = gen.binary(8) + stream  # a stream that does not start on a frame
    max_frame = rng.choice([10**7, 100, 10, 0])
    reader = FrameReader(max_frame=max_frame)
    fed = b""
    for chunk in gen.chunks(stream):
        fed += chunk
        try:
            items = reader.feed(chunk)
        except WireError:
            at = first_oversized(fed, max_frame)
            expect(at is not None and at > len(fed) - len(chunk), "WireError without a big frame")
            return DOCUMENTED
        expect(all(isinstance(i, (*MESSAGE_TYPES, Undecodable)) for i in items), "odd item")
    expect(first_oversized(fed, max_frame) is None, "a frame over max_frame was accepted")
    return RETURNED


def check_round_trip(gen: Gen) -> str:
    rng = gen.rng
    roll = rng.random()
    if roll < 0.1:
        levels = rng.choice([rng.randrange(MAX_DEPTH - 1, MAX_DEPTH + 3), rng.randrange(5000)])
        kind = rng.choice(["list", "dict", "intdict"])
        message = DataIn(7, "cmd", (nest("leaf", [kind] * levels),), {})
        try:
            frame = encode(message)
        except WireError:
            expect(levels + 1 > MAX_DEPTH, f"{levels} levels refused (MAX_DEPTH {MAX_DEPTH})")
            return DOCUMENTED
        expect(levels + 1 <= MAX_DEPTH, f"{levels} levels encoded past MAX_DEPTH")
        expect(decode_body(frame[4:]) == message, "deep value came back different")
        return RETURNED
    odd = rng.random() < 0.1  # huge ints or lone surrogates: may be refused
    value = gen.value(any_keys=roll >= 0.55, huge=odd, surrogates=odd)
    value = nest(value, [rng.choice(["list", "dict", "intdict"]) for _ in range(rng.randrange(31))])
    if roll < 0.55:
        message: Any = DataIn(7, "cmd", (value,), {"k": value}, txid=5)
    else:
        message = SessionUpdate(7, {"protocol_flags": {"SCREENWIDTH": {0: 80}, "X": value}})
    if rng.random() < 0.03:
        key = tuple(gen.scalar(huge=False, surrogates=False) for _ in range(rng.randrange(1, 3)))
        message = SessionUpdate(7, {"protocol_flags": {"X": {key: 1}}})
        try:
            frame = encode(message)
        except WireError as exc:
            raise Finding(f"tuple key {key!r} cannot be encoded: {exc}") from None
        expect(decode_body(frame[4:]) == message, "tuple key came back different")
        return RETURNED
    try:
        frame = encode(message)
    except WireError as exc:
        expect(odd, f"a plain value was refused: {exc}")
        return DOCUMENTED
    expect(decode_body(frame[4:]) == message, "value came back different")
    expect(FrameReader().feed(frame) == [message], "FrameReader gave something else")
    return RETURNED


CHECKS: dict[str, Callable[[Gen], str]] = {
    "telnet.TelnetProtocol": check_telnet,
    "mudtelnet.MudTelnet": check_mudtelnet,
    "mudtelnet.send_* between feeds": check_sends,
    "mudtelnet.msdp_decode": check_msdp,
    "mudtelnet.gmcp (supports+input)": check_gmcp,
    "clientjson.loads": check_clientjson,
    "websocket.decode_frame": check_websocket,
    "wire.FrameReader/decode_body": check_frames,
    "wire.encode round trip": check_round_trip,
}
ERROR_NAMES = {
    "telnet.TelnetProtocol": "TelnetProtocolError",
    "mudtelnet.MudTelnet": "TelnetProtocolError",
    "mudtelnet.send_* between feeds": "(none)",
    "mudtelnet.msdp_decode": "(none)",
    "mudtelnet.gmcp (supports+input)": "(none)",
    "clientjson.loads": "ClientJSONError",
    "websocket.decode_frame": "BadFrame",
    "wire.FrameReader/decode_body": "WireError",
    "wire.encode round trip": "WireError",
}


# -- time against input size ------------------------------------------------------------------


def _gmcp_telnet(payload: bytes) -> None:
    proto = MudTelnet(max_subnegotiation=10**7)
    proto.start()
    proto.receive_data(iac(IAC, DO, Opt.GMCP) + sb(Opt.GMCP, payload))


def _swallow(call: Callable[[], Any]) -> None:
    with contextlib.suppress(ClientJSONError, BadFrame, TelnetProtocolError, WireError):
        call()


#: (name, input of about n characters, what to run on it).
PROBES: list[tuple[str, Callable[[int], Any], Callable[[Any], None]]] = [
    ("clientjson.loads, unclosed \\\" run", lambda n: "[" * 40 + '"' + '\\"' * (n // 2),
     lambda t: _swallow(lambda: clientjson.loads(t))),
    ("clientjson.loads, [ x n", lambda n: "[" * n, lambda t: _swallow(lambda: clientjson.loads(t))),
    ("clientjson.loads, many strings", lambda n: "[" * 40 + '"a",' * (n // 4),
     lambda t: _swallow(lambda: clientjson.loads(t))),
    ("decode_frame gmcp, unclosed \\\" run", lambda n: 'Core.Hello ["' + '\\"' * (n // 2),
     lambda t: _swallow(lambda: decode_frame("gmcp.mudstandards.org", t))),
    ("MudTelnet GMCP, unclosed \\\" run", lambda n: b'Core.Hello ["' + b'\\"' * (n // 2),
     lambda t: _swallow(lambda: _gmcp_telnet(t))),
    ("TelnetProtocol, one long line", lambda n: b"a" * n,
     lambda t: _swallow(lambda: TelnetProtocol(max_partial_line=10**8).receive_data(t))),
    ("msdp_decode, nested tables", lambda n: b"\x01A\x02\x03" * (n // 4), msdp_decode),
    ("FrameReader, fed byte by byte", lambda n: encode(DataIn(1, "x", ("a" * n,))),
     lambda t: [FrameReader().feed(t[i : i + 1]) for i in range(len(t))]),
]  # fmt: skip


def scaling(size: int = 4000) -> list[str]:
    """Time each probe at ``size`` and 4 x ``size``; name those that grow much faster."""
    lines = []
    for name, make, run in PROBES:
        times = []
        for n in (size, 4 * size):
            data = make(n)
            best = math.inf
            for _ in range(3):  # the best of three: less noise from a busy machine
                start = time.perf_counter()
                run(data)
                best = min(best, time.perf_counter() - start)
            times.append(best)
        ratio = times[1] / max(times[0], 1e-6)
        superlinear = ratio > 8 and times[1] > 0.02
        mark = "  <- grows faster than linear" if superlinear else ""
        lines.append(
            f"  {name:38} {size:>6}: {times[0] * 1000:8.1f} ms  {4 * size:>6}: "
            f"{times[1] * 1000:8.1f} ms  (x{ratio:.1f}){mark}"
        )
    return lines


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Tally:
    examples: int = 0
    documented: int = 0
    returned: int = 0
    other: int = 0
    violations: int = 0
    generator_errors: int = 0
    findings: int = 0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)
    finding_samples: list[str] = field(default_factory=list)


def run_one(name: str, count: int, seed: int) -> Tally:
    rng = random.Random(f"{seed}:{name}")
    gen = Gen(rng)
    check = CHECKS[name]
    tally = Tally()
    start = time.perf_counter()
    for index in range(count):
        tally.examples += 1
        try:
            outcome = check(gen)
        except GeneratorError as exc:
            tally.generator_errors += 1
            if len(tally.samples) < 3:
                tally.samples.append(f"example {index}: generator error (a bug here): {exc}")
            continue
        except Violation as exc:
            tally.violations += 1
            if len(tally.samples) < 3:
                tally.samples.append(f"example {index}: contract broken: {exc}")
            continue
        except Finding as exc:
            tally.findings += 1
            if len(tally.finding_samples) < 2:
                tally.finding_samples.append(f"example {index}: {exc}")
            continue
        except Exception as exc:
            tally.other += 1
            if len(tally.samples) < 3:
                last = traceback.format_exception(exc)[-4:]
                tally.samples.append(
                    f"example {index}: {type(exc).__name__}: {str(exc)[:200]}\n" + "".join(last)
                )
            continue
        if outcome == DOCUMENTED:
            tally.documented += 1
        else:
            tally.returned += 1
    tally.seconds = time.perf_counter() - start
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=120_000, help="total examples")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--quick", action="store_true", help="a small run (2,000 examples)")
    args = parser.parse_args(argv)
    total = 2_000 if args.quick else args.examples
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzz: {total:,} examples, seed {seed} (rerun: --seed {seed} --examples {total})")
    counts = {name: max(1, round(total * share)) for name, share in SHARES.items()}
    counts["websocket.decode_frame"] += total - sum(counts.values())  # the rounding

    header = (
        f"{'decoder':32} {'examples':>9} {'documented error':>24} {'returned':>9} "
        f"{'other exc':>9} {'violated':>8} {'seconds':>8}"
    )
    print(header)
    print("-" * len(header))
    tallies: dict[str, Tally] = {}
    for name, count in counts.items():
        tally = run_one(name, count, seed)
        tallies[name] = tally
        documented = f"{tally.documented:,} {ERROR_NAMES[name]}"
        print(
            f"{name:32} {tally.examples:>9,} {documented:>24} {tally.returned:>9,} "
            f"{tally.other:>9,} {tally.violations:>8,} {tally.seconds:>8.1f}",
            flush=True,
        )
    print("-" * len(header))
    examples = sum(t.examples for t in tallies.values())
    other = sum(t.other for t in tallies.values())
    violations = sum(t.violations for t in tallies.values())
    seconds = sum(t.seconds for t in tallies.values())
    documented = sum(t.documented for t in tallies.values())
    returned = sum(t.returned for t in tallies.values())
    print(
        f"{'total':32} {examples:>9,} {documented:>24,} {returned:>9,} "
        f"{other:>9,} {violations:>8,} {seconds:>8.1f}"
    )
    for name, tally in tallies.items():
        for sample in tally.samples:
            print(f"\n[{name}] {sample}")
    findings = {name: t for name, t in tallies.items() if t.findings}
    if findings:
        print("\nfindings (docstring promises beyond the contracts; not in PASS/FAIL):")
        for name, tally in findings.items():
            print(f"  {name}: {tally.findings:,} examples")
            for sample in tally.finding_samples:
                print(f"    {sample}")
    print(
        "\ntime against input size, best of 3 (x4 input: x4 time is linear, x16 quadratic;"
        " not in PASS/FAIL):"
    )
    probe_lines = scaling(1000 if args.quick else 4000)
    print("\n".join(probe_lines))
    broken = sum(t.generator_errors for t in tallies.values())
    if broken:
        print(f"\n{broken} examples could not be generated (a bug in this script)")
    ok = other == 0 and violations == 0 and broken == 0
    verdict = "PASS" if ok else "FAIL"
    print(
        f"\n{verdict}: {examples:,} examples in {seconds:.1f} s; {other} unexpected exceptions, "
        f"{violations} contract violations (seed {seed})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

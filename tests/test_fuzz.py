"""Fuzzing every decoder a client (or the portal link) can reach.

Each property feeds arbitrary input to one decoder and asserts that only the
error its docstring documents can escape, plus the few things the decoder
promises about what it returns (depth caps, round trips, that out-of-band
input is never called ``text``). The inputs mix random bytes and text with
well-formed pieces (telnet negotiations and subnegotiations, GMCP with hostile
JSON, MCCP3 streams, Evennia and mudstandards frames, link frames), so that
the decoders get past their first check and into their deep states.

``benchmarks/fuzz.py`` runs the same contracts with 100,000+ examples.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import struct
import time
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

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
    BadFrame,
    ClientGMCP,
    ClientOOB,
    ClientText,
    decode_frame,
)
from trio_mud.wire import MAX_DEPTH, FrameReader, Undecodable, WireError, decode_body, encode

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_LIGHT = settings(FUZZ, max_examples=100)
FUZZ_HEAVY = settings(FUZZ, max_examples=300)

MESSAGE_TYPES = (
    Connect, DataIn, DataOut, Disconnect, SessionUpdate, Done, Pause, Paused, Resume, Loaded,
    ReloadRequest, Snapshot, Hello,
)  # fmt: skip
MUD_EVENTS = (TextLine, FlagsChanged, OOBInput, Settled, MSSPRequest, BadInput)
TELNET_EVENTS = (TextLine, Command, OptionChange, Subnegotiation)
RESERVED_CMDNAMES = ("text", "prompt", "default")


# -- helpers --------------------------------------------------------------------------------


def iac(*parts: int | bytes | str) -> bytes:
    """Bytes from ints (single bytes), bytes and str (UTF-8)."""
    out = bytearray()
    for part in parts:
        if isinstance(part, int):
            out.append(part)
        elif isinstance(part, str):
            out += part.encode()
        else:
            out += part
    return bytes(out)


def sb(option: int, payload: bytes | str) -> bytes:
    """``IAC SB option payload IAC SE`` with IAC doubled in the payload."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", errors="surrogatepass")
    return iac(IAC, SB, option, payload.replace(b"\xff", b"\xff\xff"), IAC, SE)


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


def all_floats_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return True


def nest(value: Any, kinds: list[str]) -> Any:
    """``value`` wrapped once per entry of ``kinds``: "list", "dict" or "intdict"."""
    for kind in reversed(kinds):
        if kind == "list":
            value = [value]
        elif kind == "dict":
            value = {"a": value}
        else:
            value = {0: value}
    return value


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# -- JSON -----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def deep_json_text(draw: st.DrawFn) -> str:
    """Arrays and objects nested 1..3000 deep, closed or not, around any scalar."""
    levels = draw(st.integers(min_value=1, max_value=3000))
    opener = draw(st.sampled_from(["[", '{"a":', "[1,", '{"__items__":']))
    closer = "]" if opener[0] == "[" else "}"
    inner = draw(st.sampled_from(["1", '"x"', "[]", "{}", "null", '"[[[["']))
    closed = draw(st.booleans())
    return opener * levels + inner + (closer * levels if closed else "")


@st.composite
def huge_number_text(draw: st.DrawFn) -> str:
    digits = draw(st.integers(min_value=1, max_value=5000))
    lead = draw(st.sampled_from(["", "-"]))
    tail = draw(st.sampled_from(["", ".5", "e10", "e999", "E-999", ".0e400"]))
    return lead + "9" * digits + tail


json_text = st.one_of(
    json_values.map(json.dumps),
    json_values.map(lambda v: json.dumps(v, indent=1, ensure_ascii=False)),
    deep_json_text(),
    huge_number_text(),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "[1e999]", '{"a": -1e400}']),
    st.text(alphabet='[]{}",:0123456789.eE-+ \\u truefalsnl', max_size=40),
    st.text(max_size=40),
)


# -- telnet pieces --------------------------------------------------------------------------

options = st.sampled_from(list(Opt)) | st.integers(min_value=0, max_value=255)
verbs = st.sampled_from([WILL, WONT, DO, DONT])

#: What a capable client says to the server's opening offers.
CLIENT_AGREES = [
    iac(IAC, DO, Opt.MCCP3),
    iac(IAC, DO, Opt.GMCP),
    iac(IAC, DO, Opt.MSDP),
    iac(IAC, DO, Opt.CHARSET),
    iac(IAC, DO, Opt.EOR),
    iac(IAC, DO, Opt.MSSP),
    iac(IAC, DO, Opt.MCCP2),
    iac(IAC, DO, Opt.SGA),
    iac(IAC, DO, Opt.ECHO),
    iac(IAC, WILL, Opt.TTYPE),
    iac(IAC, WILL, Opt.NAWS),
    iac(IAC, WILL, Opt.NEW_ENVIRON),
    iac(IAC, WILL, Opt.CHARSET),
    iac(IAC, WILL, Opt.BINARY),
]

gmcp_packages = st.sampled_from(
    [
        "Core.Hello", "Core.Supports.Set", "Core.Supports.Add", "Core.Supports.Remove",
        "core.supports.set", "Char.Login.Credentials", "Char.Login", "Core.Ping", "Text",
        "text", "Prompt", "default", "Room.Info", "Char.Vitals", ".", "_", "Ü.x",
    ]
) | st.text(max_size=20)  # fmt: skip

support_entries = st.lists(
    st.sampled_from(
        ["Char 1", "Room", "Name \u00b2", "Name 99999999999", "  Spaces 12  ", "9x", ""]
    )
    | st.builds(lambda n, v: f"Pkg{n} {v}", st.integers(0, 200), st.integers(0, 99_999))
    | st.text(max_size=70)
    | json_scalars,
    max_size=80,
)
hello_data = st.fixed_dictionaries(
    {"client": json_values, "version": json_values}, optional={"x": json_values}
)
SUPPORTS_PACKAGES = [
    "Core.Supports.Set", "Core.Supports.Add", "Core.Supports.Remove", "core.supports.SET"
]  # fmt: skip


@st.composite
def gmcp_payload(draw: st.DrawFn) -> bytes:
    """``Package.Name <data>``: supports lists, Core.Hello, or any package with any JSON."""
    kind = draw(st.sampled_from(["supports", "hello", "any", "bare"]))
    if kind == "supports":
        package = draw(st.sampled_from(SUPPORTS_PACKAGES))
        data = draw(support_entries.map(json.dumps) | json_text)
    elif kind == "hello":
        package = draw(st.sampled_from(["Core.Hello", "core.hello"]))
        data = draw(hello_data.map(json.dumps) | json_text)
    else:
        package = draw(gmcp_packages)
        data = "" if kind == "bare" else draw(json_text)
    sep = draw(st.sampled_from([" ", " ", "  ", "\t", " \n "]))
    return (package + sep + data).encode("utf-8", errors="surrogatepass")


ttype_payload = st.one_of(
    st.sampled_from(
        ["MUDLET 4.17", "TINTIN++", "XTERM-256COLOR", "MTTS 271", "MTTS 99999999", "MTTS -1",
         "MTTS x", "VT100", "DUMB", "ansi-truecolor", "Mudlet", "MTTS ٣", "MTTS 1_0"]
    ).map(lambda s: b"\x00" + s.encode()),
    st.binary(max_size=80),
)  # fmt: skip

naws_payload = st.binary(min_size=4, max_size=4) | st.binary(max_size=8)


@st.composite
def environ_payload(draw: st.DrawFn) -> bytes:
    out = bytearray(draw(st.sampled_from([b"\x00", b"\x02", b"\x01", b""])))
    for _ in range(draw(st.integers(0, 6))):
        out.append(draw(st.sampled_from([0, 3])))  # VAR, USERVAR
        name = draw(
            st.sampled_from(
                ["CLIENT_NAME", "CLIENT_VERSION", "TERMINAL_TYPE", "MTTS", "CHARSET", "IPADDRESS"]
            )
            | st.text(max_size=8)
        )
        out += name.encode("utf-8", errors="surrogatepass")
        if draw(st.booleans()):
            out.append(1)  # VALUE
            out += draw(
                st.sampled_from([b"UTF-8", b"utf_8", b"271", b"99999999999", b"\x02\x01", b""])
                | st.binary(max_size=12)
            )
    return bytes(out)


@st.composite
def charset_payload(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([b"\x01", b"\x02", b"\x03", b"\x04", b""]))
    if kind == b"\x01":
        prefix = draw(st.sampled_from([b"", b"[TTABLE]", b"[TTABLE]\x01", b"[TTABLE]\x01;"]))
        sep = draw(st.sampled_from([b";", b" ", b"\x00", b"\xff", b""]))
        names = draw(
            st.lists(st.sampled_from([b"UTF-8", b"utf8", b" UTF-8 ", b"ISO-8859-1"]), max_size=4)
        )
        return kind + prefix + sep + sep.join(names)
    if kind == b"\x02":
        return kind + draw(st.sampled_from([b"UTF-8", b"utf8", b""]) | st.binary(max_size=10))
    return kind + draw(st.binary(max_size=20))


msdp_names = st.sampled_from(
    ["LIST", "REPORT", "UNREPORT", "SEND", "RESET", "CLIENT_NAME", "CLIENT_VERSION",
     "XTERM_256_COLORS", "UTF_8", "ANSI_COLORS", "HEALTH"]
) | st.text(max_size=8)  # fmt: skip
msdp_values = st.recursive(
    st.text(max_size=8) | st.integers() | st.booleans() | st.none(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(msdp_names, kids, max_size=3),
    max_leaves=20,
)
msdp_payload = st.one_of(
    st.dictionaries(msdp_names, msdp_values, max_size=4).map(msdp_encode),
    st.lists(st.sampled_from([b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"A"])).map(
        b"".join
    ),
    st.integers(1, 40).map(lambda n: b"\x01X\x02" + b"\x03\x01Y\x02" * n + b"\x05\x02" * n),
    st.binary(max_size=60),
)


def subnegotiations() -> st.SearchStrategy[bytes]:
    return st.one_of(
        ttype_payload.map(lambda p: sb(Opt.TTYPE, p)),
        naws_payload.map(lambda p: sb(Opt.NAWS, p)),
        environ_payload().map(lambda p: sb(Opt.NEW_ENVIRON, p)),
        charset_payload().map(lambda p: sb(Opt.CHARSET, p)),
        msdp_payload.map(lambda p: sb(Opt.MSDP, p)),
        gmcp_payload().map(lambda p: sb(Opt.GMCP, p)),
        st.tuples(options, st.binary(max_size=30)).map(lambda t: sb(t[0], t[1])),
    )


plain_pieces = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(
        [b"look\r\n", b"say hi\n", b"\r", b"\n", b"\x00", b"\r\x00", b"\xff\xff", b"\xff",
         iac(IAC, SB), iac(IAC, SE), iac(IAC, SB, Opt.GMCP), iac(IAC, 246), iac(IAC, 247),
         iac(IAC, 248), b"ab\xff\xf7", b"ab\xff\xf8", iac(IAC, 244), b"\xff\xfa\xff\xff",
         iac(IAC, SB, Opt.MCCP3, IAC, SE)]
    ),
    st.sampled_from(CLIENT_AGREES),
    st.tuples(verbs, options).map(lambda t: iac(IAC, t[0], t[1])),
    subnegotiations(),
)  # fmt: skip


@st.composite
def mccp3_piece(draw: st.DrawFn) -> bytes:
    """``IAC SB MCCP3 IAC SE`` then a zlib stream: whole, cut off, corrupt, or a bomb."""
    inner = b"".join(draw(st.lists(plain_pieces, max_size=6)))
    kind = draw(st.sampled_from(["finished", "flushed", "corrupt", "truncated", "bomb", "junk"]))
    if kind == "finished":
        stream = zlib.compress(inner)
    elif kind == "flushed":
        compressor = zlib.compressobj()
        stream = compressor.compress(inner) + compressor.flush(zlib.Z_SYNC_FLUSH)
    elif kind == "corrupt":
        stream = bytearray(zlib.compress(inner + b"padding\r\n"))
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(stream) - 1))
            stream[at] ^= draw(st.integers(1, 255))
        stream = bytes(stream)
    elif kind == "truncated":
        whole = zlib.compress(inner)
        stream = whole[: draw(st.integers(0, len(whole)))]
    elif kind == "bomb":
        stream = zlib.compress(draw(st.sampled_from([b"\x00", b"a", b"\r\n"])) * 300_000)
    else:
        stream = draw(st.binary(max_size=40))
    after = b"".join(draw(st.lists(plain_pieces, max_size=3)))
    return iac(IAC, SB, Opt.MCCP3, IAC, SE) + stream + after


telnet_pieces = st.one_of(plain_pieces, mccp3_piece())


@st.composite
def handshake(draw: st.DrawFn) -> bytes:
    """A capable client's whole answer to the opening offers, in some order."""
    pieces = list(draw(st.permutations(CLIENT_AGREES)))
    names = ["MUDLET 4.17", "XTERM-256COLOR", "MTTS 271", "TINTIN++", "DUMB", "MTTS 2047"]
    for _ in range(draw(st.integers(1, 4))):
        pieces.append(sb(Opt.TTYPE, b"\x00" + draw(st.sampled_from(names)).encode()))
    width, height = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    pieces.append(sb(Opt.NAWS, struct.pack(">HH", width, height)))
    environ = b"\x00"
    for name, value in draw(
        st.lists(
            st.sampled_from(
                [("CLIENT_NAME", "Mudlet"), ("CLIENT_VERSION", "4"), ("MTTS", "271"),
                 ("MTTS", "70000"), ("CHARSET", "UTF_8"), ("TERMINAL_TYPE", "xterm-truecolor")]
            ),
            max_size=6,
        )
    ):  # fmt: skip
        environ += b"\x00" + name.encode() + b"\x01" + value.encode()
    pieces.append(sb(Opt.NEW_ENVIRON, environ))
    pieces.append(sb(Opt.CHARSET, b"\x02UTF-8"))
    pieces.append(sb(Opt.GMCP, 'Core.Supports.Set ["Char 1", "Room 1"]'))
    return b"".join(pieces)


@st.composite
def client_bytes(draw: st.DrawFn) -> bytes:
    """A client's whole input: answers to the server's offers, then anything."""
    if draw(st.booleans()):
        prefix = draw(handshake())
    else:
        prefix = b"".join(draw(st.lists(st.sampled_from(CLIENT_AGREES), max_size=10, unique=True)))
    return prefix + b"".join(draw(st.lists(telnet_pieces, max_size=16)))


limits = st.sampled_from(
    [
        {},
        {"max_partial_line": 64, "max_subnegotiation": 48, "max_inflated": 256},
        {"max_partial_line": 1, "max_subnegotiation": 1, "max_inflated": 1},
        {"max_partial_line": 10**6, "max_subnegotiation": 10**6, "max_inflated": 10**6},
    ]
)


# -- 1. TelnetProtocol ----------------------------------------------------------------------


@FUZZ
@given(
    client_bytes(),
    st.lists(st.integers(min_value=0), max_size=12),
    st.sets(options, max_size=8),
    st.sets(options, max_size=8),
    limits,
)
def test_telnet_receive_data_raises_only_protocol_errors(
    data: bytes, cuts: list[int], local: set[int], remote: set[int], limit: dict[str, int]
) -> None:
    whole = TelnetProtocol(local_options=local, remote_options=remote, **limit)
    with contextlib.suppress(TelnetProtocolError):
        events = whole.receive_data(data)
        assert all(isinstance(event, TELNET_EVENTS) for event in events)
    assert isinstance(whole.bytes_to_send(), bytes)

    parts = TelnetProtocol(local_options=local, remote_options=remote, **limit)
    for chunk in chunked(data, cuts):
        # Fed on after an error too: the state stays consistent.
        with contextlib.suppress(TelnetProtocolError):
            events = parts.receive_data(chunk)
            assert all(isinstance(event, TELNET_EVENTS) for event in events)
        assert isinstance(parts.bytes_to_send(), bytes)


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=40), limits)
def test_telnet_random_bytes_over_many_calls_raise_only_protocol_errors(
    chunks: list[bytes], limit: dict[str, int]
) -> None:
    protocol = TelnetProtocol(local_options=set(Opt), remote_options={Opt.NAWS, Opt.TTYPE}, **limit)
    protocol.request_local(Opt.MCCP3, True)
    protocol.receive_data(iac(IAC, DO, Opt.MCCP3))  # our MCCP3 side is on
    for chunk in chunks:
        with contextlib.suppress(TelnetProtocolError):
            protocol.receive_data(chunk)
        protocol.bytes_to_send()


# -- 2. MudTelnet -------------------------------------------------------------------------

server_actions = st.one_of(
    st.just(("data_to_send",)),
    st.tuples(st.just("send_text"), st.text(max_size=20)),
    st.tuples(st.just("send_prompt"), st.text(max_size=20)),
    st.tuples(st.just("send_gmcp"), gmcp_packages, json_values),
)


def run_action(proto: MudTelnet, action: tuple[Any, ...]) -> None:
    if action[0] == "data_to_send":
        assert isinstance(proto.data_to_send(), bytes)
    elif action[0] == "send_text":
        proto.send_text(action[1])
    elif action[0] == "send_prompt":
        proto.send_prompt(action[1], password=True)
    else:
        proto.send_gmcp(action[1], action[2])


@FUZZ_HEAVY
@given(
    client_bytes(),
    st.lists(st.integers(min_value=0), max_size=12),
    st.lists(server_actions, max_size=12),
    limits,
    st.booleans(),
)
def test_mudtelnet_receive_data_raises_only_protocol_errors(
    data: bytes,
    cuts: list[int],
    actions: list[tuple[Any, ...]],
    limit: dict[str, int],
    mccp: bool,
) -> None:
    proto = MudTelnet(mccp=mccp, **limit)
    proto.start()
    assert isinstance(proto.data_to_send(), bytes)
    chunks = chunked(data, cuts)
    for index, chunk in enumerate(chunks):
        with contextlib.suppress(TelnetProtocolError):
            events = proto.receive_data(chunk)
            assert all(isinstance(event, MUD_EVENTS) for event in events)
            for event in events:
                if isinstance(event, OOBInput):
                    assert event.cmdname not in RESERVED_CMDNAMES
        if index < len(actions):
            run_action(proto, actions[index])
    for action in actions[len(chunks) :]:
        run_action(proto, action)
    assert isinstance(proto.data_to_send(), bytes)
    assert isinstance(proto.close(), bytes)


@FUZZ_LIGHT
@given(
    st.lists(gmcp_payload(), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=80),
    st.integers(min_value=0, max_value=40),
)
def test_mudtelnet_gmcp_with_hostile_json_raises_nothing(
    payloads: list[bytes], max_json_depth: int, max_supports: int
) -> None:
    proto = MudTelnet(
        max_json_depth=max_json_depth,
        max_gmcp_supports=max_supports,
        max_subnegotiation=10**6,
    )
    proto.start()
    proto.receive_data(iac(IAC, DO, Opt.GMCP))
    for payload in payloads:
        for event in proto.receive_data(sb(Opt.GMCP, payload)):
            assert isinstance(event, MUD_EVENTS)
            if isinstance(event, OOBInput):
                assert event.cmdname not in RESERVED_CMDNAMES
                assert depth(event.args) <= max(max_json_depth, 1)
                assert depth(event.kwargs) <= max(max_json_depth, 1)
        assert len(proto.gmcp_supports) <= max_supports
        proto.send_gmcp("Core.Ping")
        proto.data_to_send()


def mud_meaning(proto: MudTelnet, chunks: list[bytes]) -> tuple[list[Any], dict[str, Any]]:
    """The events of feeding ``chunks``, with the flags merged (they come per call)."""
    events: list[Any] = []
    flags: dict[str, Any] = {}
    for chunk in chunks:
        for event in proto.receive_data(chunk):
            if isinstance(event, FlagsChanged):
                flags.update(event.flags)
            else:
                events.append(event)
    return events, flags


@FUZZ_LIGHT
@given(
    st.lists(plain_pieces, max_size=8).map(b"".join),
    st.sampled_from(["finished", "flushed"]),
    st.integers(min_value=1, max_value=64),
)
def test_mudtelnet_mccp3_stream_means_what_the_plain_bytes_mean(
    inner: bytes, kind: str, step: int
) -> None:
    """Compressed input, fed in any chunks, gives the events the same bytes plain give.

    Without negotiations inside: MudTelnet judges a subnegotiation by the
    option's state once the whole call is parsed, so ``IAC SB NAWS ... IAC SE
    IAC WILL NAWS`` counts when it comes in one call and not when split.
    """
    assume(iac(IAC, SB, Opt.MCCP3) not in inner)  # a stream inside a stream: not this test
    assume(not any(iac(IAC, verb) in inner for verb in (WILL, WONT, DO, DONT)))
    agree = iac(IAC, DO, Opt.MCCP3, IAC, DO, Opt.GMCP, IAC, DO, Opt.MSDP, IAC, WILL, Opt.TTYPE)
    if kind == "finished":
        stream = zlib.compress(inner)
    else:
        compressor = zlib.compressobj()
        stream = compressor.compress(inner) + compressor.flush(zlib.Z_SYNC_FLUSH)
    big = {"max_subnegotiation": 10**6, "max_partial_line": 10**6, "max_inflated": 10**6}
    plain, packed = MudTelnet(**big), MudTelnet(**big)
    plain.start()
    packed.start()
    data = agree + iac(IAC, SB, Opt.MCCP3, IAC, SE) + stream
    chunks = [data[at : at + step] for at in range(0, len(data), step)]
    assert mud_meaning(packed, chunks) == mud_meaning(plain, [agree, inner])
    assert packed.telnet.inflating == (kind == "flushed")


any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)


@FUZZ_LIGHT
@given(any_text, json_values, any_text)
@example("\ud800", None, "")
def test_mudtelnet_send_calls_never_raise_for_any_str(suffix: str, data: Any, text: str) -> None:
    """``send_text``/``send_prompt`` take any str (unencodable becomes ``?``); ``send_gmcp`` too.

    ``Core.*`` packages are always sent, so the package name is encoded here.
    """
    proto = MudTelnet()
    proto.start()
    proto.receive_data(iac(IAC, DO, Opt.GMCP, IAC, DO, Opt.MCCP2))
    proto.send_text(text)
    proto.send_prompt(text, password=True)
    assert proto.send_gmcp("Core.X", text)
    assert proto.send_gmcp("Core." + suffix, data)
    assert isinstance(proto.data_to_send(), bytes)


# -- 3. msdp_decode, update_gmcp_supports, gmcp_input ------------------------------------------


@FUZZ
@given(msdp_payload)
def test_msdp_decode_never_raises(payload: bytes) -> None:
    pairs = msdp_decode(payload)
    assert all(isinstance(name, str) for name, _ in pairs)
    assert depth([value for _, value in pairs]) <= 17


@FUZZ
@given(
    st.dictionaries(st.text(max_size=10), st.integers(), max_size=10),
    gmcp_packages,
    support_entries | json_values | st.text(max_size=20),
    st.integers(min_value=0, max_value=70),
)
def test_update_gmcp_supports_never_raises_or_grows_past_the_cap(
    supports: dict[str, int], package: str, data: Any, max_packages: int
) -> None:
    before = dict(supports)
    refused = update_gmcp_supports(supports, package, data, max_packages=max_packages)
    if refused is None:
        assert supports == before
        return
    assert refused >= 0
    if package.lower().endswith(".set"):
        assert len(supports) <= max_packages
    else:
        assert len(supports) <= max(max_packages, len(before))
    assert all(
        isinstance(v, int) and 0 <= v <= 9999 for k, v in supports.items() if k not in before
    )


@FUZZ
@given(
    gmcp_packages,
    json_values | st.text() | st.integers(0, 3000).map(lambda n: nest(1, ["list", "dict"] * n)),
)
def test_gmcp_input_never_raises_or_names_typed_input(package: str, data: Any) -> None:
    result = gmcp_input(package, data)
    assert isinstance(result, OOBInput)
    assert result.cmdname not in RESERVED_CMDNAMES
    assert all(isinstance(key, str) for key in result.kwargs)


# -- 4. clientjson ---------------------------------------------------------------------------


@FUZZ
@given(json_text | st.binary(max_size=60), st.integers(min_value=0, max_value=40) | st.none())
@example("[" * 100_000, None)
@example("[" * 5000 + "]" * 5000, 10**6)
def test_clientjson_loads_raises_only_client_json_error_and_caps_depth(
    text: str | bytes, max_depth: int | None
) -> None:
    cap = clientjson.DEFAULT_MAX_DEPTH if max_depth is None else max_depth
    try:
        result = clientjson.loads(text, max_depth=cap)
    except ClientJSONError:
        return
    assert depth(result) <= cap


@FUZZ
@given(json_values, st.integers(min_value=0, max_value=3), st.booleans())
def test_clientjson_loads_valid_json_within_the_depth_like_json_loads(
    value: Any, spare: int, pretty: bool
) -> None:
    text = json.dumps(value, indent=2 if pretty else None, ensure_ascii=pretty)
    levels = depth(value)
    assert clientjson.loads(text, max_depth=levels + spare) == json.loads(text)
    assert clientjson.loads(text.encode(), max_depth=levels + spare) == json.loads(text)
    if levels > 0:
        with pytest.raises(ClientJSONError):
            clientjson.loads(text, max_depth=levels - 1)


@FUZZ_LIGHT
@given(
    st.sampled_from(["", "-"]),
    st.integers(min_value=1, max_value=400),
    st.sampled_from(["", ".5"]),
    st.integers(min_value=300, max_value=100_000),
    st.sampled_from(["{}", "[{}]", '{{"a": {}}}', '["x", [{}], {{}}]']),
)
@example("", 1, "", 999, "{}")
def test_clientjson_loads_never_returns_infinity(
    sign: str, digits: int, fraction: str, exponent: int, shape: str
) -> None:
    """The module promises what comes out "can travel anywhere JSON can": no inf, no NaN.

    ``1e999`` is valid JSON that Python reads as ``inf``; it must be refused
    like ``Infinity`` (or come out finite), or it fails later on the link.
    """
    text = shape.format(f"{sign}{'1' * digits}{fraction}e{exponent}")
    try:
        result = clientjson.loads(text)
    except ClientJSONError:
        return
    assert all_floats_finite(result), f"{text[:60]!r} parsed to {result!r}"


def test_clientjson_nesting_is_not_quadratic_in_unterminated_escaped_quotes() -> None:
    """A client must not be able to stall the event loop with one message.

    ``nesting`` blanks out strings with a regex that, for a run of ``\\"``
    with no closing quote, restarts at every quote: quadratic time. These
    16 kB (a telnet GMCP message fits) take over a second; a 64 KiB WebSocket
    frame (the default cap) about 25 s. A linear scan takes about a
    millisecond, so the bound below leaves a wide margin.
    """
    text = "[" * 40 + '"' + '\\"' * 8_000
    started = time.perf_counter()
    with pytest.raises(ClientJSONError):
        clientjson.loads(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.25, f"clientjson.loads took {elapsed:.2f} s on {len(text)} characters"


# -- 5. websocket.decode_frame ----------------------------------------------------------------

subprotocols = st.sampled_from([*SUBPROTOCOLS, "unknown.example.org", ""])
cmdnames = st.sampled_from(
    ["text", "TEXT", "Text", "tExT", "prompt", "Prompt", "PROMPT", "default", "DEFAULT",
     "Default", "look", "client_options", "a.b_c", "x" * 64, "x" * 65, "1text", "text ",
     "\uff54\uff45\uff58\uff54", "te\uff58t", "\u212a", "", "logged_in"]
) | st.text(max_size=12)  # fmt: skip


evennia_frames = st.tuples(
    cmdnames | json_values,
    st.lists(json_values, max_size=3) | json_values,
    st.dictionaries(st.text(max_size=6), json_values, max_size=3) | json_values,
).map(lambda t: json.dumps(list(t)))
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "proto": st.sampled_from(["gmcp", "text", "prompt", "Text", "GMCP"]) | json_values,
        "id": gmcp_packages | json_values,
        "data": json_text | support_entries | hello_data | json_values,
    },
).map(json.dumps)
gmcp_frames = gmcp_payload().map(lambda b: b.decode("utf-8", errors="surrogatepass"))
frames = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60),
    json_text,
    json_values.map(json.dumps),
    evennia_frames,
    envelopes,
    gmcp_frames,
)


def check_decoded(items: list[Any], subprotocol: str, frame: str | bytes) -> None:
    assert isinstance(items, list)
    for item in items:
        assert isinstance(item, ClientText | ClientOOB | ClientGMCP)
        if isinstance(item, ClientOOB):
            assert item.cmdname.lower() not in RESERVED_CMDNAMES
            assert isinstance(item.args, tuple)
            assert isinstance(item.kwargs, dict)
        if isinstance(frame, bytes) or subprotocol == "terminal.mudstandards.org":
            assert isinstance(item, ClientText)


@FUZZ
@given(subprotocols, frames, st.integers(min_value=0, max_value=40))
@example("v1.evennia.com", '["TEXT", ["hi"], {}]', 32)
@example("v1.evennia.com", '["Text", [], {}]', 32)
@example("v1.evennia.com", '["text", [[[[1]]]], {"a": 1}]', 32)
@example("json.mudstandards.org", '{"proto": "gmcp", "id": "Text", "data": "x"}', 32)
@example("gmcp.mudstandards.org", "Core.Hello " + "[" * 3000, 32)
def test_decode_frame_raises_only_bad_frame(
    subprotocol: str, frame: str | bytes, max_json_depth: int
) -> None:
    try:
        items = decode_frame(subprotocol, frame, max_json_depth=max_json_depth)
    except BadFrame:
        return
    check_decoded(items, subprotocol, frame)


@FUZZ_LIGHT
@given(
    st.sampled_from(["text", "TEXT", "Text", "tExt", "texT"]),
    st.lists(json_values, max_size=3),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
)
def test_decode_frame_evennia_text_in_any_case_is_client_text(
    cmdname: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    frame = json.dumps([cmdname, args, kwargs])
    try:
        items = decode_frame("v1.evennia.com", frame)
    except BadFrame:
        assert depth(args) >= clientjson.DEFAULT_MAX_DEPTH or depth(kwargs) >= 32
        return
    assert len(items) == 1
    assert isinstance(items[0], ClientText)


@FUZZ_LIGHT
@given(
    st.sampled_from(["prompt", "Prompt", "PROMPT", "default", "Default", "DEFAULT"]),
    st.lists(json_values, max_size=3),
)
def test_decode_frame_evennia_refuses_server_only_names(cmdname: str, args: list[Any]) -> None:
    with pytest.raises(BadFrame):
        decode_frame("v1.evennia.com", json.dumps([cmdname, args, {}]))


# -- 6. wire ---------------------------------------------------------------------------------

wire_keys = st.sampled_from(["__items__", "type", "k", ""]) | st.text(max_size=8)
wire_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
wire_values = st.recursive(
    wire_scalars,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(wire_keys, kids, max_size=4)
        | st.dictionaries(st.just("__items__"), kids, min_size=1)
    ),
    max_leaves=16,
)
scalar_keys = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
tuple_keys = st.recursive(
    scalar_keys, lambda kids: st.lists(kids, max_size=3).map(tuple), max_leaves=6
).filter(lambda key: isinstance(key, tuple))
wire_values_any_keys = st.recursive(
    wire_scalars,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(wire_keys, kids, max_size=4)
        | st.dictionaries(scalar_keys, kids, max_size=4)
    ),
    max_leaves=16,
)
nesting_kinds = st.lists(st.sampled_from(["list", "dict", "intdict"]), max_size=30)


@FUZZ
@given(wire_values, nesting_kinds)
@example({"__items__": 1}, [])
@example({"__items__": [[1, 2]]}, ["dict"])
@example({"__items__": 1, "other": 2}, [])
def test_wire_round_trips_data_in(value: Any, kinds: list[str]) -> None:
    value = nest(value, kinds)
    message = DataIn(7, "cmd", (value,), {"k": value}, txid=5)
    assert decode_body(encode(message)[4:]) == message


@FUZZ
@given(wire_values_any_keys, nesting_kinds)
@example({"__items__": {0: 80}}, [])
@example({None: 1, True: 2, 1.5: 3, "": 4}, ["intdict"])
def test_wire_round_trips_session_update_with_non_str_keys(value: Any, kinds: list[str]) -> None:
    value = nest(value, kinds)
    message = SessionUpdate(7, {"protocol_flags": {"SCREENWIDTH": {0: 80}, "X": value}})
    frame = encode(message)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert decode_body(frame[4:]) == message
    assert FrameReader().feed(frame) == [message]


@FUZZ_LIGHT
@given(st.dictionaries(tuple_keys, wire_scalars, min_size=1, max_size=3))
@example({(1, (2, "x")): None})
def test_wire_round_trips_tuple_keys(value: dict[Any, Any]) -> None:
    """wire's docstring: "every dict comes back as it went"; ``_key`` turns lists back into tuples.

    A tuple key must therefore travel like an int key, not fail to encode.
    """
    message = SessionUpdate(7, {"protocol_flags": {"X": value}})
    assert decode_body(encode(message)[4:]) == message


@FUZZ_LIGHT
@given(
    st.integers(min_value=MAX_DEPTH + 1, max_value=5000),
    st.sampled_from(["list", "dict", "intdict"]),
)
def test_wire_encode_refuses_values_nested_past_max_depth(levels: int, kind: str) -> None:
    value = nest("leaf", [kind] * levels)
    with pytest.raises(WireError):
        encode(DataIn(7, "cmd", (value,), {}))


@FUZZ_LIGHT
@given(
    st.integers(min_value=0, max_value=MAX_DEPTH - 3), st.sampled_from(["list", "dict", "intdict"])
)
def test_wire_encodes_values_nested_within_max_depth(levels: int, kind: str) -> None:
    value = nest("leaf", [kind] * levels)
    message = DataIn(7, "cmd", (value,), {})
    assert decode_body(encode(message)[4:]) == message


@FUZZ_LIGHT
@given(st.integers(min_value=4000, max_value=6000))
def test_wire_encode_of_huge_int_round_trips_or_raises_wire_error(digits: int) -> None:
    message = DataIn(7, "cmd", (7 * 10**digits,), {})
    try:
        frame = encode(message)
    except WireError:
        return
    assert decode_body(frame[4:]) == message


message_names = st.sampled_from([cls.__name__ for cls in MESSAGE_TYPES]) | st.text(max_size=8)
message_fields = st.fixed_dictionaries(
    {"type": message_names},
    optional={
        name: json_values | st.sampled_from([1, "1", [1], {"a": 1}, "1" * 5000, 1e308])
        for name in ("sessid", "txid", "cmdname", "args", "kwargs", "sync_data", "reason",
                     "sessions", "version", "pid")
    },
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=80),
    json_text.map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    message_fields.map(lambda d: json.dumps(d).encode()),
    message_fields.map(lambda d: json.dumps({"__items__": list(d.items())}).encode()),
    wire_values.map(lambda v: encode(DataIn(1, "x", (v,)))[4:]),
    st.sampled_from(
        [b'{"type":"DataIn","sessid":Infinity,"cmdname":"x"}', b'{"type":"Done","txid":NaN}',
         b'{"type":{}}', b'{"type":["DataIn"]}', b'"type"', b'["type"]',
         b'{"__items__":[[{"a":1},2]]}', b'{"__items__":5}', b'{"__items__":[[1]]}',
         b'{"type":"Snapshot","sessions":[[1]]}', b'{"type":"SessionUpdate","sessid":1,'
         b'"sync_data":{"__items__":[[[1,[2]],3]]}}', b"\xef\xbb\xbf{}", b"\x00\x00\x00{"]
    ),
)  # fmt: skip


@FUZZ
@given(bodies)
def test_wire_decode_body_raises_only_wire_error(body: bytes) -> None:
    try:
        message = decode_body(body)
    except WireError:
        return
    assert isinstance(message, MESSAGE_TYPES)


@FUZZ
@given(st.lists(bodies, max_size=6), st.lists(st.integers(min_value=0), max_size=8))
def test_frame_reader_turns_whole_frames_into_messages_or_undecodable(
    bodies_: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(struct.pack(">I", len(body)) + body for body in bodies_)
    reader = FrameReader(max_frame=10**6)
    items: list[Any] = []
    for chunk in chunked(stream, cuts):
        items += reader.feed(chunk)
    assert len(items) == len(bodies_)
    for item, body in zip(items, bodies_, strict=True):
        assert isinstance(item, (*MESSAGE_TYPES, Undecodable))
        if isinstance(item, Undecodable):
            with pytest.raises(WireError):
                decode_body(body)


def first_oversized_frame(stream: bytes, max_frame: int) -> int | None:
    """Where the first header over ``max_frame`` ends in ``stream``, if one is reached."""
    pos = 0
    while pos + 4 <= len(stream):
        (size,) = struct.unpack_from(">I", stream, pos)
        if size > max_frame:
            return pos + 4
        pos += 4 + size
    return None


@FUZZ
@given(
    st.lists(
        st.binary(max_size=40) | bodies.map(lambda b: struct.pack(">I", len(b)) + b), max_size=10
    ),
    st.integers(min_value=0, max_value=200),
)
def test_frame_reader_raises_wire_error_only_for_a_frame_over_max_frame(
    chunks: list[bytes], max_frame: int
) -> None:
    reader = FrameReader(max_frame=max_frame)
    fed = b""
    for chunk in chunks:
        fed += chunk
        try:
            items = reader.feed(chunk)
        except WireError:
            oversized = first_oversized_frame(fed, max_frame)
            assert oversized is not None and oversized > len(fed) - len(chunk)
            return
        assert all(isinstance(item, (*MESSAGE_TYPES, Undecodable)) for item in items)
    assert first_oversized_frame(fed, max_frame) is None

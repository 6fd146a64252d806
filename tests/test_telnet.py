"""The sans-I/O telnet parser, fed whole, byte by byte, and split everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mud.protocols.telnet import (
    AYT,
    DO,
    DONT,
    EC,
    EL,
    GA,
    IAC,
    NOP,
    SB,
    SE,
    WILL,
    WONT,
    Command,
    Event,
    Opt,
    OptionChange,
    Subnegotiation,
    TelnetProtocol,
    TelnetProtocolError,
    TextLine,
)


def feed(protocol: TelnetProtocol, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += protocol.receive_data(chunk)
    return events


def splits(data: bytes) -> list[list[bytes]]:
    """The data whole, one byte at a time, and cut in two at every point."""
    ways = [[data], [data[i : i + 1] for i in range(len(data))]]
    ways += [[data[:i], data[i:]] for i in range(1, len(data))]
    return ways


def lines(events: list[Event]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, TextLine)]


MIXED = (
    b"look\r\n"
    b"say hi\r\x00"
    b"north\n"
    b"south\r"
    b"\n"  # belongs to the CR before it: no empty line
    b"a\xff\xffb\r\n"  # an escaped 255 data byte
    b"x\xff\xf1y\r\n"  # IAC NOP inside a line is removed
    b"\xff\xfb\x1f"  # WILL NAWS, between lines
    b"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0"  # SB NAWS 80x24
    b"caf\xc3\xa9\r\n"
    b"partial"
)

EXPECTED_LINES = [b"look", b"say hi", b"north", b"south", b"a\xffb", b"xy", b"caf\xc3\xa9"]


@pytest.mark.parametrize("chunks", splits(MIXED))
def test_lines_are_the_same_however_the_bytes_arrive(chunks: list[bytes]) -> None:
    protocol = TelnetProtocol()
    events = feed(protocol, chunks)
    assert lines(events) == EXPECTED_LINES
    assert Subnegotiation(Opt.NAWS, b"\x00\x50\x00\x18") in events
    assert protocol.partial_line == b"partial"
    # WILL NAWS is refused once (the policy here accepts nothing).
    assert protocol.bytes_to_send() == bytes((IAC, DONT, Opt.NAWS))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\r\nb\r\n", [b"a", b"b"]),
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\rb\r", [b"a", b"b"]),
        (b"a\r\x00b\r\x00", [b"a", b"b"]),
        (b"\r\n\r\n", [b"", b""]),
        (b"\n\n", [b"", b""]),
        (b"\r\r", [b"", b""]),
        (b"a\n\rb\n", [b"a", b"", b"b"]),  # LF CR is two line ends
        (b"a\x00b\n", [b"ab"]),  # a stray NUL carries nothing
    ],
)
def test_line_endings(data: bytes, expected: list[bytes]) -> None:
    for chunks in splits(data):
        assert lines(feed(TelnetProtocol(), chunks)) == expected


def test_trailing_data_stays_partial_until_its_line_ends() -> None:
    protocol = TelnetProtocol()
    assert lines(protocol.receive_data(b"one\r\ntw")) == [b"one"]
    assert protocol.partial_line == b"tw"
    assert lines(protocol.receive_data(b"o\r\nthr")) == [b"two"]
    assert protocol.partial_line == b"thr"


def test_erase_character_and_erase_line() -> None:
    protocol = TelnetProtocol()
    data = b"lool" + bytes((IAC, EC)) + b"k\r\njunk" + bytes((IAC, EL)) + b"who\r\n"
    assert lines(protocol.receive_data(data)) == [b"look", b"who"]


def test_are_you_there_is_answered() -> None:
    protocol = TelnetProtocol()
    events = protocol.receive_data(bytes((IAC, AYT)))
    assert events == [Command(AYT)]
    assert b"[Yes]" in protocol.bytes_to_send()


def test_commands_that_carry_nothing_are_dropped() -> None:
    protocol = TelnetProtocol()
    assert protocol.receive_data(bytes((IAC, NOP, IAC, GA, IAC, SE))) == []


@pytest.mark.parametrize("option", [Opt.ECHO, Opt.LINEMODE, Opt.GMCP, Opt.MCCP2, 200, 7])
def test_unsupported_options_are_refused_exactly_once(option: int) -> None:
    protocol = TelnetProtocol()
    assert protocol.receive_data(bytes((IAC, DO, option, IAC, WILL, option))) == []
    assert protocol.bytes_to_send() == bytes((IAC, WONT, option, IAC, DONT, option))
    # The client accepting our refusal must not start a loop.
    protocol.receive_data(bytes((IAC, DONT, option, IAC, WONT, option)))
    assert protocol.bytes_to_send() == b""
    assert not protocol.local_enabled(option) and not protocol.remote_enabled(option)


def test_accepted_option_is_enabled_once_and_disabled_on_request() -> None:
    protocol = TelnetProtocol(remote_options={Opt.NAWS}, local_options={Opt.SGA})
    events = protocol.receive_data(bytes((IAC, WILL, Opt.NAWS, IAC, DO, Opt.SGA)))
    assert events == [OptionChange(Opt.NAWS, False, True), OptionChange(Opt.SGA, True, True)]
    assert protocol.bytes_to_send() == bytes((IAC, DO, Opt.NAWS, IAC, WILL, Opt.SGA))
    # Saying it again changes nothing and is not answered (no loop).
    assert protocol.receive_data(bytes((IAC, WILL, Opt.NAWS))) == []
    assert protocol.bytes_to_send() == b""
    events = protocol.receive_data(bytes((IAC, WONT, Opt.NAWS)))
    assert events == [OptionChange(Opt.NAWS, False, False)]
    assert protocol.bytes_to_send() == bytes((IAC, DONT, Opt.NAWS))


def test_our_request_follows_rfc_1143() -> None:
    protocol = TelnetProtocol(local_options={Opt.ECHO})
    protocol.request_local(Opt.ECHO, True)
    protocol.request_local(Opt.ECHO, True)  # already asked: not sent twice
    assert protocol.bytes_to_send() == bytes((IAC, WILL, Opt.ECHO))
    # Change of mind before the answer: queued, sent when the answer comes.
    protocol.request_local(Opt.ECHO, False)
    assert protocol.bytes_to_send() == b""
    events = protocol.receive_data(bytes((IAC, DO, Opt.ECHO)))
    assert events == []  # never really on: we turn it off straight away
    assert protocol.bytes_to_send() == bytes((IAC, WONT, Opt.ECHO))
    protocol.receive_data(bytes((IAC, DONT, Opt.ECHO)))
    assert not protocol.local_enabled(Opt.ECHO)
    assert protocol.bytes_to_send() == b""


def test_client_refusing_our_request() -> None:
    protocol = TelnetProtocol(remote_options={Opt.TTYPE})
    protocol.request_remote(Opt.TTYPE, True)
    assert protocol.bytes_to_send() == bytes((IAC, DO, Opt.TTYPE))
    assert protocol.receive_data(bytes((IAC, WONT, Opt.TTYPE))) == []
    assert protocol.bytes_to_send() == b""  # a refusal is not answered
    assert not protocol.remote_enabled(Opt.TTYPE)


@pytest.mark.parametrize(
    "chunks", splits(bytes((IAC, SB, Opt.GMCP)) + b"Core.Hello {\xff\xff}" + bytes((IAC, SE)))
)
def test_subnegotiation_with_escaped_iac(chunks: list[bytes]) -> None:
    events = feed(TelnetProtocol(), chunks)
    assert events == [Subnegotiation(Opt.GMCP, b"Core.Hello {\xff}")]


def test_subnegotiation_without_se_recovers() -> None:
    protocol = TelnetProtocol()
    events = protocol.receive_data(bytes((IAC, SB, 24, 0, IAC, NOP)) + b"look\r\n")
    assert lines(events) == [b"look"]


def test_partial_line_cap_is_a_protocol_error() -> None:
    protocol = TelnetProtocol(max_partial_line=10)
    protocol.receive_data(b"0123456789")
    with pytest.raises(TelnetProtocolError) as info:
        protocol.receive_data(b"x")
    assert "far too long" in info.value.reply


def test_complete_long_line_within_one_chunk_is_still_capped() -> None:
    with pytest.raises(TelnetProtocolError):
        TelnetProtocol(max_partial_line=10).receive_data(b"x" * 11 + b"\r\n")


def test_subnegotiation_cap_is_a_protocol_error() -> None:
    protocol = TelnetProtocol(max_subnegotiation=8)
    with pytest.raises(TelnetProtocolError) as info:
        protocol.receive_data(bytes((IAC, SB, Opt.GMCP)) + b"x" * 9)
    assert "oversized" in info.value.reply


def test_encode_text() -> None:
    assert TelnetProtocol.encode_text("a\nb") == b"a\r\nb"
    assert TelnetProtocol.encode_text("a\r\nb\rc") == b"a\r\nb\r\nc"
    assert TelnetProtocol.encode_text("\u00ff", "latin-1") == b"\xff\xff"
    assert TelnetProtocol.encode_text("caf\u00e9") == b"caf\xc3\xa9"
    assert TelnetProtocol.encode_text("\u2603", "latin-1") == b"?"


def test_go_ahead_ends_prompts() -> None:
    assert TelnetProtocol().go_ahead() == bytes((IAC, GA))


def test_send_subnegotiation_doubles_iac() -> None:
    protocol = TelnetProtocol()
    protocol.send_subnegotiation(Opt.GMCP, b"a\xffb")
    assert protocol.bytes_to_send() == bytes((IAC, SB, Opt.GMCP)) + b"a\xff\xffb" + bytes((IAC, SE))


# -- property tests -------------------------------------------------------------------

_interesting = st.sampled_from(
    [
        b"\xff",
        b"\r",
        b"\n",
        b"\x00",
        b"\xff\xfa",
        b"\xff\xf0",
        b"\xff\xfb",
        b"\xff\xfd",
        b"\xff\xff",
        b"\xfa\x56",
        b"\xff\xfa\x56\xff\xf0",
        b"\xff\xfa\x57\xff\xf0",
        b"look",
    ]
)
_stream = st.lists(st.one_of(st.binary(max_size=20), _interesting), max_size=40).map(b"".join)


@given(_stream, st.lists(st.integers(min_value=0, max_value=400), max_size=10))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_never_raise_and_do_not_depend_on_chunking(
    data: bytes, cuts: list[int]
) -> None:
    def run(chunks: list[bytes]) -> tuple[list[Event], bytes, bytes] | str:
        protocol = TelnetProtocol(
            remote_options={Opt.NAWS},
            local_options={Opt.SGA},
            max_partial_line=64,
            max_subnegotiation=32,
        )
        try:
            events = feed(protocol, chunks)
        except TelnetProtocolError as exc:
            return exc.reason
        return events, protocol.bytes_to_send(), protocol.partial_line

    points = sorted({c for c in cuts if c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert run([data]) == run(chunks)

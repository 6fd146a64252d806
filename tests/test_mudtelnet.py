"""The MUD protocol layer, byte by byte: options, MTTS, OOB, compression."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mud.protocols.mudtelnet import (
    FlagsChanged,
    MSSPRequest,
    MudEvent,
    MudTelnet,
    OOBInput,
    Settled,
    gmcp_input,
    gmcp_package,
    msdp_decode,
    msdp_encode,
)
from trio_mud.protocols.telnet import (
    DO,
    DONT,
    EOR,
    GA,
    IAC,
    SB,
    SE,
    WILL,
    WONT,
    Opt,
    TelnetProtocolError,
    TextLine,
)

DATA = Path(__file__).parent / "data"


def iac(*parts: int | bytes | str) -> bytes:
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
    if isinstance(payload, str):
        payload = payload.encode()
    return iac(IAC, SB, option, payload.replace(b"\xff", b"\xff\xff"), IAC, SE)


class Peer:
    """A MudTelnet and what it sent, decompressed when MCCP2 is on."""

    def __init__(self, **kwargs: Any) -> None:
        self.proto = MudTelnet(**kwargs)
        self.proto.start()
        self.sent = bytearray()
        self.inflater: Any = None
        self.events: list[MudEvent] = []
        self.flags: dict[str, Any] = {}
        self.collect()

    def collect(self) -> bytes:
        data = self.proto.data_to_send()
        return self._take(data)

    def _take(self, data: bytes) -> bytes:
        new = bytearray()
        while data:
            if self.inflater is not None:
                new += self.inflater.decompress(data)
                data = self.inflater.unused_data if self.inflater.eof else b""
                if self.inflater.eof:
                    self.inflater = None
                continue
            marker = iac(IAC, SB, Opt.MCCP2, IAC, SE)
            at = data.find(marker)
            if at < 0:
                new += data
                break
            new += data[: at + len(marker)]
            data = data[at + len(marker) :]
            self.inflater = zlib.decompressobj()
        self.sent += new
        return bytes(new)

    def feed(self, data: bytes, *, bytewise: bool = False) -> list[MudEvent]:
        chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
        events: list[MudEvent] = []
        for chunk in chunks:
            events += self.proto.receive_data(chunk)
        self.events += events
        for event in events:
            if isinstance(event, FlagsChanged):
                self.flags.update(event.flags)
        return events

    def close(self) -> bytes:
        return self._take(self.proto.close())


OFFERS = iac(
    IAC, DO, Opt.TTYPE, IAC, DO, Opt.NAWS, IAC, DO, Opt.NEW_ENVIRON, IAC, DO, Opt.BINARY,
    IAC, WILL, Opt.EOR, IAC, WILL, Opt.CHARSET, IAC, WILL, Opt.GMCP, IAC, WILL, Opt.MSDP,
    IAC, WILL, Opt.MSSP, IAC, WILL, Opt.MCCP2, IAC, WILL, Opt.MCCP3,
)  # fmt: skip

REFUSE_ALL = iac(
    IAC, WONT, Opt.TTYPE, IAC, WONT, Opt.NAWS, IAC, WONT, Opt.NEW_ENVIRON, IAC, WONT, Opt.BINARY,
    IAC, DONT, Opt.EOR, IAC, DONT, Opt.CHARSET, IAC, DONT, Opt.GMCP, IAC, DONT, Opt.MSDP,
    IAC, DONT, Opt.MSSP, IAC, DONT, Opt.MCCP2, IAC, DONT, Opt.MCCP3,
)  # fmt: skip


def test_opening_offers() -> None:
    assert bytes(Peer().sent) == OFFERS
    assert bytes(Peer(mccp=False).sent) == OFFERS.replace(iac(IAC, WILL, Opt.MCCP2), b"").replace(
        iac(IAC, WILL, Opt.MCCP3), b""
    )


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_client_that_refuses_everything_settles_at_once(bytewise: bool) -> None:
    peer = Peer()
    peer.feed(REFUSE_ALL, bytewise=bytewise)
    assert Settled() in peer.events
    assert peer.collect() == b""  # refusals are not answered: no loop
    assert not peer.proto.compressing
    peer.proto.send_text("plain\n")
    assert peer.proto.data_to_send() == b"plain\r\n"


def test_a_client_that_answers_nothing_never_settles_by_itself() -> None:
    peer = Peer()
    peer.feed(b"look\r\n")
    assert Settled() not in peer.events  # the portal's timer decides then
    assert TextLine(b"look") in peer.events


# -- golden handshakes ------------------------------------------------------------------


@pytest.mark.parametrize("bytewise", [False, True])
def test_recorded_tintin_handshake(bytewise: bool) -> None:
    """TinTin++ 2.02.20's real bytes, recorded against this server's offers."""
    record = json.loads((DATA / "tintin_2.02.20_handshake.json").read_text())
    peer = Peer()
    for chunk in record["chunks_from_client"]:
        peer.feed(bytes.fromhex(chunk), bytewise=bytewise)
        peer.collect()
    assert peer.events.count(Settled()) == 1
    flags = peer.flags
    assert flags["CLIENTNAME"] == "TinTin++"
    assert flags["CLIENTVERSION"] == "2.02.20"
    assert flags["TERM"] == "tmux-256color"
    assert flags["MTTS"] == 783  # 271 by TTYPE, plus MNES by NEW-ENVIRON
    for flag in ["ANSI", "VT100", "UTF-8", "XTERM256", "TRUECOLOR", "MNES", "MCCP", "EOR"]:
        assert flags[flag] is True, flag
    assert flags["SCREENREADER"] is False
    assert flags["SCREENWIDTH"] == {0: 120} and flags["SCREENHEIGHT"] == {0: 40}  # resized
    assert "GMCP" not in flags and "MSDP" not in flags  # TinTin++ refuses both by default
    assert peer.proto.compressing and peer.proto.telnet.inflating  # MCCP2 and MCCP3 on
    assert peer.sent.count(sb(Opt.TTYPE, b"\x01")) == 3  # the whole MTTS cycle, no more
    assert peer.proto.enabled(Opt.EOR)
    peer.proto.send_prompt("> ")
    assert peer.collect() == b"> " + iac(IAC, EOR)


MUDLET_ANSWERS = iac(
    IAC, WILL, Opt.TTYPE, IAC, WILL, Opt.NAWS, IAC, WONT, Opt.NEW_ENVIRON,
    IAC, DO, Opt.EOR, IAC, DO, Opt.CHARSET, IAC, DO, Opt.GMCP, IAC, DONT, Opt.MSDP,
    IAC, DO, Opt.MSSP, IAC, DO, Opt.MCCP2, IAC, DONT, Opt.MCCP3,
)  # fmt: skip

MUDLET_4_17 = [
    # Mudlet's answers to the offers (src/ctelnet.cpp): it takes TTYPE, NAWS,
    # GMCP, MSSP, MCCP2, EOR and CHARSET; it has no NEW-ENVIRON or MCCP3 and
    # leaves MSDP off by default.
    MUDLET_ANSWERS,
    sb(Opt.NAWS, bytes((0, 132, 0, 50))),
    sb(Opt.GMCP, 'Core.Hello {"client":"Mudlet","version":"4.17.2"}'),
    sb(Opt.GMCP, 'Core.Supports.Set ["Char 1", "Char.Skills 1", "Room 1", "External.Discord 1"]'),
    sb(Opt.TTYPE, b"\x00Mudlet 4.17.2"),
    sb(Opt.CHARSET, b"\x02UTF-8"),
    sb(Opt.TTYPE, b"\x00Mudlet 4.17.2"),  # Mudlet repeats its one answer
]


@pytest.mark.parametrize("bytewise", [False, True])
def test_mudlet_handshake(bytewise: bool) -> None:
    peer = Peer()
    for chunk in MUDLET_4_17:
        peer.feed(chunk, bytewise=bytewise)
        peer.collect()
    flags = peer.flags
    assert (flags["CLIENTNAME"], flags["CLIENTVERSION"]) == ("Mudlet", "4.17.2")
    assert flags["XTERM256"] and flags["TRUECOLOR"] and flags["GMCP"] and flags["MCCP"]
    assert flags["UTF-8"] and flags["ENCODING"] == "utf-8"
    assert flags["SCREENWIDTH"] == {0: 132}
    assert flags["GMCP_SUPPORTS"] == {"Char": 1, "Char.Skills": 1, "Room": 1, "External.Discord": 1}
    assert peer.sent.count(sb(Opt.TTYPE, b"\x01")) == 2  # stops when the answer repeats
    assert peer.events.count(Settled()) == 1
    oob = [e for e in peer.events if isinstance(e, OOBInput)]
    assert oob[0] == OOBInput("client_options", (), {"client": "Mudlet", "version": "4.17.2"})
    assert oob[1].cmdname == "core_supports_set"
    assert MSSPRequest() in peer.events
    # GMCP only in the packages Mudlet named, or their children; Core always.
    assert peer.proto.send_gmcp("Room.Info", {"num": 1})
    assert peer.proto.send_gmcp("Char.Vitals", {"hp": 1})
    assert peer.proto.send_gmcp("Core.Goodbye")
    assert not peer.proto.send_gmcp("Comm.Channel.Text", {"text": "hi"})
    sent = peer.collect()
    assert sb(Opt.GMCP, 'Room.Info {"num":1}') in sent
    assert sb(Opt.GMCP, "Core.Goodbye") in sent
    assert b"Comm.Channel" not in sent


def test_plain_terminal_ttype_is_a_terminal_not_a_client() -> None:
    peer = Peer()
    peer.feed(iac(IAC, WILL, Opt.TTYPE) + sb(Opt.TTYPE, b"\x00XTERM-256COLOR"))
    peer.feed(sb(Opt.TTYPE, b"\x00XTERM-256COLOR"))
    assert peer.flags["TERM"] == "XTERM-256COLOR"
    assert "CLIENTNAME" not in peer.flags
    assert peer.flags["XTERM256"] and peer.flags["ANSI"]
    peer.collect()
    assert peer.sent.count(sb(Opt.TTYPE, b"\x01")) == 2


@pytest.mark.parametrize(
    ("mtts", "on", "off"),
    [
        (1, {"ANSI"}, {"UTF-8", "XTERM256", "TRUECOLOR", "SCREENREADER"}),
        (271, {"ANSI", "VT100", "UTF-8", "XTERM256", "TRUECOLOR"}, {"SCREENREADER", "MNES"}),
        (64 + 1, {"SCREENREADER", "ANSI"}, {"XTERM256"}),
        (2048 | 1024 | 512 | 128 | 32 | 16, {"SSL", "MSLP", "MNES", "PROXY",
         "OSC_COLOR_PALETTE", "MOUSE_TRACKING"}, {"ANSI"}),
    ],
)  # fmt: skip
def test_mtts_bits(mtts: int, on: set[str], off: set[str]) -> None:
    peer = Peer()
    peer.feed(iac(IAC, WILL, Opt.TTYPE) + sb(Opt.TTYPE, b"\x00TESTCLIENT"))
    peer.feed(sb(Opt.TTYPE, b"\x00xterm") + sb(Opt.TTYPE, f"\x00MTTS {mtts}"))
    assert peer.flags["MTTS"] == mtts
    assert all(peer.flags[name] is True for name in on)
    assert all(peer.flags[name] is False for name in off)


def test_bad_ttype_answers_are_ignored() -> None:
    peer = Peer()
    peer.feed(iac(IAC, WILL, Opt.TTYPE) + sb(Opt.TTYPE, b"\x07junk"))
    peer.feed(sb(Opt.TTYPE, b"\x00MTTS lots") + sb(Opt.TTYPE, b"\x00MTTS 99999999"))
    assert "MTTS" not in peer.flags


# -- NAWS, NEW-ENVIRON, CHARSET -----------------------------------------------------------


def test_naws_with_a_doubled_255_and_live_resize() -> None:
    peer = Peer()
    peer.feed(iac(IAC, WILL, Opt.NAWS) + sb(Opt.NAWS, bytes((1, 255, 0, 24))))
    assert peer.flags["SCREENWIDTH"] == {0: 511}
    peer.feed(sb(Opt.NAWS, bytes((0, 100, 0, 40))))
    assert peer.flags["SCREENWIDTH"] == {0: 100} and peer.flags["SCREENHEIGHT"] == {0: 40}
    peer.feed(sb(Opt.NAWS, bytes((0, 1, 2))))  # malformed: ignored
    assert peer.flags["SCREENWIDTH"] == {0: 100}


def test_naws_without_agreement_is_ignored() -> None:
    peer = Peer()
    peer.feed(sb(Opt.NAWS, bytes((0, 80, 0, 24))))
    assert "SCREENWIDTH" not in peer.flags


def test_new_environ_mnes() -> None:
    peer = Peer()
    peer.feed(iac(IAC, WILL, Opt.NEW_ENVIRON))
    request = sb(Opt.NEW_ENVIRON, b"\x01\x00CLIENT_NAME\x00CLIENT_VERSION\x00CHARSET"
                 b"\x00MTTS\x00TERMINAL_TYPE")  # fmt: skip
    assert request in peer.collect()
    peer.feed(sb(Opt.NEW_ENVIRON, b"\x00\x00CLIENT_NAME\x01Blight\x02\x01mud\x00MTTS\x01137"
                  b"\x00CHARSET\x01UTF-8\x03IPADDRESS\x01127.0.0.1"))  # fmt: skip
    assert peer.flags["CLIENTNAME"] == "Blight\x01mud"  # ESC keeps a VALUE byte as data
    assert peer.flags["MTTS"] == 137 and peer.flags["SCREENREADER"] is False
    assert peer.flags["UTF-8"] is True
    peer.feed(sb(Opt.NEW_ENVIRON, b"\x02\x00MTTS\x01201"))  # INFO: a later change
    assert peer.flags["SCREENREADER"] is True


def test_charset() -> None:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.CHARSET))
    assert sb(Opt.CHARSET, b"\x01;UTF-8") in peer.collect()
    peer.feed(sb(Opt.CHARSET, b"\x02UTF-8"))
    assert peer.flags["ENCODING"] == "utf-8" and peer.flags["UTF-8"] is True
    # A client may offer its own list: UTF-8 is taken, anything else refused.
    peer.feed(iac(IAC, WILL, Opt.CHARSET) + sb(Opt.CHARSET, b"\x01 ISO-8859-1 UTF-8"))
    assert sb(Opt.CHARSET, b"\x02UTF-8") in peer.collect()
    peer.feed(sb(Opt.CHARSET, b"\x01;KOI8-R"))
    assert sb(Opt.CHARSET, b"\x03") in peer.collect()


# -- prompts, ECHO, SGA, EOR ---------------------------------------------------------------


def test_prompt_ends_with_ga_and_password_prompt_hides_input() -> None:
    peer = Peer()
    peer.feed(REFUSE_ALL)
    peer.collect()
    peer.proto.send_prompt("Password: ", password=True)
    assert peer.collect() == b"Password: " + iac(IAC, WILL, Opt.ECHO, IAC, GA)
    peer.feed(iac(IAC, DO, Opt.ECHO))
    assert peer.proto.telnet.local_enabled(Opt.ECHO)
    events = peer.feed(b"sekrit\r\n")
    assert TextLine(b"sekrit") in events
    after = peer.collect()
    assert after == iac(IAC, WONT, Opt.ECHO) + b"\r\n"  # echo back on, and the Enter
    assert b"sekrit" not in peer.sent  # never echoed
    peer.feed(iac(IAC, DONT, Opt.ECHO))
    assert not peer.proto.telnet.local_enabled(Opt.ECHO)
    assert peer.collect() == b""


@pytest.mark.parametrize("answers_wont", [False, True])
def test_every_password_prompt_asks_for_echo_off_again(answers_wont: bool) -> None:
    """TinTin++ answers WILL ECHO but never WONT ECHO: the next prompt must still hide."""
    peer = Peer()
    peer.feed(REFUSE_ALL)
    peer.collect()
    for attempt in range(3):
        peer.proto.send_prompt("Password: ", password=True)
        assert peer.collect() == b"Password: " + iac(IAC, WILL, Opt.ECHO, IAC, GA), attempt
        peer.feed(iac(IAC, DO, Opt.ECHO))
        peer.feed(b"wrong\r\n")
        assert peer.collect() == iac(IAC, WONT, Opt.ECHO) + b"\r\n"
        if answers_wont:  # an RFC-minded client agrees; that is answered by nothing
            peer.feed(iac(IAC, DONT, Opt.ECHO))
            assert peer.collect() == b""


def test_a_late_dont_echo_does_not_undo_the_next_password_prompt() -> None:
    peer = Peer()
    peer.feed(REFUSE_ALL)
    peer.collect()
    peer.proto.send_prompt("Password: ", password=True)
    peer.feed(iac(IAC, DO, Opt.ECHO))
    peer.feed(b"wrong\r\n")
    peer.proto.send_prompt("Password: ", password=True)  # before the client's DONT came
    assert iac(IAC, WILL, Opt.ECHO) in peer.collect()
    peer.feed(iac(IAC, DONT, Opt.ECHO))  # the late agreement to the first WONT
    peer.feed(iac(IAC, DO, Opt.ECHO))  # the answer to the second WILL
    assert peer.proto.telnet.local_enabled(Opt.ECHO)
    assert peer.collect() == b""  # no WONT: the password stays hidden


def test_bsd_telnet_is_asked_for_binary_input_and_sends_utf8_whole() -> None:
    peer = Peer()
    assert iac(IAC, DO, Opt.BINARY) in bytes(peer.sent)
    peer.feed(iac(IAC, WILL, Opt.BINARY))
    assert peer.proto.telnet.remote_enabled(Opt.BINARY)
    assert TextLine("say café ✓".encode()) in peer.feed("say café ✓\n".encode())


def test_unasked_do_echo_is_refused() -> None:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.ECHO, IAC, DO, Opt.LINEMODE))
    assert peer.collect() == iac(IAC, WONT, Opt.ECHO, IAC, WONT, Opt.LINEMODE)


def test_sga_suppresses_ga_and_eor_replaces_it() -> None:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.SGA))
    assert iac(IAC, WILL, Opt.SGA) in peer.collect()
    peer.proto.send_prompt("> ")
    assert peer.collect() == b"> "
    peer.feed(iac(IAC, DO, Opt.EOR))
    peer.proto.send_prompt("> ")
    assert peer.collect() == b"> " + iac(IAC, EOR)


# -- MCCP2 -------------------------------------------------------------------------------


def test_mccp2_starts_after_the_marker_and_finishes_cleanly() -> None:
    proto = MudTelnet()
    proto.start()
    proto.data_to_send()
    proto.receive_data(iac(IAC, DO, Opt.MCCP2))
    proto.send_text("compressed\n")
    wire = proto.data_to_send()
    marker = iac(IAC, SB, Opt.MCCP2, IAC, SE)
    assert wire.startswith(marker)
    inflater = zlib.decompressobj()
    assert inflater.decompress(wire[len(marker) :]) == b"compressed\r\n"
    assert proto.data_to_send() == b""  # nothing new: not even an empty flush
    proto.send_text("bye\n")
    assert inflater.decompress(proto.data_to_send() + proto.close()) == b"bye\r\n"
    assert inflater.eof and inflater.unused_data == b""  # Z_FINISH: a complete stream


def test_mccp2_ends_when_the_client_says_dont() -> None:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.MCCP2))
    peer.collect()
    assert peer.inflater is not None
    peer.feed(iac(IAC, DONT, Opt.MCCP2))
    peer.proto.send_text("plain again\n")
    peer.collect()
    assert peer.inflater is None
    assert peer.sent.endswith(b"plain again\r\n")
    assert peer.flags["MCCP"] is False


# -- MCCP3 -------------------------------------------------------------------------------


def mccp3_stream(text: bytes, *, finish: bool = False) -> bytes:
    compressor = zlib.compressobj()
    data = compressor.compress(text)
    return data + compressor.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize("cut", range(0, 12))
def test_mccp3_marker_and_data_split_anywhere(cut: int) -> None:
    wire = sb(Opt.MCCP3, b"") + mccp3_stream(b"look\r\nsay hi\r\n", finish=True) + b"plain\r\n"
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.MCCP3))
    events = peer.feed(wire[:cut]) + peer.feed(wire[cut:])
    lines = [e.data for e in events if isinstance(e, TextLine)]
    assert lines == [b"look", b"say hi", b"plain"]
    assert not peer.proto.telnet.inflating  # the client ended its stream


def test_mccp3_is_not_inflated_without_agreement() -> None:
    peer = Peer()
    events = peer.feed(sb(Opt.MCCP3, b"") + b"look\r\n")
    assert TextLine(b"look") in events


def test_mccp3_zlib_bomb_is_refused() -> None:
    peer = Peer(max_inflated=64 * 1024, max_partial_line=10**9)
    peer.feed(iac(IAC, DO, Opt.MCCP3) + sb(Opt.MCCP3, b""))
    bomb = mccp3_stream(b"\n" * (50 * 1024 * 1024))  # 50 MiB of empty lines, ~50 KiB packed
    assert len(bomb) < 100 * 1024
    with pytest.raises(TelnetProtocolError) as info:
        peer.feed(bomb)
    assert "inflates past" in info.value.reason


def test_mccp3_long_line_hits_the_line_cap() -> None:
    peer = Peer(max_partial_line=1000)
    peer.feed(iac(IAC, DO, Opt.MCCP3) + sb(Opt.MCCP3, b""))
    with pytest.raises(TelnetProtocolError):
        peer.feed(mccp3_stream(b"x" * 5000))


def test_mccp3_corrupt_data_is_a_protocol_error() -> None:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.MCCP3) + sb(Opt.MCCP3, b""))
    with pytest.raises(TelnetProtocolError):
        peer.feed(b"this is not zlib at all")


# -- GMCP --------------------------------------------------------------------------------


def gmcp_peer() -> Peer:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.GMCP))
    return peer


def test_gmcp_input_becomes_commandtuples() -> None:
    peer = gmcp_peer()
    events = peer.feed(
        sb(Opt.GMCP, 'Char.Login.Credentials {"account": "ann", "password": "x"}')
        + sb(Opt.GMCP, "Comm.Channel.Say [1, 2]")
        + sb(Opt.GMCP, "External.Discord.Get")
        + sb(Opt.GMCP, "Client.Thing {not json")
        + sb(Opt.GMCP, 'Text ["look"]')
    )
    assert [e for e in events if isinstance(e, OOBInput)] == [
        OOBInput("login", (), {"account": "ann", "password": "x"}),
        OOBInput("comm_channel_say", (1, 2), {}),
        OOBInput("external_discord_get", (), {}),
        OOBInput("client_thing", ("{not json",), {}),
        OOBInput("gmcp_text", ("look",), {}),  # never run as a typed command
    ]


def test_gmcp_supports_add_and_remove() -> None:
    peer = gmcp_peer()
    peer.feed(sb(Opt.GMCP, 'Core.Supports.Set ["Char 1"]'))
    peer.feed(sb(Opt.GMCP, 'Core.Supports.Add ["Room 1", "Comm.Channel 1"]'))
    peer.feed(sb(Opt.GMCP, 'Core.Supports.Remove ["Char"]'))
    assert peer.flags["GMCP_SUPPORTS"] == {"Room": 1, "Comm.Channel": 1}
    assert not peer.proto.send_gmcp("Char.Vitals", {})
    assert peer.proto.send_gmcp("Comm.Channel.Text", {})
    assert not peer.proto.send_gmcp("Comm.Other", {})


def test_gmcp_ping_is_answered_by_the_protocol() -> None:
    peer = gmcp_peer()
    peer.collect()
    assert peer.feed(sb(Opt.GMCP, "Core.Ping")) == []
    assert peer.collect() == sb(Opt.GMCP, "Core.Ping")


def test_gmcp_is_not_sent_without_agreement() -> None:
    peer = Peer()
    assert not peer.proto.send_gmcp("Core.Goodbye")
    assert peer.collect() == b""


def test_oversized_gmcp_is_a_protocol_error() -> None:
    peer = Peer(max_subnegotiation=100)
    peer.feed(iac(IAC, DO, Opt.GMCP))
    with pytest.raises(TelnetProtocolError):
        peer.feed(sb(Opt.GMCP, "Core.Hello " + "x" * 200))


def test_gmcp_names() -> None:
    assert gmcp_package("char_vitals") == "Char.Vitals"
    assert gmcp_package("Room.Info") == "Room.Info"
    assert gmcp_input("Core.Hello", {"client": "x"}).cmdname == "client_options"
    assert gmcp_input("Prompt", None).cmdname == "gmcp_prompt"


# -- MSDP ---------------------------------------------------------------------------------


def test_msdp_round_trip() -> None:
    variables = {
        "ROOM": {"VNUM": "6", "NAME": "North Gate", "EXITS": {"n": "7", "s": "1"}},
        "LIST": ["a", "b", ["c"]],
        "HEALTH": "100",
    }
    assert dict(msdp_decode(msdp_encode(variables))) == variables


def test_msdp_commands_and_configuration() -> None:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.MSDP))
    events = peer.feed(
        sb(Opt.MSDP, b"\x01LIST\x02COMMANDS")
        + sb(Opt.MSDP, b"\x01REPORT\x02HEALTH\x02ROOM")
        + sb(Opt.MSDP, b"\x01SEND\x02\x05\x02ROOM_NAME\x06")
        + sb(Opt.MSDP, b"\x01UNREPORT\x02HEALTH\x01RESET\x02REPORTABLE_VARIABLES")
        + sb(Opt.MSDP, b"\x01CLIENT_NAME\x02TinTin++\x01XTERM_256_COLORS\x021")
    )
    oob = [e for e in events if isinstance(e, OOBInput)]
    assert oob[:5] == [
        OOBInput("msdp_list", ("COMMANDS",)),
        OOBInput("msdp_report", ("HEALTH", "ROOM")),
        OOBInput("msdp_send", ("ROOM_NAME",)),  # an array of names
        OOBInput("msdp_unreport", ("HEALTH",)),
        OOBInput("msdp_reset", ("REPORTABLE_VARIABLES",)),
    ]
    assert peer.flags["CLIENTNAME"] == "TinTin++" and peer.flags["XTERM256"] is True
    assert peer.flags["MSDP"] is True


def test_msdp_send_encodes() -> None:
    peer = Peer()
    peer.feed(iac(IAC, DO, Opt.MSDP))
    peer.collect()
    assert peer.proto.send_msdp({"HEALTH": 90, "ROOM": {"VNUM": 1}})
    assert peer.collect() == sb(Opt.MSDP, b"\x01HEALTH\x0290\x01ROOM\x02\x03\x01VNUM\x021\x04")


@given(st.binary(max_size=200))
def test_msdp_decode_never_raises(data: bytes) -> None:
    msdp_decode(data)


# -- MSSP ---------------------------------------------------------------------------------


def test_mssp_request_and_reply() -> None:
    peer = Peer()
    assert MSSPRequest() in peer.feed(iac(IAC, DO, Opt.MSSP))
    peer.collect()
    peer.proto.send_mssp([("NAME", "Test"), ("PORT", "4000"), ("PORT", "4001")])
    assert peer.collect() == sb(Opt.MSSP, b"\x01NAME\x02Test\x01PORT\x024000\x01PORT\x024001")


# -- anything at all ------------------------------------------------------------------------

_tokens = st.sampled_from(
    [
        OFFERS, REFUSE_ALL, iac(IAC), iac(IAC, SB), iac(IAC, SE), iac(IAC, DO, Opt.MCCP3),
        sb(Opt.MCCP3, b""), iac(IAC, WILL, Opt.TTYPE), sb(Opt.TTYPE, b"\x00MTTS 271"),
        iac(IAC, DO, Opt.GMCP), sb(Opt.GMCP, 'Core.Supports.Set ["Room 1"]'),
        iac(IAC, DO, Opt.MSDP), sb(Opt.MSDP, b"\x01REPORT\x02\x05\x02A\x06"),
        iac(IAC, WILL, Opt.NEW_ENVIRON), sb(Opt.NEW_ENVIRON, b"\x00\x00MTTS\x01x"),
        iac(IAC, WILL, Opt.NAWS), sb(Opt.NAWS, b"\x00\xff\xff"), b"\r\n", b"look",
        mccp3_stream(b"say hi\r\n"), iac(IAC, DO, Opt.MCCP2), iac(IAC, DO, Opt.ECHO),
    ]
)  # fmt: skip
_wire = st.lists(st.one_of(st.binary(max_size=12), _tokens), max_size=30).map(b"".join)


@given(_wire, st.integers(min_value=1, max_value=64))
@settings(max_examples=300, deadline=None)
def test_arbitrary_input_raises_nothing_but_protocol_errors(data: bytes, step: int) -> None:
    proto = MudTelnet(max_partial_line=256, max_subnegotiation=128, max_inflated=4096)
    proto.start()
    try:
        for i in range(0, len(data), step):
            proto.receive_data(data[i : i + step])
            proto.send_text("x\n")
            proto.data_to_send()
    except TelnetProtocolError:
        pass
    proto.close()

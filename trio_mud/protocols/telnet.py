"""A sans-I/O telnet protocol: bytes in, events out, bytes to send out.

Nothing here does I/O or reads a clock; :mod:`trio_mud.nursery_portal` owns
the socket and time. Feed what the client sent to
:meth:`TelnetProtocol.receive_data`, act on the events it returns, and write
:meth:`TelnetProtocol.bytes_to_send` (negotiation replies) to the client.

Option negotiation follows RFC 1143's Q method, so no pair of peers can loop
and every request for an option we do not support is refused exactly once.
Which options we accept is policy given to the constructor.

Error handling:
    A client that breaks a hard limit (a partial line or subnegotiation over
    its cap) raises :class:`TelnetProtocolError` from ``receive_data``; its
    ``reply`` is a message for the client. The caller should send it and close
    the connection. No other exception escapes ``receive_data`` for any input.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from enum import IntEnum

from attrs import frozen

# -- telnet bytes ----------------------------------------------------------------

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
GA = 249
EL = 248  # erase line
EC = 247  # erase character
AYT = 246  # are you there
AO = 245
IP = 244
BRK = 243
DM = 242
NOP = 241
SE = 240
EOR = 239  # the EOR command (RFC 885), not the option

NUL = 0
LF = 10
CR = 13


class Opt(IntEnum):
    """Telnet option codes a MUD server meets."""

    BINARY = 0
    ECHO = 1
    SGA = 3
    STATUS = 5
    TIMING_MARK = 6
    TTYPE = 24
    EOR = 25
    NAWS = 31
    TSPEED = 32
    LFLOW = 33
    LINEMODE = 34
    XDISPLOC = 35
    ENVIRON = 36
    NEW_ENVIRON = 39
    CHARSET = 42
    MSDP = 69
    MSSP = 70
    MCCP2 = 86
    MCCP3 = 87
    MSP = 90
    MXP = 91
    ATCP = 200
    GMCP = 201


# -- events --------------------------------------------------------------------


@frozen
class TextLine:
    """A complete line of input, without its line ending, still encoded."""

    data: bytes


@frozen
class PromptLine:
    """Text ended by ``IAC GA`` or ``IAC EOR``: a prompt (only with ``prompts=True``)."""

    data: bytes
    #: Ended by EOR (else by GA).
    eor: bool = False


@frozen
class Command:
    """A bare telnet command such as ``IAC AYT`` or ``IAC IP``."""

    code: int


@frozen
class OptionChange:
    """An option became enabled or disabled.

    ``local`` options are ours (we WILL them: ECHO, GMCP, ...); remote ones
    are the client's (it WILL do them: NAWS, TTYPE, ...).
    """

    option: int
    local: bool
    enabled: bool


@frozen
class Subnegotiation:
    """``IAC SB option payload IAC SE``, with IAC doubling undone."""

    option: int
    payload: bytes


Event = PromptLine | TextLine | Command | OptionChange | Subnegotiation


class TelnetProtocolError(Exception):
    """The client broke a limit; ``reply`` is a message to show it."""

    def __init__(self, reason: str, reply: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


# -- RFC 1143 option state ---------------------------------------------------------


class _Q(IntEnum):
    NO = 0
    YES = 1
    WANTNO = 2
    WANTYES = 3


#: An option's state on one side is packed in one small int (a connection
#: keeps dozens of them): the Q state in bits 0-1, the Q method's queue bit
#: ("opposite") in bit 2, and in bit 3 "we turned it off without waiting for
#: the peer's agreement" (that agreement, if it comes, is ignored).
_OPPOSITE = 4
_UNACKED_OFF = 8

#: Key offset of our own (local) options: an option's key is the option
#: (the client's side) or the option + _LOCAL (ours).
_LOCAL = 256


def _unpack(packed: int) -> tuple[_Q, bool, bool]:
    return _Q(packed & 3), bool(packed & _OPPOSITE), bool(packed & _UNACKED_OFF)


# The parser's states.
_DATA, _IAC, _NEGOTIATE, _SB_OPTION, _SB, _SB_IAC = range(6)

_SPECIAL = re.compile(rb"[\xff\r\n\x00]")


class TelnetProtocol:
    """State of one telnet connection, server side.

    Args:
        local_options: options we are willing to enable on our side when the
            client asks (``DO x`` gets ``WILL x``). All others get ``WONT``.
        remote_options: options we are willing to let the client enable
            (``WILL x`` gets ``DO x``). All others get ``DONT``.
        max_partial_line: cap, in bytes, on input without a line ending.
        max_subnegotiation: cap, in bytes, on one subnegotiation payload.
        max_inflated: cap, in bytes, on what one call's MCCP3-compressed
            input may inflate to (a zlib bomb is refused, not unpacked).
        prompts: report ``IAC GA`` and ``IAC EOR`` as the end of a
            :class:`PromptLine` (what a client does; a server ignores them).

    When our side of MCCP3 is on and the client sends ``IAC SB MCCP3 IAC SE``,
    everything after it is one zlib stream, inflated here before parsing,
    until the client ends the stream.
    """

    def __init__(
        self,
        *,
        local_options: Iterable[int] = (),
        remote_options: Iterable[int] = (),
        max_partial_line: int = 64 * 1024,
        max_subnegotiation: int = 16 * 1024,
        max_inflated: int = 64 * 1024,
        prompts: bool = False,
    ) -> None:
        self.prompts = prompts
        self.local_options = frozenset(local_options)
        self.remote_options = frozenset(remote_options)
        self.max_partial_line = max_partial_line
        self.max_subnegotiation = max_subnegotiation
        self.max_inflated = max_inflated
        self._inflater: zlib._Decompress | None = None
        #: Bytes received as parsed: after MCCP3 inflation (for the metrics).
        self.plain_received = 0
        #: Option states, packed (see _unpack), one byte per option: the
        #: client's side in the low four bits, ours in the high four (a
        #: fixed 256 bytes: smaller than a dict of a few options and its keys).
        self._options = bytearray(256)
        self._outgoing = bytearray()
        self._line = bytearray()
        self._sb = bytearray()
        self._state = _DATA
        self._verb = 0
        self._sb_option = 0
        self._after_cr = False

    # -- queries -----------------------------------------------------------------

    def awaiting_answer(self, option: int, *, local: bool) -> bool:
        """Whether we asked about ``option`` and the client has not answered yet."""
        state = self._packed(option + _LOCAL if local else option) & 3
        return state in (_Q.WANTYES, _Q.WANTNO)

    def local_enabled(self, option: int) -> bool:
        """Whether our side of ``option`` is on (we said WILL, they said DO)."""
        return self._packed(option + _LOCAL) & 3 == _Q.YES

    def remote_enabled(self, option: int) -> bool:
        """Whether the client's side of ``option`` is on."""
        return self._packed(option) & 3 == _Q.YES

    @property
    def partial_line(self) -> bytes:
        """Input received since the last line ending."""
        return bytes(self._line)

    # -- output --------------------------------------------------------------------

    def bytes_to_send(self) -> bytes:
        """Negotiation bytes produced since the last call; empties the buffer."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def request_local(self, option: int, enable: bool, *, await_answer: bool = True) -> None:
        """Ask to turn our side of ``option`` on (WILL) or off (WONT).

        With ``await_answer=False`` (for turning an option off only), the
        option counts as off as soon as ``WONT`` is queued, instead of after
        the client's ``DONT``. A peer must always agree to an option going
        off, and some never say so: TinTin++ answers ``WILL ECHO`` but never
        ``WONT ECHO``, and waiting for that answer would swallow the next
        ``WILL ECHO`` (a password shown on screen). A late ``DONT`` is then
        taken as the agreement it is, and answered with nothing.
        """
        if not enable and not await_answer:
            state, _, unacked = _unpack(self._packed(option + _LOCAL))
            if state in (_Q.YES, _Q.WANTYES):
                self._send_verb(WONT, option)
                unacked = True
            self._store(option + _LOCAL, _Q.NO, False, unacked)
            return
        self._request(option + _LOCAL, option, enable, WILL, WONT)

    def request_remote(self, option: int, enable: bool) -> None:
        """Ask the client to turn its side of ``option`` on (DO) or off (DONT)."""
        self._request(option, option, enable, DO, DONT)

    def send_subnegotiation(self, option: int, payload: bytes) -> None:
        """Queue ``IAC SB option payload IAC SE``, doubling IAC in the payload."""
        self._outgoing += bytes((IAC, SB, option))
        self._outgoing += payload.replace(b"\xff", b"\xff\xff")
        self._outgoing += bytes((IAC, SE))

    @staticmethod
    def encode_text(text: str, encoding: str = "utf-8") -> bytes:
        """Text as telnet wants it: CR LF line endings, IAC doubled.

        Unencodable characters become ``?``; an encoding that is not a text
        encoding this Python knows is taken to be UTF-8.
        """
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = text.replace("\n", "\r\n")
        try:
            data = text.encode(encoding, errors="replace")
        except LookupError:
            data = text.encode("utf-8", errors="replace")
        if b"\xff" in data:
            data = data.replace(b"\xff", b"\xff\xff")
        return data

    def go_ahead(self) -> bytes:
        """The bytes that end a prompt: ``IAC EOR`` if EOR is on, else ``IAC GA``.

        Nothing when the client suppressed go-ahead and did not ask for EOR.
        """
        if self.local_enabled(Opt.EOR):
            return bytes((IAC, EOR))
        if self.local_enabled(Opt.SGA):
            return b""
        return bytes((IAC, GA))

    # -- input ---------------------------------------------------------------------

    @property
    def inflating(self) -> bool:
        """Whether the client's data is MCCP3-compressed right now."""
        return self._inflater is not None

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse bytes from the client; return the events they complete."""
        events: list[Event] = []
        while data:
            plain_after = b""
            if self._inflater is not None:
                data, plain_after = self._inflate(data)
            self.plain_received += len(data)
            compressed_from = self._parse(data, events)
            data = data[compressed_from:] if compressed_from is not None else plain_after
        return events

    def _inflate(self, data: bytes) -> tuple[bytes, bytes]:
        """Inflate MCCP3 data: (inflated bytes, plain bytes after the stream)."""
        assert self._inflater is not None
        inflater = self._inflater
        out = bytearray()
        pending = data
        try:
            while True:
                piece = inflater.decompress(pending, self.max_inflated + 1 - len(out))
                out += piece
                pending = inflater.unconsumed_tail
                if len(out) > self.max_inflated:
                    raise TelnetProtocolError(
                        f"MCCP3 data inflates past {self.max_inflated} bytes",
                        "Your client sent compressed data that unpacks far too large; "
                        "closing the connection.",
                    )
                if inflater.eof or not pending:
                    break
        except zlib.error as exc:
            raise TelnetProtocolError(
                f"bad MCCP3 data: {exc}", "Your client sent corrupt compressed data."
            ) from None
        if inflater.eof:
            self._inflater = None
            return bytes(out), inflater.unused_data
        return bytes(out), b""

    def _parse(self, data: bytes, events: list[Event]) -> int | None:
        """Parse plain telnet bytes into ``events``.

        Returns the offset where MCCP3 compression starts, if it does.
        """
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                match = _SPECIAL.search(data, pos)
                stop = match.start() if match else end
                if stop > pos:
                    self._after_cr = False
                    self._line += data[pos:stop]
                    self._check_line()
                    pos = stop
                    continue
                byte = data[pos]
                pos += 1
                if byte == IAC:
                    self._state = _IAC
                elif byte == CR:
                    events.append(self._end_line())
                    if pos < end and data[pos] in (LF, NUL):
                        pos += 1  # CR LF or CR NUL, whole: the common case
                    else:
                        self._after_cr = True
                elif byte in (LF, NUL):
                    if self._after_cr:
                        self._after_cr = False  # the second half of CR LF / CR NUL
                    elif byte == LF:
                        events.append(self._end_line())
                    # A NUL that does not follow CR carries nothing: drop it.
            elif state == _IAC:
                byte = data[pos]
                pos += 1
                self._command(byte, events)
            elif state == _NEGOTIATE:
                option = data[pos]
                pos += 1
                self._state = _DATA
                self._receive_negotiation(self._verb, option, events)
            elif state == _SB_OPTION:
                self._sb_option = data[pos]
                pos += 1
                self._sb.clear()
                self._state = _SB
            elif state == _SB:
                stop = data.find(b"\xff", pos)
                if stop < 0:
                    stop = end
                self._sb += data[pos:stop]
                self._check_subnegotiation()
                if stop < end:
                    self._state = _SB_IAC
                    pos = stop + 1
                else:
                    pos = end
            else:  # _SB_IAC
                byte = data[pos]
                pos += 1
                if byte == IAC:
                    self._sb.append(IAC)
                    self._check_subnegotiation()
                    self._state = _SB
                elif byte == SE:
                    self._state = _DATA
                    events.append(Subnegotiation(self._sb_option, bytes(self._sb)))
                    self._sb.clear()
                    if (
                        self._sb_option == Opt.MCCP3
                        and self._inflater is None
                        and self.local_enabled(Opt.MCCP3)
                    ):
                        self._inflater = zlib.decompressobj()
                        return pos
                else:
                    # RFC 855 leaves this undefined. Most servers end the
                    # subnegotiation and read the byte as a command, which
                    # recovers from a client that forgot IAC SE.
                    self._state = _DATA
                    self._sb.clear()
                    self._command(byte, events)
        return None

    def _check_line(self) -> None:
        if len(self._line) > self.max_partial_line:
            self._line.clear()
            raise TelnetProtocolError(
                f"partial line over {self.max_partial_line} bytes",
                "Your input line was far too long; closing the connection.",
            )

    def _check_subnegotiation(self) -> None:
        if len(self._sb) > self.max_subnegotiation:
            self._sb.clear()
            raise TelnetProtocolError(
                f"subnegotiation of option {self._sb_option} over {self.max_subnegotiation} bytes",
                "Your client sent an oversized telnet subnegotiation; closing the connection.",
            )

    def _end_line(self) -> TextLine:
        line = TextLine(bytes(self._line))
        self._line.clear()
        return line

    def _command(self, byte: int, events: list[Event]) -> None:
        self._state = _DATA
        if byte == IAC:  # an escaped 255 data byte
            self._after_cr = False
            self._line.append(IAC)
            self._check_line()
        elif byte in (WILL, WONT, DO, DONT):
            self._verb = byte
            self._state = _NEGOTIATE
        elif byte == SB:
            self._state = _SB_OPTION
        elif byte == EC:
            if self._line:
                del self._line[-1]
        elif byte == EL:
            self._line.clear()
        elif byte == AYT:
            self._outgoing += b"\r\n[Yes]\r\n"
            events.append(Command(byte))
        elif byte in (GA, EOR) and self.prompts:
            events.append(PromptLine(bytes(self._line), eor=byte == EOR))
            self._line.clear()
        elif byte in (NOP, DM, GA, EOR, SE):
            pass  # nothing to do; SE without SB is noise
        else:
            events.append(Command(byte))

    # -- RFC 1143 --------------------------------------------------------------------

    def _packed(self, key: int) -> int:
        byte = self._options[key & 0xFF]
        return byte >> 4 if key >= _LOCAL else byte & 0x0F

    def _store(self, key: int, state: _Q, opposite: bool, unacked: bool) -> None:
        packed = state | (_OPPOSITE if opposite else 0) | (_UNACKED_OFF if unacked else 0)
        index = key & 0xFF
        byte = self._options[index]
        if key >= _LOCAL:
            self._options[index] = (byte & 0x0F) | (packed << 4)
        else:
            self._options[index] = (byte & 0xF0) | packed

    def _receive_negotiation(self, verb: int, option: int, events: list[Event]) -> None:
        if verb in (WILL, WONT):
            key, local, accept = option, False, option in self.remote_options
            yes, no = DO, DONT
        else:
            key, local, accept = option + _LOCAL, True, option in self.local_options
            yes, no = WILL, WONT
        state, opposite, unacked = _unpack(self._packed(key))
        if verb == DONT and unacked:
            # The agreement to a WONT we did not wait for: nothing to do, even
            # if we have asked for the option again since.
            self._store(key, state, opposite, False)
            return
        before = state
        if verb in (WILL, DO):  # the peer wants the option on
            if state is _Q.NO:
                if accept:
                    state = _Q.YES
                    self._send_verb(yes, option)
                else:
                    self._send_verb(no, option)
            elif state is _Q.WANTNO:
                # An answer to our refusal that says "yes" is an error when
                # nothing is queued; treat it as "no" (RFC 1143).
                if opposite:
                    state, opposite = _Q.YES, False
                else:
                    state = _Q.NO
            elif state is _Q.WANTYES:
                if opposite:
                    state, opposite = _Q.WANTNO, False
                    self._send_verb(no, option)
                else:
                    state = _Q.YES
        else:  # the peer wants the option off
            if state is _Q.YES:
                state = _Q.NO
                self._send_verb(no, option)
            elif state is _Q.WANTNO:
                if opposite:
                    state, opposite = _Q.WANTYES, False
                    self._send_verb(yes, option)
                else:
                    state = _Q.NO
            elif state is _Q.WANTYES:
                state, opposite = _Q.NO, False
        self._store(key, state, opposite, unacked)
        if (before is _Q.YES) != (state is _Q.YES):
            events.append(OptionChange(option, local, state is _Q.YES))

    def _request(self, key: int, option: int, enable: bool, yes: int, no: int) -> None:
        state, opposite, unacked = _unpack(self._packed(key))
        want, wait_state, other_wait = (
            (_Q.YES, _Q.WANTYES, _Q.WANTNO) if enable else (_Q.NO, _Q.WANTNO, _Q.WANTYES)
        )
        if state is want:
            return
        if state is (_Q.NO if enable else _Q.YES):
            state = wait_state
            self._send_verb(yes if enable else no, option)
        elif state is other_wait:
            opposite = True  # ask again once the pending answer arrives
        else:  # already waiting for this answer
            opposite = False
        self._store(key, state, opposite, unacked)

    def _send_verb(self, verb: int, option: int) -> None:
        self._outgoing += bytes((IAC, verb, option))

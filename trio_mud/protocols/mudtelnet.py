"""The MUD protocols over telnet, sans-I/O: what MUD clients expect.

:class:`MudTelnet` wraps :class:`~trio_mud.telnet.TelnetProtocol` with the
server's option policy and the MUD protocols on top of it: TTYPE with the
MTTS cycle, NAWS, NEW-ENVIRON (MNES), CHARSET, EOR and GA, ECHO for password
prompts, GMCP, MSDP, MSSP, and MCCP2/MCCP3 compression. Like the layer
below, it does no I/O and reads no clock: feed it bytes, act on the events,
send what :meth:`MudTelnet.data_to_send` returns.

Events:

- :class:`~trio_mud.telnet.TextLine`: a line the player typed (still bytes).
- :class:`FlagsChanged`: protocol flags learned from the client, in the
  names Evennia uses (``CLIENTNAME``, ``TERM``, ``ANSI``, ``XTERM256``,
  ``TRUECOLOR``, ``UTF-8``, ``SCREENREADER``, ``SCREENWIDTH``, ``GMCP``, ...).
- :class:`OOBInput`: out-of-band input as an Evennia commandtuple: GMCP
  ``Core.Hello`` becomes ``client_options``, ``Char.Login.*`` becomes
  ``login``, other packages ``pkg_sub_name``; MSDP commands become
  ``msdp_list``, ``msdp_report``, ``msdp_unreport``, ``msdp_send``,
  ``msdp_reset`` (other variables: ``msdp_var``).
- :class:`Settled`: every question asked at :meth:`MudTelnet.start` has been
  answered (sent once).
- :class:`MSSPRequest`: the client asked for MSSP data; answer with
  :meth:`MudTelnet.send_mssp`.
- :class:`BadInput`: the client sent something that was ignored (GMCP JSON
  nested too deep, more GMCP packages than are kept); show it the reason.

Error handling:
    :class:`~trio_mud.telnet.TelnetProtocolError` from ``receive_data`` when
    the client breaks a limit. Malformed JSON, TTYPE, NAWS and the like are
    not errors: they are ignored (or reported as :class:`BadInput`), and
    ``receive_data`` never raises anything else.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from . import clientjson
from .telnet import (
    IAC,
    SB,
    SE,
    Command,
    Event,
    Opt,
    OptionChange,
    Subnegotiation,
    TelnetProtocol,
    TextLine,
)

# -- subnegotiation bytes -------------------------------------------------------------

TTYPE_IS, TTYPE_SEND = 0, 1
ENV_IS, ENV_SEND, ENV_INFO = 0, 1, 2
ENV_VAR, ENV_VALUE, ENV_ESC, ENV_USERVAR = 0, 1, 2, 3
CHARSET_REQUEST, CHARSET_ACCEPTED, CHARSET_REJECTED = 1, 2, 3
MSSP_VAR, MSSP_VAL = 1, 2
MSDP_VAR, MSDP_VAL = 1, 2
MSDP_TABLE_OPEN, MSDP_TABLE_CLOSE = 3, 4
MSDP_ARRAY_OPEN, MSDP_ARRAY_CLOSE = 5, 6

#: MTTS bits (the third TTYPE reply, "MTTS <n>") and the flags they set.
MTTS_BITS: tuple[tuple[int, str], ...] = (
    (1, "ANSI"),
    (2, "VT100"),
    (4, "UTF-8"),
    (8, "XTERM256"),
    (16, "MOUSE_TRACKING"),
    (32, "OSC_COLOR_PALETTE"),
    (64, "SCREENREADER"),
    (128, "PROXY"),
    (256, "TRUECOLOR"),
    (512, "MNES"),
    (1024, "MSLP"),
    (2048, "SSL"),
)

#: MNES variables we ask for over NEW-ENVIRON (IPADDRESS only if offered).
MNES_VARIABLES = ("CLIENT_NAME", "CLIENT_VERSION", "CHARSET", "MTTS", "TERMINAL_TYPE")

#: Clients known to show xterm 256 colours (and which also show truecolor)
#: when they do not say so through MTTS.
_XTERM256_CLIENTS = {
    "MUDLET", "TINTIN++", "MUSHCLIENT", "CMUD", "ATLANTIS", "POTATO", "KILDCLIENT",
    "BEIPMU", "BLIGHTMUD", "AXMUD", "MUDRAMMER", "MUDLET-BETA",
}  # fmt: skip
_TRUECOLOR_CLIENTS = {"MUDLET", "BLIGHTMUD", "AXMUD"}

_TERMINAL = re.compile(r"^(XTERM|VT\d+|ANSI|SCREEN|TMUX|LINUX|RXVT|DUMB|PUTTY|KONSOLE|ALACRITTY)")

_MSDP_COMMANDS = {
    "LIST": "msdp_list",
    "REPORT": "msdp_report",
    "UNREPORT": "msdp_unreport",
    "SEND": "msdp_send",
    "RESET": "msdp_reset",
}

#: Offered at start: options on our side, and options we ask the client for.
OFFER_LOCAL = (Opt.EOR, Opt.CHARSET, Opt.GMCP, Opt.MSDP, Opt.MSSP, Opt.MCCP2, Opt.MCCP3)
OFFER_REMOTE = (Opt.TTYPE, Opt.NAWS, Opt.NEW_ENVIRON)

# The option policy, shared by every connection (not a copy each).
_ACCEPT_LOCAL = frozenset(OFFER_LOCAL) | {Opt.SGA}
_ACCEPT_LOCAL_NO_MCCP = _ACCEPT_LOCAL - {Opt.MCCP2, Opt.MCCP3}
_ACCEPT_REMOTE = frozenset(OFFER_REMOTE) | {Opt.CHARSET, Opt.BINARY}
#: The offers whose answers settle negotiation, as (option, ours). CHARSET is a
#: bonus and crawlers use MSSP: never waited for (TinTin++ does not answer
#: WILL MSSP at all).
_AWAITED = (
    *((option, False) for option in OFFER_REMOTE),
    *((option, True) for option in OFFER_LOCAL if option not in (Opt.CHARSET, Opt.MSSP)),
)
_AWAITED_NO_MCCP = tuple(pair for pair in _AWAITED if pair[0] not in (Opt.MCCP2, Opt.MCCP3))

# Subnegotiation answers still to come, as bits.
_TTYPE_ANSWER, _NAWS_ANSWER, _ENVIRON_ANSWER = 1, 2, 4


# -- events -----------------------------------------------------------------------------


@frozen
class FlagsChanged:
    """Protocol flags learned from the client (only those that changed)."""

    flags: dict[str, Any]


@frozen
class OOBInput:
    """Out-of-band input as ``cmdname(*args, **kwargs)``."""

    cmdname: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(factory=dict)


@frozen
class Settled:
    """Every question asked at start has its answer."""


@frozen
class MSSPRequest:
    """The client enabled MSSP and wants the server's MSSP data."""


@frozen
class BadInput:
    """Input that was ignored; ``reason`` is a message for the player."""

    reason: str


MudEvent = TextLine | FlagsChanged | OOBInput | Settled | MSSPRequest | BadInput


# -- MSDP encoding ---------------------------------------------------------------------


def msdp_encode(variables: Mapping[str, Any]) -> bytes:
    """``{name: value}`` as MSDP: strings, arrays (lists) and tables (dicts)."""
    out = bytearray()
    for name, value in variables.items():
        out.append(MSDP_VAR)
        out += str(name).encode("utf-8", errors="replace")
        out.append(MSDP_VAL)
        out += _msdp_value(value)
    return bytes(out)


def _msdp_value(value: Any) -> bytes:
    if isinstance(value, Mapping):
        inner = b"".join(
            bytes((MSDP_VAR,))
            + str(k).encode("utf-8", errors="replace")
            + bytes((MSDP_VAL,))
            + _msdp_value(v)
            for k, v in value.items()
        )
        return bytes((MSDP_TABLE_OPEN,)) + inner + bytes((MSDP_TABLE_CLOSE,))
    if isinstance(value, list | tuple):
        inner = b"".join(bytes((MSDP_VAL,)) + _msdp_value(v) for v in value)
        return bytes((MSDP_ARRAY_OPEN,)) + inner + bytes((MSDP_ARRAY_CLOSE,))
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if value is None:
        return b""
    text = str(value).encode("utf-8", errors="replace")
    # The six MSDP bytes (and NUL, IAC) cannot appear inside a value.
    return bytes(b for b in text if b > MSDP_ARRAY_CLOSE and b != IAC)


def msdp_decode(payload: bytes) -> list[tuple[str, Any]]:
    """MSDP bytes as ``[(name, value), ...]``.

    A variable with several values has a list value; tables become dicts.
    Malformed input gives whatever could be read, never an exception.
    """
    reader = _MsdpReader(payload)
    return reader.pairs(top=True)


class _MsdpReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.depth = 0

    def _text(self) -> str:
        start = self.pos
        while self.pos < len(self.data) and self.data[self.pos] > MSDP_ARRAY_CLOSE:
            self.pos += 1
        return self.data[start : self.pos].decode("utf-8", errors="replace")

    def pairs(self, top: bool) -> list[tuple[str, Any]]:
        result: list[tuple[str, Any]] = []
        while self.pos < len(self.data):
            byte = self.data[self.pos]
            if byte == MSDP_TABLE_CLOSE and not top:
                self.pos += 1
                return result
            if byte != MSDP_VAR:
                self.pos += 1  # junk: skip it
                continue
            self.pos += 1
            name = self._text()
            values = []
            while self.pos < len(self.data) and self.data[self.pos] == MSDP_VAL:
                self.pos += 1
                values.append(self.value())
            result.append((name, values[0] if len(values) == 1 else values))
        return result

    def value(self) -> Any:
        if self.pos >= len(self.data):
            return ""
        byte = self.data[self.pos]
        if byte in (MSDP_TABLE_OPEN, MSDP_ARRAY_OPEN) and self.depth >= 16:
            self.pos = len(self.data)  # absurd nesting: stop reading
            return ""
        if byte == MSDP_TABLE_OPEN:
            self.pos += 1
            self.depth += 1
            table = dict(self.pairs(top=False))
            self.depth -= 1
            return table
        if byte == MSDP_ARRAY_OPEN:
            self.pos += 1
            self.depth += 1
            items = []
            while self.pos < len(self.data):
                byte = self.data[self.pos]
                if byte == MSDP_ARRAY_CLOSE:
                    self.pos += 1
                    break
                if byte == MSDP_VAL:
                    self.pos += 1
                    items.append(self.value())
                else:
                    self.pos += 1
            self.depth -= 1
            return items
        return self._text()


# -- GMCP -------------------------------------------------------------------------------


def gmcp_package(cmdname: str) -> str:
    """The GMCP package for an outbound command name.

    Dotted names are used as they are (``Room.Info``); Evennia-style names
    become dotted (``char_vitals`` -> ``Char.Vitals``).
    """
    if "." in cmdname:
        return cmdname
    return ".".join(part.capitalize() for part in cmdname.split("_") if part)


#: How many GMCP packages a client's ``Core.Supports`` may name, unless set.
DEFAULT_MAX_GMCP_SUPPORTS = 64

_GMCP_SUPPORT = re.compile(r"([A-Za-z][A-Za-z0-9_.-]{0,63})(?:\s+([0-9]{1,4}))?")


def update_gmcp_supports(
    supports: dict[str, int],
    package: str,
    data: Any,
    *,
    max_packages: int = DEFAULT_MAX_GMCP_SUPPORTS,
) -> int | None:
    """Apply ``Core.Supports.Set/Add/Remove`` to ``supports``.

    Returns None when ``package`` is not one of those, else how many packages
    were refused because ``supports`` already held ``max_packages``. Entries
    that are not ``"Name"`` or ``"Name <version>"`` are skipped.
    """
    lowered = package.lower()
    if lowered not in ("core.supports.set", "core.supports.add", "core.supports.remove"):
        return None
    if lowered.endswith(".set"):
        supports.clear()
    refused = 0
    for item in data if isinstance(data, list) else []:
        match = _GMCP_SUPPORT.fullmatch(item.strip()) if isinstance(item, str) else None
        if match is None:
            continue
        name, version = match.group(1), match.group(2)
        if lowered.endswith(".remove"):
            supports.pop(name, None)
        elif name in supports or len(supports) < max_packages:
            supports[name] = int(version) if version else 1
        else:
            refused += 1
    return refused


def supports_refused_message(refused: int, max_packages: int) -> str:
    """What a client is told when its ``Core.Supports`` went over the cap."""
    return (
        f"Your client named more GMCP packages than the server keeps ({max_packages}); "
        f"{refused} were ignored."
    )


def gmcp_wanted(supports: Mapping[str, int], package: str) -> bool:
    """Whether a client that advertised ``supports`` takes ``package``.

    ``Core.*`` always; others when the package or an ancestor ("Char" for
    "Char.Vitals") was advertised.
    """
    parts = package.split(".")
    if parts[0].lower() == "core":
        return True
    supported = {name.lower() for name in supports}
    return any(".".join(parts[:n]).lower() in supported for n in range(1, len(parts) + 1))


def gmcp_input(package: str, data: Any) -> OOBInput:
    """An inbound GMCP message as the commandtuple the handler gets."""
    lowered = package.lower()
    if lowered == "core.hello":
        cmdname = "client_options"
    elif lowered == "char.login" or lowered.startswith("char.login."):
        cmdname = "login"
    else:
        cmdname = re.sub(r"[^a-z0-9]+", "_", lowered).strip("_") or "gmcp"
        if cmdname in ("text", "prompt", "default"):
            # Out-of-band data is never run as typed input.
            cmdname = f"gmcp_{cmdname}"
    if isinstance(data, dict):
        return OOBInput(cmdname, (), {str(k): v for k, v in data.items()})
    if isinstance(data, list):
        return OOBInput(cmdname, tuple(data), {})
    if data is None:
        return OOBInput(cmdname, (), {})
    return OOBInput(cmdname, (data,), {})


# -- the protocol -----------------------------------------------------------------------


class MudTelnet:
    """The server side of a MUD client's telnet connection.

    Args:
        max_partial_line, max_subnegotiation, max_inflated: limits passed to
            :class:`~trio_mud.telnet.TelnetProtocol`.
        mccp: offer MCCP2 and MCCP3 compression.
        compression_level: zlib level for MCCP2 (0-9).
        max_json_depth: deepest nesting accepted in GMCP JSON.
        max_gmcp_supports: most packages ``Core.Supports`` may name.
    """

    def __init__(
        self,
        *,
        max_partial_line: int = 64 * 1024,
        max_subnegotiation: int = 16 * 1024,
        max_inflated: int = 64 * 1024,
        mccp: bool = True,
        compression_level: int = 6,
        max_json_depth: int = clientjson.DEFAULT_MAX_DEPTH,
        max_gmcp_supports: int = DEFAULT_MAX_GMCP_SUPPORTS,
    ) -> None:
        local = _ACCEPT_LOCAL if mccp else _ACCEPT_LOCAL_NO_MCCP
        self.max_json_depth = max_json_depth
        self.max_gmcp_supports = max_gmcp_supports
        self.telnet = TelnetProtocol(
            local_options=local,
            remote_options=_ACCEPT_REMOTE,
            max_partial_line=max_partial_line,
            max_subnegotiation=max_subnegotiation,
            max_inflated=max_inflated,
        )
        self._mccp = mccp
        self._compression_level = compression_level
        self._out = bytearray()
        self._compressor: zlib._Compress | None = None
        #: Bytes sent before MCCP2 compression (for the metrics).
        self.plain_sent = 0
        self._unflushed = False
        self._mtts = 0
        #: Subnegotiation answers still to come (bits: _TTYPE_ANSWER, ...).
        self._awaiting = 0
        self._settled_sent = False
        self._ttype_replies: list[str] = []
        self.gmcp_supports: dict[str, int] = {}
        self.password_mode = False
        self.closed = False

    # -- state ----------------------------------------------------------------------

    @property
    def compressing(self) -> bool:
        """Whether MCCP2 is compressing what we send."""
        return self._compressor is not None

    @property
    def settled(self) -> bool:
        return self._settled_sent

    def enabled(self, option: int) -> bool:
        """Whether ``option`` is on, on either side."""
        return self.telnet.local_enabled(option) or self.telnet.remote_enabled(option)

    # -- output -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Append to the wire, after whatever the telnet layer queued first."""
        pending = self.telnet.bytes_to_send()
        if pending:
            data = pending + data
        if not data:
            return
        self.plain_sent += len(data)
        if self._compressor is not None:
            self._out += self._compressor.compress(data)
            self._unflushed = True
        else:
            self._out += data

    def _pull_telnet(self) -> None:
        self._write(b"")

    def data_to_send(self) -> bytes:
        """Everything to send now, compressed if MCCP2 is on."""
        self._pull_telnet()
        if self._compressor is not None and self._unflushed:
            self._out += self._compressor.flush(zlib.Z_SYNC_FLUSH)
            self._unflushed = False
        data = bytes(self._out)
        self._out.clear()
        return data

    def start(self) -> None:
        """Queue the opening offers (call once, right after connecting)."""
        for option in OFFER_REMOTE:
            self.telnet.request_remote(option, True)
        # Clients derived from BSD telnet (GNU inetutils, netkit) that have not
        # agreed to send binary compare every typed byte, masked to 7 bits,
        # with their terminal's special characters: the 0x9C inside a UTF-8
        # check mark looks like Ctrl-backslash (QUIT) and goes out as IAC BRK.
        # Asking for binary input stops that; MUD clients refuse or ignore it.
        # Never waited for.
        self.telnet.request_remote(Opt.BINARY, True)
        for option in OFFER_LOCAL:
            if self._mccp or option not in (Opt.MCCP2, Opt.MCCP3):
                self.telnet.request_local(option, True)
        self._pull_telnet()

    def send_text(self, text: str, encoding: str = "utf-8") -> None:
        """Text, with CR LF line ends and IAC doubled."""
        self._write(TelnetProtocol.encode_text(text, encoding))

    def send_encoded(self, data: bytes) -> None:
        """Text already encoded by :meth:`TelnetProtocol.encode_text` (shared
        between clients that show it alike); compressed here if MCCP2 is on."""
        self._write(data)

    def send_prompt(self, text: str, encoding: str = "utf-8", *, password: bool = False) -> None:
        """A prompt, ended by GA (or EOR) so that clients show it at once.

        With ``password``, the client is asked to stop echoing what is typed
        (``WILL ECHO``) until the next line arrives; then echo comes back.
        """
        self._write(TelnetProtocol.encode_text(text, encoding))
        if password and not self.password_mode:
            self.password_mode = True
            self.telnet.request_local(Opt.ECHO, True)
        self._write(self.telnet.go_ahead())

    def send_gmcp(self, package: str, data: Any = None) -> bool:
        """Send a GMCP message if GMCP is on and the client takes the package.

        ``Core.*`` always goes; other packages only where the client named
        the package or an ancestor in ``Core.Supports``. Returns whether it
        was sent.
        """
        if not self.telnet.local_enabled(Opt.GMCP) or not self.gmcp_wanted(package):
            return False
        payload = (
            package if data is None else f"{package} {json.dumps(data, separators=(',', ':'))}"
        )
        # A name the game made up could hold a lone surrogate: never raise for it.
        self.telnet.send_subnegotiation(Opt.GMCP, payload.encode("utf-8", errors="replace"))
        self._pull_telnet()
        return True

    def gmcp_wanted(self, package: str) -> bool:
        """Whether the client takes GMCP ``package`` (see :func:`gmcp_wanted`)."""
        return gmcp_wanted(self.gmcp_supports, package)

    def send_msdp(self, variables: Mapping[str, Any]) -> bool:
        """Send MSDP variables if MSDP is on. Returns whether it was sent."""
        if not self.telnet.local_enabled(Opt.MSDP) or not variables:
            return False
        self.telnet.send_subnegotiation(Opt.MSDP, msdp_encode(variables))
        self._pull_telnet()
        return True

    def send_mssp(self, variables: Iterable[tuple[str, str]]) -> bool:
        """Send MSSP ``(name, value)`` pairs if MSSP is on (a name may repeat)."""
        if not self.telnet.local_enabled(Opt.MSSP):
            return False
        payload = bytearray()
        for name, value in variables:
            payload.append(MSSP_VAR)
            payload += _mssp_clean(name)
            payload.append(MSSP_VAL)
            payload += _mssp_clean(value)
        self.telnet.send_subnegotiation(Opt.MSSP, bytes(payload))
        self._pull_telnet()
        return True

    def send_keepalive(self) -> None:
        """``IAC NOP``: harmless to the client, and proves the link is up."""
        self._write(bytes((IAC, 241)))

    def close(self) -> bytes:
        """The last bytes to send: ends MCCP2 cleanly (``Z_FINISH``)."""
        self._pull_telnet()
        if self._compressor is not None:
            self._out += self._compressor.flush(zlib.Z_FINISH)
            self._compressor = None
        self.closed = True
        data = bytes(self._out)
        self._out.clear()
        return data

    # -- input ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[MudEvent]:
        """Parse bytes from the client; return what they mean."""
        events: list[MudEvent] = []
        flags: dict[str, Any] = {}
        for event in self.telnet.receive_data(data):
            self._handle(event, events, flags)
        if flags:
            events.insert(0, FlagsChanged(flags))
        self._pull_telnet()
        self._check_settled(events)
        return events

    def _handle(self, event: Event, events: list[MudEvent], flags: dict[str, Any]) -> None:
        if isinstance(event, TextLine):
            if self.password_mode:
                self.password_mode = False
                # Not waiting for the client's DONT: TinTin++ never sends it,
                # and the next password prompt must be able to say WILL again.
                self.telnet.request_local(Opt.ECHO, False, await_answer=False)
                self._write(b"\r\n")  # the client did not echo the Enter key
            events.append(event)
        elif isinstance(event, OptionChange):
            self._option_changed(event, events, flags)
        elif isinstance(event, Subnegotiation):
            self._subnegotiation(event, events, flags)
        elif isinstance(event, Command):
            pass  # AYT is answered below us; the rest mean nothing here

    def _answered(self, bit: int) -> None:
        self._awaiting &= ~bit

    def _check_settled(self, events: list[MudEvent]) -> None:
        if self._settled_sent or self._awaiting:
            return
        awaited = _AWAITED if self._mccp else _AWAITED_NO_MCCP
        if not any(self.telnet.awaiting_answer(option, local=ours) for option, ours in awaited):
            self._settled_sent = True
            events.append(Settled())

    def _option_changed(
        self, event: OptionChange, events: list[MudEvent], flags: dict[str, Any]
    ) -> None:
        option, on = event.option, event.enabled
        if event.local:
            if option == Opt.MCCP2:
                if on:
                    self._write(bytes((IAC, SB, Opt.MCCP2, IAC, SE)))
                    self._compressor = zlib.compressobj(self._compression_level)
                elif self._compressor is not None:
                    self._pull_telnet()
                    self._out += self._compressor.flush(zlib.Z_FINISH)
                    self._compressor = None
                flags["MCCP"] = on
            elif option == Opt.GMCP:
                flags["GMCP"] = on
            elif option == Opt.MSDP:
                flags["MSDP"] = on
            elif option == Opt.MSSP and on:
                events.append(MSSPRequest())
            elif option == Opt.CHARSET and on:
                self.telnet.send_subnegotiation(Opt.CHARSET, bytes((CHARSET_REQUEST,)) + b";UTF-8")
            elif option == Opt.EOR:
                flags["EOR"] = on
            elif option == Opt.SGA:
                flags["NOGOAHEAD"] = on
            return
        if option == Opt.TTYPE:
            if on:
                self._ttype_replies.clear()
                self._ask_ttype()
            else:
                self._answered(_TTYPE_ANSWER)
        elif option == Opt.NAWS:
            if on:
                self._awaiting |= _NAWS_ANSWER
            else:
                self._answered(_NAWS_ANSWER)
        elif option == Opt.NEW_ENVIRON:
            if on:
                request = bytearray((ENV_SEND,))
                for name in MNES_VARIABLES:
                    request.append(ENV_VAR)
                    request += name.encode("ascii")
                self.telnet.send_subnegotiation(Opt.NEW_ENVIRON, bytes(request))
                self._awaiting |= _ENVIRON_ANSWER
            else:
                self._answered(_ENVIRON_ANSWER)

    def _ask_ttype(self) -> None:
        self.telnet.send_subnegotiation(Opt.TTYPE, bytes((TTYPE_SEND,)))
        self._awaiting |= _TTYPE_ANSWER

    def _subnegotiation(
        self, event: Subnegotiation, events: list[MudEvent], flags: dict[str, Any]
    ) -> None:
        option, payload = event.option, event.payload
        if option == Opt.TTYPE and self.telnet.remote_enabled(Opt.TTYPE):
            self._ttype(payload, flags)
        elif option == Opt.NAWS and self.telnet.remote_enabled(Opt.NAWS):
            self._answered(_NAWS_ANSWER)
            if len(payload) == 4:
                width = payload[0] << 8 | payload[1]
                height = payload[2] << 8 | payload[3]
                if width:
                    flags["SCREENWIDTH"] = {0: width}
                if height:
                    flags["SCREENHEIGHT"] = {0: height}
        elif option == Opt.NEW_ENVIRON and self.telnet.remote_enabled(Opt.NEW_ENVIRON):
            if payload[:1] in (bytes((ENV_IS,)), bytes((ENV_INFO,))):
                self._answered(_ENVIRON_ANSWER)
                self._environ(_parse_environ(payload[1:]), flags)
        elif option == Opt.CHARSET:
            self._charset(payload, flags)
        elif option == Opt.GMCP and self.telnet.local_enabled(Opt.GMCP):
            self._gmcp(payload, events, flags)
        elif option == Opt.MSDP and self.telnet.local_enabled(Opt.MSDP):
            self._msdp(payload, events, flags)

    def _ttype(self, payload: bytes, flags: dict[str, Any]) -> None:
        if payload[:1] != bytes((TTYPE_IS,)):
            return
        reply = payload[1:].decode("ascii", errors="replace").strip()[:64]
        previous = self._ttype_replies[-1] if self._ttype_replies else None
        self._ttype_replies.append(reply)
        round_ = len(self._ttype_replies)
        upper = reply.upper()
        if upper.startswith("MTTS "):
            self._apply_mtts(upper[5:], flags)
        elif round_ == 1 and not _TERMINAL.match(upper):
            name, _, version = reply.partition(" ")
            flags["CLIENTNAME"] = name
            if version.strip():
                flags["CLIENTVERSION"] = version.strip()
            if name.upper() in _XTERM256_CLIENTS:
                flags["XTERM256"] = True
                flags["ANSI"] = True
            if name.upper() in _TRUECOLOR_CLIENTS:
                flags["TRUECOLOR"] = True
        elif reply != previous:
            flags["TERM"] = reply
            _apply_terminal(upper, flags)
        if reply == previous or round_ >= 3 or upper.startswith("MTTS "):
            self._answered(_TTYPE_ANSWER)
        else:
            self._ask_ttype()

    def _apply_mtts(self, text: str, flags: dict[str, Any]) -> None:
        """MTTS bits, from TTYPE or NEW-ENVIRON; a bit either one sets counts."""
        try:
            bits = int(text.strip())
        except ValueError:
            return
        if not 0 <= bits < 1 << 16:
            return
        self._mtts |= bits
        flags["MTTS"] = self._mtts
        for bit, name in MTTS_BITS:
            flags[name] = bool(self._mtts & bit)
        if self._mtts & 4:
            flags["ENCODING"] = "utf-8"

    def _environ(self, variables: dict[str, str | None], flags: dict[str, Any]) -> None:
        for name, value in variables.items():
            if value is None:
                continue
            value = value.strip()[:64]
            if name == "CLIENT_NAME" and value:
                flags["CLIENTNAME"] = value
            elif name == "CLIENT_VERSION" and value:
                flags["CLIENTVERSION"] = value
            elif name == "TERMINAL_TYPE" and value:
                flags["TERM"] = value
                _apply_terminal(value.upper(), flags)
            elif name == "MTTS":
                self._apply_mtts(value, flags)
            elif name == "CHARSET" and value.upper().replace("_", "-") in ("UTF-8", "UTF8"):
                flags["UTF-8"] = True
                flags["ENCODING"] = "utf-8"

    def _charset(self, payload: bytes, flags: dict[str, Any]) -> None:
        if not payload:
            return
        kind, rest = payload[0], payload[1:]
        if kind == CHARSET_ACCEPTED:
            accepted = rest.decode("ascii", errors="replace").strip().upper()
            if accepted in ("UTF-8", "UTF8"):
                flags["UTF-8"] = True
                flags["ENCODING"] = "utf-8"
        elif kind == CHARSET_REQUEST and rest:
            # The client offers character sets: take UTF-8 if it is there.
            if rest.startswith(b"[TTABLE]"):
                rest = rest[9:]  # the marker and its version byte
            names = rest[1:].split(rest[:1]) if rest else []
            for name in names:
                if name.strip().upper() in (b"UTF-8", b"UTF8"):
                    reply = bytes((CHARSET_ACCEPTED,)) + name.strip()
                    self.telnet.send_subnegotiation(Opt.CHARSET, reply)
                    flags["UTF-8"] = True
                    flags["ENCODING"] = "utf-8"
                    return
            self.telnet.send_subnegotiation(Opt.CHARSET, bytes((CHARSET_REJECTED,)))

    def _gmcp(self, payload: bytes, events: list[MudEvent], flags: dict[str, Any]) -> None:
        text = payload.decode("utf-8", errors="replace").strip()
        package, _, rest = text.partition(" ")
        if not package:
            return
        rest = rest.strip()
        data: Any = None
        if rest:
            try:
                data = clientjson.loads(rest, max_depth=self.max_json_depth)
            except clientjson.ClientJSONTooDeep:
                events.append(
                    BadInput(
                        f"Your client sent GMCP {package[:64]} with data nested deeper than "
                        f"{self.max_json_depth} levels; it was ignored."
                    )
                )
                return
            except clientjson.ClientJSONError:
                data = rest  # not JSON: a bare word, say; passed on as text
        lowered = package.lower()
        before = dict(self.gmcp_supports)
        refused = update_gmcp_supports(
            self.gmcp_supports, package, data, max_packages=self.max_gmcp_supports
        )
        if refused is not None:
            if refused:
                events.append(BadInput(supports_refused_message(refused, self.max_gmcp_supports)))
            if self.gmcp_supports != before:
                flags["GMCP_SUPPORTS"] = dict(self.gmcp_supports)
        elif lowered == "core.hello" and isinstance(data, dict):
            if data.get("client"):
                flags["CLIENTNAME"] = str(data["client"])[:64]
            if data.get("version"):
                flags["CLIENTVERSION"] = str(data["version"])[:64]
        elif lowered == "core.ping":
            self.send_gmcp("Core.Ping")
            return
        events.append(gmcp_input(package, data))

    def _msdp(self, payload: bytes, events: list[MudEvent], flags: dict[str, Any]) -> None:
        for name, value in msdp_decode(payload):
            upper = name.upper()
            values = tuple(value) if isinstance(value, list) else (value,)
            if upper in _MSDP_COMMANDS:
                events.append(OOBInput(_MSDP_COMMANDS[upper], tuple(str(v) for v in values)))
                continue
            if upper == "CLIENT_NAME" and isinstance(value, str):
                flags["CLIENTNAME"] = value[:64]
            elif upper == "CLIENT_VERSION" and isinstance(value, str):
                flags["CLIENTVERSION"] = value[:64]
            elif upper in ("XTERM_256_COLORS", "UTF_8", "ANSI_COLORS") and isinstance(value, str):
                flag = {"XTERM_256_COLORS": "XTERM256", "UTF_8": "UTF-8", "ANSI_COLORS": "ANSI"}
                flags[flag[upper]] = value.strip() == "1"
            events.append(OOBInput("msdp_var", (name, value)))


def _mssp_clean(text: str) -> bytes:
    data = str(text).encode("utf-8", errors="replace")
    return bytes(b for b in data if b not in (0, MSSP_VAR, MSSP_VAL, IAC))


def terminal_flags(name: str) -> dict[str, Any]:
    """The colour flags a terminal type (``TERM``, say ``xterm-256color``) implies."""
    flags: dict[str, Any] = {}
    _apply_terminal(name.upper(), flags)
    return flags


def _apply_terminal(upper: str, flags: dict[str, Any]) -> None:
    if "TRUECOLOR" in upper or "DIRECT" in upper or "24BIT" in upper:
        flags["TRUECOLOR"] = True
        flags["XTERM256"] = True
    if "256COLOR" in upper:
        flags["XTERM256"] = True
    if _TERMINAL.match(upper) and upper != "DUMB":
        flags["ANSI"] = True


def _parse_environ(data: bytes) -> dict[str, str | None]:
    """NEW-ENVIRON ``VAR name VALUE value ...`` pairs (ESC undone)."""
    result: dict[str, str | None] = {}
    name: bytearray | None = None
    value: bytearray | None = None
    pos = 0

    def finish() -> None:
        if name is not None:
            key = name.decode("ascii", errors="replace")
            result[key] = None if value is None else value.decode("utf-8", errors="replace")

    while pos < len(data):
        byte = data[pos]
        pos += 1
        if byte in (ENV_VAR, ENV_USERVAR):
            finish()
            name, value = bytearray(), None
        elif byte == ENV_VALUE:
            value = bytearray()
        else:
            if byte == ENV_ESC and pos < len(data):
                byte = data[pos]
                pos += 1
            if value is not None:
                value.append(byte)
            elif name is not None:
                name.append(byte)
    finish()
    return result

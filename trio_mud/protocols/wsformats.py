"""What a WebSocket frame from a client means, in each format (sans-I/O).

The format is negotiated with ``Sec-WebSocket-Protocol``: the first of the
server's order (:data:`SUBPROTOCOLS`) that the client offers, Evennia's when
it offers none (:func:`choose_subprotocol`). :func:`decode_frame` turns one
frame into :class:`ClientText` (typed lines), :class:`ClientOOB` (Evennia's
out-of-band commands) and :class:`ClientGMCP` (GMCP in the mudstandards.org
formats). No I/O, no clock: :mod:`trio_mud.transports.websocket` runs it.

Error handling:
    :func:`decode_frame` raises :class:`BadFrame`, whose message tells the
    client what was wrong; nothing else escapes it for any input.
"""

from __future__ import annotations

import re
from typing import Any

from attrs import field, frozen

from . import clientjson

EVENNIA = "v1.evennia.com"
GMCP = "gmcp.mudstandards.org"
JSON = "json.mudstandards.org"
TERMINAL = "terminal.mudstandards.org"

#: The server's order of preference.
SUBPROTOCOLS = (EVENNIA, GMCP, JSON, TERMINAL)


def choose_subprotocol(offered: list[str]) -> str:
    """The first of ours that the client offers; Evennia's when it offers none."""
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return EVENNIA


class BadFrame(Exception):
    """A frame that does not fit the format; the message says why."""


# -- what a frame means (sans-I/O) -----------------------------------------------------


@frozen
class ClientText:
    """A line the player typed (not yet cleaned or checked)."""

    text: str


@frozen
class ClientOOB:
    """Out-of-band input as ``cmdname(*args, **kwargs)``; never ``text``."""

    cmdname: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(factory=dict)


@frozen
class ClientGMCP:
    """A GMCP message (the gmcp and json formats): ``Package.Name`` and data."""

    package: str
    data: Any = None


ClientInput = ClientText | ClientOOB | ClientGMCP

#: Command names a client may use in Evennia's format (the game's inputfunc names).
_CMDNAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")

#: Command names that only the server sends; a client never may.
_SERVER_ONLY = frozenset({"prompt", "default"})

_EVENNIA_SHAPE = 'expected ["cmdname", [args], {kwargs}]'


def decode_frame(
    subprotocol: str, frame: str | bytes, *, max_json_depth: int = clientjson.DEFAULT_MAX_DEPTH
) -> list[ClientInput]:
    """What one WebSocket frame from a client means, in ``subprotocol``'s format.

    Typed text comes out as :class:`ClientText` whatever the format (in
    Evennia's, ``["text", ...]`` in any letter case), so it always passes the
    portal's checks on typed lines; nothing else may be called ``text``.

    Raises:
        BadFrame: the frame does not fit the format (the message says how);
            nothing else escapes for any input.
    """
    if isinstance(frame, bytes) or subprotocol == TERMINAL:
        text = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return [ClientText(line) for line in lines if line or "\n" not in text]
    if subprotocol == EVENNIA:
        try:
            decoded = clientjson.loads(frame, max_depth=max_json_depth)
        except ValueError as exc:
            raise BadFrame(f"{_EVENNIA_SHAPE} ({exc})") from None
        if not isinstance(decoded, list) or len(decoded) != 3:
            raise BadFrame(_EVENNIA_SHAPE)
        cmdname, args, kwargs = decoded
        if (
            not isinstance(cmdname, str)
            or not isinstance(args, list)
            or not isinstance(kwargs, dict)
        ):
            raise BadFrame(_EVENNIA_SHAPE)
        if not _CMDNAME.fullmatch(cmdname):
            raise BadFrame("a command name is a letter and up to 63 letters, digits, _ or .")
        cmdname = cmdname.lower()
        if cmdname == "text":
            return [ClientText(str(args[0]) if args else "")]
        if cmdname in _SERVER_ONLY:
            raise BadFrame(f"{cmdname!r} is not something a client sends")
        return [ClientOOB(cmdname, tuple(args), kwargs)]
    if subprotocol == GMCP:
        package, _, rest = frame.strip().partition(" ")
        return [_gmcp(package, rest, max_json_depth)]
    if subprotocol == JSON:
        try:
            envelope = clientjson.loads(frame, max_depth=max_json_depth)
            proto, ident, data = (
                envelope["proto"],
                envelope.get("id", ""),
                envelope.get("data", ""),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            raise BadFrame('expected {"proto": ..., "id": ..., "data": ...}') from None
        if proto == "gmcp":
            if isinstance(data, str):
                return [_gmcp(str(ident), data, max_json_depth)]
            return [_gmcp_checked(str(ident), data)]
        if proto == "text":
            return [ClientText(str(data))]
        raise BadFrame(f"unknown proto {str(proto)[:32]!r}")
    raise BadFrame(f"unknown format {subprotocol[:32]!r}")


def _gmcp(package: str, payload: str, max_json_depth: int) -> ClientGMCP:
    data: Any = None
    payload = payload.strip()
    if payload:
        try:
            data = clientjson.loads(payload, max_depth=max_json_depth)
        except clientjson.ClientJSONTooDeep:
            raise BadFrame(f"GMCP data nested deeper than {max_json_depth} levels") from None
        except clientjson.ClientJSONError:
            data = payload  # not JSON: passed on as text
    return _gmcp_checked(package, data)


def _gmcp_checked(package: str, data: Any) -> ClientGMCP:
    if not package:
        raise BadFrame("a GMCP message needs a package name")
    if len(package) > 128:
        raise BadFrame("a GMCP package name is at most 128 characters")
    return ClientGMCP(package, data)

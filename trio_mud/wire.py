"""Messages between a portal process and a server process, as bytes.

A frame is a 4-byte big-endian length and a JSON body. The messages that
carry the game's traffic, one per command and one per line of output, have a
compact form, a JSON array led by a one-letter tag:

=========  =================================================
``I``      ``["I", sessid, cmdname, args, kwargs, txid]``    :class:`DataIn`
``O``      ``["O", sessid, cmdname, args, kwargs, txid]``    :class:`DataOut`
``B``      ``["B", [sessids], cmdname, args, kwargs, txid]`` :class:`Broadcast`
``D``      ``["D", txid, sessid, sync_data]``                :class:`Done`
=========  =================================================

Every other message (sessions connecting, syncs, snapshots, controls) is a
JSON object: the message's fields plus ``"type"``, the class's name (a
tagged union through a private cattrs converter). Both are checked field by
field on the way in: a frame can only ever become one of the message classes
here. Never pickle. JSON is written and read by msgspec, whose C encoder and
decoder take about a twentieth of the stdlib's time for these small frames;
see docs/restart.md for the measurements.

JSON cannot key an object by a number, and Evennia's flags do
(``SCREENWIDTH: {0: 80}``), so a dict with keys that are not all strings
travels as ``{"__items__": [[key, value], ...]}``. So does a dict whose only
key is ``"__items__"`` (a client can send one): the escape is unambiguous,
and every dict comes back as it went. Values that are plain (strings, as
nearly all output is) skip that walk. Tuples become lists; the message
classes turn their ``args`` back into tuples.

Versioned: :data:`LINK_VERSION` travels in :class:`Hello`; a portal refuses a
server process that speaks another version (a reload into code whose link
changed needs a full restart).

Error handling:
    :func:`encode` raises :class:`WireError` for a message it cannot send
    (a value JSON cannot hold, nesting past :data:`MAX_DEPTH`).
    :meth:`FrameReader.feed` raises :class:`WireError` only when the stream
    itself is broken (a frame over its size cap); a frame that is whole but
    not a message this version knows becomes an :class:`Undecodable` record
    in the result, naming the session and txid when they can be read, so
    that one bad message is that session's error and the link goes on.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import attrs
import cattrs
import msgspec
from attrs import frozen
from cattrs.strategies import configure_tagged_union

from .messages import (
    LINK_VERSION,
    BanList,
    Broadcast,
    Connect,
    Counters,
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
    ShutdownRequest,
    Snapshot,
)

LinkMessage = (
    Connect
    | DataIn
    | DataOut
    | Broadcast
    | Disconnect
    | SessionUpdate
    | Done
    | Pause
    | Paused
    | Resume
    | Loaded
    | ReloadRequest
    | ShutdownRequest
    | BanList
    | Counters
    | Snapshot
    | Hello
)

_HEADER = struct.Struct(">I")

#: Largest frame accepted (a snapshot of thousands of sessions fits easily).
MAX_FRAME = 64 * 1024 * 1024

#: Deepest nesting of values a message may carry. Client JSON is capped far
#: below this at the portal (``max_json_depth``); this guards the link itself.
MAX_DEPTH = 200

_ITEMS = "__items__"


class WireError(Exception):
    """A message that cannot be encoded, or a stream that is not frames."""


@frozen
class Undecodable:
    """A whole frame that is not a message this version knows.

    ``sessid`` and ``txid`` are what could be read of it (None otherwise), so
    that the receiver can end that one message and tell that one session.
    """

    reason: str
    sessid: int | None = None
    txid: int | None = None


_converter = cattrs.Converter()
configure_tagged_union(LinkMessage, _converter, tag_name="type")

__all__ = ["LINK_VERSION", "FrameReader", "LinkMessage", "Undecodable", "WireError", "encode"]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


#: Values that travel as they are (a float only when finite).
_PLAIN = frozenset({str, int, bool, type(None)})


def _flat(value: dict[Any, Any]) -> bool:
    """Whether ``value`` is a dict of strings to plain values that needs no
    escaping (the common case: command counters, most keyword arguments)."""
    if _ITEMS in value:
        return False
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or (
            kind not in _PLAIN and not (kind is float and math.isfinite(item))
        ):
            return False
    return True


def _to_json(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested deeper than {MAX_DEPTH} levels")
    if depth < MAX_DEPTH and type(value) is dict and _flat(value):
        return value  # read by the encoder only, never changed
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and set(value) != {_ITEMS}:
            return {key: _to_json(item, depth + 1) for key, item in value.items()}
        return {
            _ITEMS: [[_to_json(k, depth + 1), _to_json(v, depth + 1)] for k, v in value.items()]
        }
    if isinstance(value, list | tuple):
        return [_to_json(item, depth + 1) for item in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (math.inf, -math.inf):
            raise WireError(f"{value!r} is not JSON")
        return value
    raise WireError(f"a value of type {type(value).__name__} cannot travel")


def _from_json(value: Any) -> Any:
    if type(value) is dict and _flat(value):
        return value
    if isinstance(value, dict):
        if len(value) == 1 and _ITEMS in value:
            items = value[_ITEMS]
            if not isinstance(items, list):
                raise WireError(f"{_ITEMS} must hold a list of pairs")
            result = {}
            for pair in items:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise WireError(f"{_ITEMS} must hold a list of pairs")
                result[_key(pair[0])] = _from_json(pair[1])
            return result
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _key(value: Any) -> Any:
    """A dict key as it was: lists were tuples (keys must be hashable)."""
    if isinstance(value, list):
        return tuple(_key(item) for item in value)
    if isinstance(value, dict):
        raise WireError("a dict cannot be a key")
    return value


def _args_out(args: tuple[Any, ...]) -> Any:
    for arg in args:
        if type(arg) is not str:
            return _to_json(args)
    return args


def _kwargs_out(kwargs: dict[str, Any]) -> Any:
    return _to_json(kwargs) if kwargs else kwargs


def _body(message: LinkMessage) -> Any:
    """The JSON-ready form of ``message``: the compact array or the tagged object."""
    kind = type(message)
    if kind is DataOut or kind is DataIn:
        assert isinstance(message, DataOut | DataIn)
        tag = "O" if kind is DataOut else "I"
        return (
            tag,
            message.sessid,
            message.cmdname,
            _args_out(message.args),
            _kwargs_out(message.kwargs),
            message.txid,
        )
    if kind is Broadcast:
        assert isinstance(message, Broadcast)
        return (
            "B",
            message.sessids,
            message.cmdname,
            _args_out(message.args),
            _kwargs_out(message.kwargs),
            message.txid,
        )
    if kind is Done:
        assert isinstance(message, Done)
        sync = message.sync_data
        return ("D", message.txid, message.sessid, _to_json(sync) if sync else sync)
    # The fields as they are (not cattrs' unstructuring, which would turn
    # tuple keys into lists before the escaping below could keep them).
    fields = {
        field.name: getattr(message, field.name) for field in attrs.fields(kind) if field.init
    }
    return _to_json({"type": kind.__name__, **fields})


def encode(message: LinkMessage) -> bytes:
    """One message as a frame.

    Raises:
        WireError: the message holds a value that cannot travel.
    """
    try:
        body = _json_encode(_body(message))
    except (ValueError, TypeError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
        raise WireError(f"cannot encode {type(message).__name__}: {exc}") from None
    return _HEADER.pack(len(body)) + body


def encode_many(messages: list[LinkMessage]) -> tuple[bytes, list[tuple[LinkMessage, WireError]]]:
    """Frames for ``messages``, joined for one write; and those that cannot travel."""
    frames: list[bytes] = []
    failed: list[tuple[LinkMessage, WireError]] = []
    for message in messages:
        try:
            frames.append(encode(message))
        except WireError as exc:
            failed.append((message, exc))
    return b"".join(frames), failed


def _int(value: Any) -> int:
    if type(value) is not int:
        raise WireError("expected a whole number")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise WireError("expected a string")
    return value


def _args_in(value: Any) -> tuple[Any, ...]:
    if type(value) is not list:
        raise WireError("args must be a list")
    for arg in value:
        if type(arg) is not str:
            return tuple(_from_json(value))
    return tuple(value)


def _kwargs_in(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise WireError("kwargs must be an object")
    if not value:
        return value
    result = _from_json(value)
    if not all(type(key) is str for key in result):
        raise WireError("kwargs must have string keys")
    return result  # type: ignore[no-any-return]


def _from_array(raw: list[Any]) -> LinkMessage:
    tag = raw[0] if raw else None
    if tag in ("I", "O", "B") and len(raw) == 6:
        args, kwargs, txid = _args_in(raw[3]), _kwargs_in(raw[4]), _int(raw[5])
        if tag == "B":
            # (the types looked at in C: a room's say names hundreds)
            if type(raw[1]) is not list or not set(map(type, raw[1])) <= {int}:
                raise WireError("sessids must be a list of whole numbers")
            sessids = tuple(raw[1])
            return Broadcast(sessids, _str(raw[2]), args, kwargs, txid)
        kind = DataIn if tag == "I" else DataOut
        return kind(_int(raw[1]), _str(raw[2]), args, kwargs, txid)
    if tag == "D" and len(raw) == 4:
        sync_data = _from_json(raw[3])
        if type(sync_data) is not dict:
            raise WireError("sync data must be an object")
        return Done(_int(raw[1]), _int(raw[2]), sync_data)
    raise WireError("not a message")


def decode_body(body: bytes) -> LinkMessage:
    """The message in a frame's body.

    Raises:
        WireError: the body is not a message this version knows.
    """
    try:
        raw = _json_decode(body)
        if type(raw) is list:
            return _from_array(raw)
        data = _from_json(raw)
        message: LinkMessage = _converter.structure(data, LinkMessage)  # type: ignore[arg-type]
        return message
    except WireError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        RecursionError,
        msgspec.DecodeError,
        cattrs.BaseValidationError,
    ) as exc:
        raise WireError(f"not a message: {type(exc).__name__}") from None


def _whose(body: bytes) -> tuple[int | None, int | None]:
    """The sessid and txid of a frame that is not a message, where readable."""
    try:
        raw = _json_decode(body)
    except (ValueError, RecursionError, msgspec.DecodeError):
        return None, None
    if type(raw) is list and len(raw) == 6 and raw[0] in ("I", "O"):
        sessid, txid = raw[1], raw[5]
        return (
            sessid if type(sessid) is int else None,
            txid if type(txid) is int else None,
        )
    if not isinstance(raw, dict):
        return None, None
    sessid, txid = raw.get("sessid"), raw.get("txid")
    return (
        sessid if type(sessid) is int else None,
        txid if type(txid) is int else None,
    )


class FrameReader:
    """Splits a byte stream into message frames (sans-I/O)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[LinkMessage | Undecodable]:
        """The frames ``data`` completes, decoded.

        Raises:
            WireError: a frame's length is over ``max_frame`` (the stream is
                not to be trusted after that).
        """
        buffer = self._buffer
        buffer += data
        messages: list[LinkMessage | Undecodable] = []
        start = 0  # the frames taken are cut from the buffer once, at the end
        try:
            while len(buffer) - start >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer, start)
                if size > self.max_frame:
                    raise WireError(f"frame of {size} bytes is over {self.max_frame}")
                end = start + _HEADER.size + size
                if len(buffer) < end:
                    break
                body = bytes(buffer[start + _HEADER.size : end])
                start = end
                try:
                    messages.append(decode_body(body))
                except WireError as exc:
                    messages.append(Undecodable(str(exc), *_whose(body)))
        finally:
            del buffer[:start]
        return messages

"""Messages between a portal process and a server process, as bytes.

A frame is a 4-byte big-endian length and a JSON object: the message's
fields plus ``"type"``, the message class's name (a tagged union, through a
private cattrs converter). JSON cannot key an object by a number, and
Evennia's flags do (``SCREENWIDTH: {0: 80}``), so a dict with keys that are
not all strings travels as ``{"__items__": [[key, value], ...]}``. So does a
dict whose only key is ``"__items__"`` (a client can send one): the escape is
unambiguous, and every dict comes back as it went. Tuples become lists; the
message classes turn their ``args`` back into tuples.

Never pickle: a frame can only ever become one of the message classes here.

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

import json
import math
import struct
from typing import Any

import cattrs
from attrs import frozen
from cattrs.strategies import configure_tagged_union

from .messages import (
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

LinkMessage = (
    Connect
    | DataIn
    | DataOut
    | Disconnect
    | SessionUpdate
    | Done
    | Pause
    | Paused
    | Resume
    | Loaded
    | ReloadRequest
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


def _to_json(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested deeper than {MAX_DEPTH} levels")
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


def encode(message: LinkMessage) -> bytes:
    """One message as a frame.

    Raises:
        WireError: the message holds a value that cannot travel.
    """
    try:
        body = json.dumps(
            _to_json(_converter.unstructure(message, LinkMessage)),
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:
        raise WireError(f"cannot encode {type(message).__name__}: {exc}") from None
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> LinkMessage:
    """The message in a frame's body.

    Raises:
        WireError: the body is not a message this version knows.
    """
    try:
        raw = json.loads(body)
        data = _from_json(raw)
        message: LinkMessage = _converter.structure(data, LinkMessage)  # type: ignore[arg-type]
        return message
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError, cattrs.BaseValidationError) as exc:
        raise WireError(f"not a message: {type(exc).__name__}") from None


def _whose(body: bytes) -> tuple[int | None, int | None]:
    """The sessid and txid of a frame that is not a message, where readable."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
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
        self._buffer += data
        messages: list[LinkMessage | Undecodable] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > self.max_frame:
                raise WireError(f"frame of {size} bytes is over {self.max_frame}")
            if len(self._buffer) < _HEADER.size + size:
                break
            body = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
            del self._buffer[: _HEADER.size + size]
            try:
                messages.append(decode_body(body))
            except WireError as exc:
                messages.append(Undecodable(str(exc), *_whose(body)))
        return messages

"""Messages between a portal process and a server process, as bytes.

A frame is a 4-byte big-endian length and a JSON object: the message's
fields plus ``"type"``, the message class's name (a tagged union, through a
private cattrs converter). JSON cannot key an object by a number, and
Evennia's flags do (``SCREENWIDTH: {0: 80}``), so a dict with keys that are
not all strings travels as ``{"__items__": [[key, value], ...]}``. Tuples
become lists; the message classes turn their ``args`` back into tuples.

Never pickle: a frame can only ever become one of the message classes here.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import cattrs
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


class WireError(Exception):
    """A frame that is not a message this version knows."""


_converter = cattrs.Converter()
configure_tagged_union(LinkMessage, _converter, tag_name="type")


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _to_json(item) for key, item in value.items()}
        return {"__items__": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__items__"}:
            return {_key(k): _from_json(v) for k, v in value["__items__"]}
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def encode(message: LinkMessage) -> bytes:
    """One message as a frame."""
    body = json.dumps(
        _to_json(_converter.unstructure(message, LinkMessage)),
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> LinkMessage:
    """The message in a frame's body."""
    try:
        data = _from_json(json.loads(body))
        message: LinkMessage = _converter.structure(data, LinkMessage)  # type: ignore[arg-type]
        return message
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as exc:
        raise WireError(f"not a message: {exc!r}") from None


class FrameReader:
    """Splits a byte stream into message frames (sans-I/O)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[LinkMessage]:
        self._buffer += data
        messages: list[LinkMessage] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > self.max_frame:
                raise WireError(f"frame of {size} bytes is over {self.max_frame}")
            if len(self._buffer) < _HEADER.size + size:
                break
            body = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
            del self._buffer[: _HEADER.size + size]
            messages.append(decode_body(body))
        return messages

"""JSON that a client sent: parsed with a cap on nesting, never a crash.

Clients send JSON in GMCP payloads and WebSocket frames. Python's ``json``
recurses once per level of nesting, so a payload of a few thousand ``[``
raises :class:`RecursionError` (not :class:`ValueError`), and anything that
walks the result later recurses as deeply. :func:`loads` refuses such input,
and also what plain JSON cannot carry on: ``NaN``, ``Infinity`` and numbers
too large for a float (``1e999``).

Every step takes time linear in the input: msgspec's C parser checks the
text first (refusing what is not JSON, or nested past the interpreter's
recursion limit), and only valid JSON is then measured for depth, so no
input (an unterminated string of escaped quotes, say) can make the scan
quadratic.

Error handling:
    :func:`loads` raises :class:`ClientJSONError` (a :class:`ValueError`),
    or its subclass :class:`ClientJSONTooDeep` for JSON nested past the cap;
    nothing else escapes it for any string.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

#: Nesting a client's JSON may have unless the caller says otherwise.
DEFAULT_MAX_DEPTH = 32

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_decode = msgspec.json.Decoder().decode


class ClientJSONError(ValueError):
    """Client JSON that is malformed, too deep, or not plain JSON."""


class ClientJSONTooDeep(ClientJSONError):
    """Client JSON nested deeper than allowed."""


def _nesting(valid_json: str) -> int:
    """How deeply the arrays and objects of VALID JSON nest (0 for a scalar).

    Brackets inside strings do not count. Linear only because every string
    in valid JSON is closed: never call it on unchecked text.
    """
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', valid_json)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse client JSON nested at most ``max_depth`` deep.

    Raises:
        ClientJSONTooDeep: nested deeper than ``max_depth``.
        ClientJSONError: not valid JSON, or holding ``NaN``, ``Infinity`` or
            a number out of a float's range.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        value = _decode(text)
    except RecursionError:
        raise ClientJSONTooDeep(f"nested deeper than {max_depth} levels") from None
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise ClientJSONError(f"not valid JSON: {_first_line(exc)}") from None
    # Cheap test first: fewer opening brackets than the cap cannot nest past it.
    if text.count("[") + text.count("{") > max_depth and _nesting(text) > max_depth:
        raise ClientJSONTooDeep(f"nested deeper than {max_depth} levels")
    return value


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0][:120] if lines else type(exc).__name__

"""JSON that a client sent: parsed with a cap on nesting, never a crash.

Clients send JSON in GMCP payloads and WebSocket frames. Python's ``json``
recurses once per level of nesting, so a payload of a few thousand ``[``
raises :class:`RecursionError` (not :class:`ValueError`), and anything that
walks the result later recurses as deeply. :func:`loads` refuses such input
before parsing it, and refuses the non-standard ``NaN`` and ``Infinity`` too,
so that what comes out can travel anywhere JSON can.

Error handling:
    :func:`loads` raises :class:`ClientJSONError` (a :class:`ValueError`)
    for anything it will not return; nothing else escapes it for any string.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Nesting a client's JSON may have unless the caller says otherwise.
DEFAULT_MAX_DEPTH = 32

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class ClientJSONError(ValueError):
    """Client JSON that is malformed, too deep, or not plain JSON."""


def nesting(text: str) -> int:
    """How deeply the arrays and objects of a JSON text nest (0 for a scalar).

    Brackets inside strings do not count. Malformed text gives a number too;
    the parser then refuses it.
    """
    if text.count("[") + text.count("{") == 0:
        return 0
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ClientJSONError(f"{name} is not JSON")


def loads(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse client JSON nested at most ``max_depth`` deep.

    Raises:
        ClientJSONError: not valid JSON, nested deeper than ``max_depth``, or
            holding ``NaN``/``Infinity`` or an integer too long to convert.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    # Cheap test first: fewer opening brackets than the cap cannot nest past it.
    if text.count("[") + text.count("{") > max_depth and nesting(text) > max_depth:
        raise ClientJSONError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ClientJSONError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ClientJSONError(f"not valid JSON: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0][:120] if lines else type(exc).__name__

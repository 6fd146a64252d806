"""Evennia's colour markup, rendered for what each client can show.

Markup (what operators coming from Evennia know):

=====================  ===================================================
``|r |g |y |b |m |c``  bright red, green, yellow, blue, magenta, cyan
``|w |x``              bright white, dark grey (bright black)
``|R |G ... |W |X``    the normal (not bright) colours
``|[r`` ... ``|[X``    background colours
``|500``, ``|[500``    xterm 6x6x6 colour cube (red, green, blue 0-5)
``|=a`` .. ``|=z``     greys, black to white (``|[=a`` for backgrounds)
``|#rrggbb``           truecolor (``|[#rrggbb`` for backgrounds)
``|n``                 back to normal
``|h |H``              hilite (bold) on / off
``|u |U``, ``|i |I``   underline, italic on / off
``|*``                 inverse
``|/ |- |_``           newline, tab, space
``||``                 a literal ``|``
=====================  ===================================================

:func:`render` turns marked-up text into ANSI for a client's colour level
(truecolor, xterm256, 16 colours, none), and :func:`render_html` into HTML
for the web client. Both always end with colours reset, so that what one
message sets never bleeds into the next. This module is pure: no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Mapping
from enum import IntEnum
from functools import lru_cache
from typing import Any, NamedTuple


class ColorLevel(IntEnum):
    """What a client can show, from nothing to 24-bit colour."""

    NONE = 0
    ANSI = 1
    XTERM256 = 2
    TRUECOLOR = 3


#: A colour: ("ansi", 0-15), ("x256", 16-255) or ("rgb", (r, g, b)).
Color = tuple[str, Any]

_NAMED = {"x": 0, "r": 1, "g": 2, "y": 3, "b": 4, "m": 5, "c": 6, "w": 7}

#: xterm's default RGB for the 16 ANSI colours, for matching and for HTML.
ANSI_RGB: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0),
    (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0),
    (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
)  # fmt: skip

_CUBE_LEVELS = (0, 95, 135, 175, 215, 255)

_TOKEN = re.compile(
    r"\|(?:"
    r"(?P<literal>[|/\-_])"
    r"|(?P<attr>[nhHuUiI*])"
    r"|(?P<bg>\[)?(?:"
    r"(?P<named>[rgybmcwxRGYBMCWX])"
    r"|(?P<cube>[0-5]{3})"
    r"|=(?P<grey>[a-z])"
    r"|\#(?P<hex>[0-9a-fA-F]{6})"
    r"))"
)

_LITERALS = {"|": "|", "/": "\n", "-": "\t", "_": " "}

#: Box-drawing characters and runs of ASCII rules, which a screen reader
#: would read out symbol by symbol.
_SCREENREADER_NOISE = re.compile(r"[\u2500-\u259f]+|([=\-~_*#+])\1{2,}")


class Style(NamedTuple):
    fg: Color | None = None
    bg: Color | None = None
    bold: bool = False
    underline: bool = False
    italic: bool = False
    inverse: bool = False


_PLAIN = Style()

#: What the attribute codes (``|n``, ``|h``, ...) do to a style.
_ATTRS: dict[str, Callable[[Style], Style]] = {
    "n": lambda style: _PLAIN,
    "h": lambda style: style._replace(bold=True),
    "H": lambda style: style._replace(bold=False),
    "u": lambda style: style._replace(underline=True),
    "U": lambda style: style._replace(underline=False),
    "i": lambda style: style._replace(italic=True),
    "I": lambda style: style._replace(italic=False),
    "*": lambda style: style._replace(inverse=True),
}


def level_for(flags: Mapping[str, Any]) -> ColorLevel:
    """The colour level a session's ``protocol_flags`` ask for."""
    if flags.get("NOCOLOR") or flags.get("SCREENREADER") or flags.get("RAW"):
        return ColorLevel.NONE
    if flags.get("TRUECOLOR"):
        return ColorLevel.TRUECOLOR
    if flags.get("XTERM256"):
        return ColorLevel.XTERM256
    if flags.get("ANSI", True):
        return ColorLevel.ANSI
    return ColorLevel.NONE


def _parse(text: str) -> Iterator[tuple[str, Style]]:
    """Split marked-up text into (plain text, style) runs."""
    style = _PLAIN
    buffer: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        start = match.start()
        if start > pos:
            buffer.append(text[pos:start])
        pos = match.end()
        effect = _effect(match.group())
        if isinstance(effect, str):
            buffer.append(effect)
            continue
        new = effect(style)
        if new != style:
            if buffer:
                yield "".join(buffer), style
                buffer = []
            style = new
    if pos < len(text):
        buffer.append(text[pos:])
    if buffer:
        yield "".join(buffer), style


@lru_cache(maxsize=4096)
def _effect(token: str) -> str | Callable[[Style], Style]:
    """What one markup token does: a literal to insert, or a style change."""
    match = _TOKEN.fullmatch(token)
    assert match is not None
    if match["literal"]:
        return _LITERALS[match["literal"]]
    if match["attr"]:
        return _ATTRS[match["attr"]]
    color: Color
    if match["named"]:
        letter = match["named"]
        index = _NAMED[letter.lower()]
        color = ("ansi", index + 8 if letter.islower() else index)
    elif match["cube"]:
        r, g, b = (int(d) for d in match["cube"])
        color = ("x256", 16 + 36 * r + 6 * g + b)
    elif match["grey"]:
        letter = match["grey"]
        color = ("x256", 16 if letter == "a" else 231 if letter == "z" else 232 + ord(letter) - 98)
    else:
        value = int(match["hex"], 16)
        color = ("rgb", (value >> 16, (value >> 8) & 0xFF, value & 0xFF))
    if match["bg"]:
        return lambda style: style._replace(bg=color)
    return lambda style: style._replace(fg=color)


# -- colour arithmetic ------------------------------------------------------------------


def x256_to_rgb(index: int) -> tuple[int, int, int]:
    """The RGB colour of xterm-256 colour ``index``."""
    if index < 16:
        return ANSI_RGB[index]
    if index < 232:
        index -= 16
        return (
            _CUBE_LEVELS[index // 36],
            _CUBE_LEVELS[(index // 6) % 6],
            _CUBE_LEVELS[index % 6],
        )
    grey = 8 + 10 * (index - 232)
    return (grey, grey, grey)


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))


def _nearest_level(component: int) -> int:
    return min(range(6), key=lambda i: abs(_CUBE_LEVELS[i] - component))


@lru_cache(maxsize=4096)
def rgb_to_x256(rgb: tuple[int, int, int]) -> int:
    """The nearest colour of the xterm cube or grey ramp (16-255)."""
    cube = [_nearest_level(c) for c in rgb]
    cube_index = 16 + 36 * cube[0] + 6 * cube[1] + cube[2]
    grey_index = 232 + min(23, max(0, round((sum(rgb) / 3 - 8) / 10)))
    return min((cube_index, grey_index), key=lambda i: _distance(rgb, x256_to_rgb(i)))


@lru_cache(maxsize=4096)
def rgb_to_ansi(rgb: tuple[int, int, int]) -> int:
    """The nearest of the 16 ANSI colours (0-15)."""
    return min(range(16), key=lambda i: _distance(rgb, ANSI_RGB[i]))


def to_rgb(color: Color) -> tuple[int, int, int]:
    """Any colour of the markup, as RGB."""
    kind, value = color
    if kind == "rgb":
        r, g, b = value
        return (r, g, b)
    return x256_to_rgb(value)


# -- ANSI -------------------------------------------------------------------------------


def _color_codes(color: Color, level: ColorLevel, background: bool) -> list[str]:
    kind, value = color
    if kind == "ansi":
        base = 40 if background else 30
        if value >= 8:  # bright: bold for foregrounds, the plain colour behind
            return [str(base + value - 8)] if background else ["1", str(base + value - 8)]
        return [str(base + value)]
    if kind == "rgb" and level is ColorLevel.TRUECOLOR:
        r, g, b = value
        return [f"{48 if background else 38};2;{r};{g};{b}"]
    if level >= ColorLevel.XTERM256:
        index = value if kind == "x256" else rgb_to_x256(tuple(value))
        return [f"{48 if background else 38};5;{index}"]
    return _color_codes(("ansi", rgb_to_ansi(to_rgb(color))), level, background)


@lru_cache(maxsize=1024)
def _sgr(style: Style, level: ColorLevel) -> str:
    codes = ["0"]
    if style.bold:
        codes.append("1")
    if style.italic:
        codes.append("3")
    if style.underline:
        codes.append("4")
    if style.inverse:
        codes.append("7")
    if style.fg is not None:
        codes += _color_codes(style.fg, level, background=False)
    if style.bg is not None:
        codes += _color_codes(style.bg, level, background=True)
    return "\x1b[" + ";".join(dict.fromkeys(codes)) + "m"


@lru_cache(maxsize=2048)
def render(text: str, level: ColorLevel = ColorLevel.ANSI, *, screenreader: bool = False) -> str:
    """Marked-up ``text`` as ANSI for ``level``; plain text for ``NONE``.

    With ``screenreader``, box-drawing characters and ASCII rules go too.
    Results are cached: a message said to a room is rendered once per colour
    level, not once per listener.
    """
    text = text.translate(_RAW_CONTROLS)
    if "|" not in text:
        return _SCREENREADER_NOISE.sub("", text) if screenreader else text
    out: list[str] = []
    current = _PLAIN
    for chunk, style in _parse(text):
        if level is not ColorLevel.NONE and style != current:
            out.append(_sgr(style, level) if style != _PLAIN else "\x1b[0m")
            current = style
        out.append(chunk)
    if current != _PLAIN:
        out.append("\x1b[0m")
    result = "".join(out)
    if screenreader:
        result = _SCREENREADER_NOISE.sub("", result)
    return result


def render_for(text: str, flags: Mapping[str, Any]) -> str:
    """``text`` as a client with these ``protocol_flags`` is shown it.

    ``RAW`` shows the markup itself, unparsed (raw control characters are
    still removed); otherwise :func:`render` at :func:`level_for`'s level.
    """
    if flags.get("RAW"):
        return text.translate(_RAW_CONTROLS)
    return render(text, level_for(flags), screenreader=bool(flags.get("SCREENREADER")))


def render_key(flags: Mapping[str, Any]) -> tuple[ColorLevel, bool, bool]:
    """What :func:`render_for`'s result depends on (to share it among clients)."""
    return level_for(flags), bool(flags.get("SCREENREADER")), bool(flags.get("RAW"))


_LAYOUT = re.compile(r"\|[|/]")


def one_line(text: str) -> str:
    """Player text that cannot start a new line: ``|/`` becomes a space.

    For what players say to others: a newline inside speech would let them
    forge a line that looks like the server's (or like someone else talking).
    Colours stay; ``||/`` (a literal pipe, then a slash) is left alone.
    """
    if "|/" not in text:
        return text
    return _LAYOUT.sub(lambda match: "||" if match.group() == "||" else " ", text)


#: Raw control characters never reach a client from marked-up text: C0 but
#: newline, tab and carriage return; DEL; C1 (ESC starts every terminal
#: command, so none can be smuggled in). Colour comes only from markup.
_RAW_CONTROLS = {c: None for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c not in (9, 10, 13)}


def strip(text: str) -> str:
    """Marked-up text with all markup removed (``||`` becomes ``|``)."""
    return render(text, ColorLevel.NONE)


def escape(text: str) -> str:
    """Text that renders as itself: every ``|`` doubled."""
    return text.replace("|", "||")


# -- HTML -------------------------------------------------------------------------------


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def render_html(text: str) -> str:
    """Marked-up ``text`` as HTML: escaped text in styled ``<span>`` s.

    Newlines stay newlines (show the result with ``white-space: pre-wrap``).
    Nothing in ``text`` can produce a tag or an attribute: it is all escaped.
    """
    out: list[str] = []
    for chunk, style in _parse(text.translate(_RAW_CONTROLS)):
        escaped = html.escape(chunk, quote=True)
        if style == _PLAIN:
            out.append(escaped)
            continue
        css = []
        colors = [to_rgb(style.fg) if style.fg else None, to_rgb(style.bg) if style.bg else None]
        if style.inverse:
            colors = [colors[1] or (0, 0, 0), colors[0] or ANSI_RGB[7]]
        if colors[0] is not None:
            css.append(f"color:{_hex(colors[0])}")
        if colors[1] is not None:
            css.append(f"background-color:{_hex(colors[1])}")
        if style.bold:
            css.append("font-weight:bold")
        if style.italic:
            css.append("font-style:italic")
        if style.underline:
            css.append("text-decoration:underline")
        out.append(f'<span style="{";".join(css)}">{escaped}</span>')
    return "".join(out)

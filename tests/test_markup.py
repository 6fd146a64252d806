"""Colour markup rendered per client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mud.markup import (
    ColorLevel,
    escape,
    level_for,
    one_line,
    render,
    render_html,
    rgb_to_ansi,
    rgb_to_x256,
    strip,
    x256_to_rgb,
)

ANSI, X256, TRUE, NONE = (
    ColorLevel.ANSI,
    ColorLevel.XTERM256,
    ColorLevel.TRUECOLOR,
    ColorLevel.NONE,
)


@pytest.mark.parametrize(
    ("markup", "level", "expected"),
    [
        ("|rred", ANSI, "\x1b[0;1;31mred\x1b[0m"),
        ("|Rred", ANSI, "\x1b[0;31mred\x1b[0m"),
        ("|xgrey", ANSI, "\x1b[0;1;30mgrey\x1b[0m"),
        ("|[bblue", ANSI, "\x1b[0;44mblue\x1b[0m"),
        ("|500red", X256, "\x1b[0;38;5;196mred\x1b[0m"),
        ("|[005blue", X256, "\x1b[0;48;5;21mblue\x1b[0m"),
        ("|500red", ANSI, "\x1b[0;1;31mred\x1b[0m"),
        ("|=agrey", X256, "\x1b[0;38;5;16mgrey\x1b[0m"),
        ("|=bgrey", X256, "\x1b[0;38;5;232mgrey\x1b[0m"),
        ("|=ygrey", X256, "\x1b[0;38;5;255mgrey\x1b[0m"),
        ("|=zgrey", X256, "\x1b[0;38;5;231mgrey\x1b[0m"),
        ("|#ff8000o", TRUE, "\x1b[0;38;2;255;128;0mo\x1b[0m"),
        ("|#ff8000o", X256, "\x1b[0;38;5;208mo\x1b[0m"),
        ("|[#000080o", TRUE, "\x1b[0;48;2;0;0;128mo\x1b[0m"),
        ("|#ff8000o", ANSI, "\x1b[0;33mo\x1b[0m"),
        ("|hbold|n plain", ANSI, "\x1b[0;1mbold\x1b[0m plain"),
        ("|uunder|Uover", ANSI, "\x1b[0;4munder\x1b[0mover"),
        ("|iit|*inv", ANSI, "\x1b[0;3mit\x1b[0;3;7minv\x1b[0m"),
        ("a|/b|-c|_d||e", ANSI, "a\nb\tc d|e"),
        ("|qnot a code |", ANSI, "|qnot a code |"),
        ("|rred|n", NONE, "red"),
        ("|500|[#102030|=m|ufancy", NONE, "fancy"),
    ],
)
def test_render(markup: str, level: ColorLevel, expected: str) -> None:
    assert render(markup, level) == expected


def test_every_level_ends_reset_so_nothing_bleeds() -> None:
    for level in (ANSI, X256, TRUE):
        out = render('He says, "|rI am red', level)
        assert out.endswith("\x1b[0m")


def test_levels_from_flags() -> None:
    assert level_for({}) is ANSI  # never answered TTYPE: 16 colours
    assert level_for({"XTERM256": True}) is X256
    assert level_for({"XTERM256": True, "TRUECOLOR": True}) is TRUE
    assert level_for({"TRUECOLOR": True, "NOCOLOR": True}) is NONE
    assert level_for({"XTERM256": True, "SCREENREADER": True}) is NONE
    assert level_for({"ANSI": False}) is NONE


def test_screenreader_strips_box_drawing_and_rules() -> None:
    text = "==========\n|c Welcome |n\n┌──┐ ok --- fine ~~~ - a-b\n"
    assert render(text, NONE, screenreader=True) == "\n Welcome \n ok  fine  - a-b\n"


def test_html_escapes_everything_a_player_types() -> None:
    html = render_html('|r<script>alert("x")</script>|n & <b>')
    assert "<script>" not in html and "<b>" not in html
    assert html == (
        '<span style="color:#ff0000">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</span>'
        " &amp; &lt;b&gt;"
    )
    assert render_html("|[#102030|hx") == (
        '<span style="background-color:#102030;font-weight:bold">x</span>'
    )
    assert render_html("|*inv") == '<span style="color:#000000;background-color:#e5e5e5">inv</span>'


def test_colour_arithmetic() -> None:
    assert x256_to_rgb(196) == (255, 0, 0)
    assert x256_to_rgb(232) == (8, 8, 8)
    assert rgb_to_x256((255, 0, 0)) == 196
    assert rgb_to_x256((128, 128, 128)) == 244
    assert rgb_to_ansi((250, 250, 250)) == 15
    assert rgb_to_ansi((0, 0, 120)) == 4


def _without_raw_controls(text: str) -> str:
    return "".join(c for c in text if c in "\t\n\r" or not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0))


@given(st.text(max_size=60))
def test_escape_round_trips_and_strip_never_raises(text: str) -> None:
    assert strip(escape(text)) == _without_raw_controls(text)
    assert render(escape(text), TRUE) == _without_raw_controls(text)
    render_html(text)


@given(st.text(max_size=60))
def test_no_raw_escape_sequence_survives_rendering(text: str) -> None:
    # ESC only ever comes from markup: none in the text reaches a terminal.
    hostile = "\x1b]0;owned\x07\x1b[2J\x1b[6n\x9b" + text
    for level in (TRUE, ColorLevel.ANSI, ColorLevel.NONE):
        rendered = render(hostile, level)
        assert "\x1b]" not in rendered and "\x1b[2J" not in rendered
        assert "\x1b[6n" not in rendered and "\x9b" not in rendered and "\x07" not in rendered
    assert "\x1b" not in render_html(hostile)


def test_one_line_keeps_speech_on_one_line() -> None:
    assert one_line("hi|/Ann says, fake") == "hi Ann says, fake"
    assert one_line("a||/b") == "a||/b"  # a literal pipe and a slash
    assert one_line("a|||/b") == "a|| b"
    assert "\n" not in render(one_line("x|/y|r|/z"), TRUE)

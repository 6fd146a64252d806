"""The SSH line editor, alone: keys in, events and echo out.

The echo is checked the way a player sees it: a small terminal model
applies it, and its screen must show the prompt and the line, with the
cursor where the editor says it is.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from trio_mud.protocols.lineedit import (
    EndOfInput,
    Interrupt,
    Line,
    LineEditor,
    display_width,
)

_CSI = re.compile(r"\x1b\[(\d*)([A-Za-z])")


class Screen:
    """Just enough of a terminal: rows of cells, a cursor, a few CSI codes."""

    def __init__(self, columns: int = 1000) -> None:
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.column = 0

    def write(self, text: str) -> None:
        pos = 0
        while pos < len(text):
            match = _CSI.match(text, pos)
            if match:
                count = int(match.group(1) or 1)
                code = match.group(2)
                if code == "C":
                    self.column += count
                elif code == "D":
                    self.column = max(0, self.column - count)
                elif code == "A":
                    self.row = max(0, self.row - count)
                elif code == "B":
                    self.row += count
                    while len(self.rows) <= self.row:
                        self.rows.append([])
                elif code == "K":
                    del self.rows[self.row][self.column :]
                elif code == "J":
                    del self.rows[self.row][self.column :]
                    del self.rows[self.row + 1 :]
                pos = match.end()
                continue
            char = text[pos]
            pos += 1
            if char == "\r":
                self.column = 0
            elif char == "\n":
                self.row += 1
                if self.row == len(self.rows):
                    self.rows.append([])
            elif char == "\x07":
                pass
            else:
                if self.column >= self.columns:  # past the right edge: wrap
                    self.write("\r\n")
                line = self.rows[self.row]
                wide = display_width(char) == 2
                line.extend(" " * (self.column + wide - len(line) + 1))
                line[self.column] = char
                self.column += 1
                if wide:
                    line[self.column] = ""  # the second column of a wide character
                    self.column += 1

    @property
    def line(self) -> str:
        """The cursor's row, without the blanks at its end."""
        return "".join(self.rows[self.row]).rstrip(" ")


def typed(editor: LineEditor, screen: Screen, keys: str) -> list[object]:
    events = editor.feed(keys)
    screen.write(editor.echo())
    return list(events)


def test_enter_ends_a_line_whatever_the_client_sends() -> None:
    editor = LineEditor(max_line=100, history_size=10)
    assert editor.feed("look\r") == [Line("look")]
    assert editor.feed("north\r\n") == [Line("north")]
    assert editor.feed("\nsouth\r\x00west\n") == [Line(""), Line("south"), Line("west")]
    assert editor.echo().count("\r\n") == 5


def test_editing_keys_as_the_screen_shows_them() -> None:
    editor, screen = LineEditor(max_line=100, history_size=10), Screen()
    screen.write(editor.set_prompt("> "))
    typed(editor, screen, "say hello wrold")
    assert screen.line == "> say hello wrold"
    typed(editor, screen, "\x1b[D\x1b[D\x1b[D\x7f\x1b[Cr")  # left x3, backspace, right, r
    assert editor.text == "say hello world" and screen.line == "> say hello world"
    assert screen.column == len("> say hello wor")
    typed(editor, screen, "\x01\x1b[3~\x1b[3~\x1b[3~pose")  # Home, Delete x3
    assert screen.line == "> pose hello world"
    typed(editor, screen, "\x05\x17")  # End, Ctrl-W
    assert screen.line == "> pose hello" and editor.text == "pose hello "
    typed(editor, screen, "\x1bOH\x0b")  # Home (SS3), Ctrl-K
    assert screen.line == ">" and editor.text == ""
    typed(editor, screen, "abc\x15")  # Ctrl-U
    assert screen.line == ">" and editor.text == ""


def test_history_walks_up_and_down_and_keeps_the_draft() -> None:
    editor, screen = LineEditor(max_line=100, history_size=2), Screen()
    for line in ["one", "two", "two", "three"]:
        typed(editor, screen, line + "\r")
    typed(editor, screen, "draft")
    typed(editor, screen, "\x1b[A")
    assert editor.text == "three" and screen.line == "three"
    typed(editor, screen, "\x10")  # Ctrl-P
    assert editor.text == "two"
    typed(editor, screen, "\x1b[A")  # only two lines are kept: a bell
    assert editor.text == "two"
    typed(editor, screen, "\x1b[B\x0e")  # down, Ctrl-N: back to the draft
    assert editor.text == "draft" and screen.line == "draft"


def test_ctrl_c_drops_the_line_and_ctrl_d_ends_input_only_when_empty() -> None:
    editor, screen = LineEditor(max_line=100, history_size=10), Screen()
    screen.write(editor.set_prompt("Password: ", hidden=True))
    assert typed(editor, screen, "secr\x03") == [Interrupt()]
    assert editor.hidden and editor.text == ""  # still at the hidden prompt
    assert typed(editor, screen, "secret\r") == [Line("secret", hidden=True)]
    assert "secret" not in "".join("".join(row) for row in screen.rows)
    typed(editor, screen, "\x1b[A")  # a hidden line is not in the history
    assert editor.text == ""
    assert typed(editor, screen, "ab\x01\x04") == []  # Ctrl-D deletes under the cursor
    assert editor.text == "b"
    assert typed(editor, screen, "\x05\x15\x04") == [EndOfInput()]  # End, Ctrl-U, Ctrl-D


def test_output_goes_above_the_line_being_typed() -> None:
    editor, screen = LineEditor(max_line=100, history_size=10, columns=20), Screen(20)
    screen.write(editor.set_prompt("HP 10> "))
    typed(editor, screen, "say a long line that wraps")  # 33 columns: two rows
    screen.write(editor.erase() + "Bob arrives.\r\n" + editor.redraw())
    text = ["".join(row).rstrip() for row in screen.rows]
    assert text == ["Bob arrives.", "HP 10> say a long li", "ne that wraps"]


def test_limits_and_junk() -> None:
    editor, screen = LineEditor(max_line=5, history_size=10), Screen()
    typed(editor, screen, "abcdefgh")
    assert editor.text == "abcde"
    typed(editor, screen, "\x1b[" + "9" * 100 + "Z")  # an endless sequence is dropped
    typed(editor, screen, "\x1b[5~\x1bx\x02\x1f\x85")  # unknown keys, Alt+x, C0 and C1
    assert editor.text == "abcde"


def test_wide_characters_move_the_cursor_two_columns() -> None:
    editor, screen = LineEditor(max_line=100, history_size=10), Screen()
    typed(editor, screen, "日本語\x1b[D\x7f")
    assert editor.text == "日語" and screen.line == "日語"
    assert screen.column == 2


def test_a_client_that_echoes_for_itself_gets_no_echo() -> None:
    editor = LineEditor(max_line=100, history_size=10, echo=False)
    assert editor.set_prompt("> ") == "> "
    assert editor.feed("look\r") == [Line("look")]
    assert editor.echo() == "" and editor.erase() == "" and editor.redraw() == ""


_KEYS = st.sampled_from(
    [*"abc xyz日", "\x7f", "\x01", "\x05", "\x02", "\x06", "\x15", "\x0b", "\x17",
     "\x1b[D", "\x1b[C", "\x1b[3~", "\x1b[H", "\x1b[F", "\x1b[A", "\x1b[B", "\r"]
)  # fmt: skip


@given(st.lists(_KEYS, max_size=60), st.sampled_from([1000, 7, 10]))
def test_the_screen_always_shows_the_line_and_the_cursor(keys: list[str], columns: int) -> None:
    """Whatever is typed, the screen holds the prompt and the line, wrapped at
    the margin, and the cursor is where the editor says (narrow terminals too)."""
    if columns < 1000:  # a wide character at the margin is a known limit (see lineedit)
        keys = [key for key in keys if key != "日"]
    editor = LineEditor(max_line=30, history_size=5, columns=columns)
    screen = Screen(columns)
    screen.write("old\r\n")
    screen.write(editor.set_prompt("> "))
    for key in keys:
        events = typed(editor, screen, key)
        if events:
            screen.write(editor.set_prompt("> "))
        shown = _rows_from(screen, editor)
        assert shown == ("> " + editor.text).rstrip(" ")  # blanks look alike
        cursor = display_width("> " + editor.text[: _cursor(editor)])
        assert (screen.row - _first_row(screen, editor), screen.column) == divmod(cursor, columns)
        assert "".join(screen.rows[0]) == "old"  # nothing above was touched


def _first_row(screen: Screen, editor: LineEditor) -> int:
    """The row the prompt starts on: the last rows hold the line being typed."""
    width = display_width("> " + editor.text)
    return len(screen.rows) - 1 - (width // screen.columns if width else 0)


def _rows_from(screen: Screen, editor: LineEditor) -> str:
    rows = screen.rows[_first_row(screen, editor) :]
    return "".join("".join(row).ljust(screen.columns)[: screen.columns] for row in rows).rstrip(" ")


def _cursor(editor: LineEditor) -> int:
    return editor._cursor


def test_a_control_key_ends_a_broken_escape_sequence() -> None:
    editor = LineEditor(max_line=100, history_size=10)
    assert editor.feed("\x1b[\rlook\r") == [Line(""), Line("look")]


def test_format_characters_take_no_column() -> None:
    assert display_width("a\u200bb\u00ad") == 2
    assert display_width("\x1b[1;31mred\x1b[0m") == 3


def test_lines_typed_ahead_of_a_hidden_prompt_leave_the_history() -> None:
    editor = LineEditor(max_line=100, history_size=10)
    editor.feed("look\r")
    editor.erase()  # its answer came
    editor.feed("connect tia\rcorrect horse\r")  # pasted before the prompt came
    editor.set_prompt("Password: ", hidden=True)
    editor.feed("again\r")  # the hidden line
    editor.feed("\x1b[A")
    assert editor.text == "connect tia"  # the line the prompt answers stays ...
    editor.feed("\x1b[A")
    assert editor.text == "look"  # ... the password typed ahead, and the hidden line, do not

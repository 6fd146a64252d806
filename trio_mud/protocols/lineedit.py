"""A line editor for clients that send keystrokes (SSH): sans-I/O.

A telnet client edits its own line and sends it whole; an SSH client sends
every key as it is pressed, and the server is the terminal's line
discipline. :class:`LineEditor` takes decoded keystrokes and returns what
they mean (:class:`Line`, :class:`Interrupt`, :class:`EndOfInput`), and
keeps the text to echo, which the connection writes.

Keys: printable text is inserted at the cursor; Enter ends the line;
Backspace and Delete, Ctrl-U and Ctrl-K (kill to the start or the end),
Ctrl-W (kill a word), Ctrl-A/Ctrl-E and Home/End, the arrow keys (left and
right move; up and down, and Ctrl-P/Ctrl-N, walk the history); Ctrl-C drops
the line; Ctrl-D on an empty line ends the input (else it deletes), Ctrl-L
redraws. A hidden line (a password) is not echoed and not kept in the
history.

Output from the game while a line is being typed: :meth:`LineEditor.erase`
clears the prompt and the typed text off the screen, and
:meth:`LineEditor.redraw` puts them back below the output, so the line
being typed is always the last one.

Limits: the cursor is placed by counting columns (wide characters count
two, combining and format characters none); a wide character that does not
fit at the end of a row, which terminals move to the next, puts the rest of
that line's drawing one column out until it is redrawn (Ctrl-L).

Error handling:
    Nothing a client sends raises. Escape sequences the editor does not know
    are ignored (their length is bounded); input past ``max_line``
    characters rings the bell instead of growing the line.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque

from attrs import frozen

__all__ = ["EndOfInput", "Interrupt", "Line", "LineEditor", "display_width"]


@frozen
class Line:
    """The player pressed Enter on ``text``."""

    text: str
    #: Whether it was typed at a hidden prompt (so must never be logged).
    hidden: bool = False


@frozen
class Interrupt:
    """Ctrl-C: the line was dropped."""


@frozen
class EndOfInput:
    """Ctrl-D on an empty line: the player is done."""


Event = Line | Interrupt | EndOfInput

#: Longest escape sequence the editor reads before giving up on it.
_MAX_SEQUENCE = 16
#: Escape sequences (after ESC [ or ESC O) and what they do.
_SEQUENCES = {
    "A": "up",
    "B": "down",
    "C": "right",
    "D": "left",
    "H": "home",
    "F": "end",
    "1~": "home",
    "7~": "home",
    "4~": "end",
    "8~": "end",
    "3~": "delete",
}
#: Control keys and what they do.
_CONTROLS = {
    "\x01": "home",
    "\x02": "left",
    "\x03": "interrupt",
    "\x04": "eof",
    "\x05": "end",
    "\x06": "right",
    "\x08": "backspace",
    "\x0b": "kill_end",
    "\x0c": "refresh",
    "\x0e": "down",
    "\x10": "up",
    "\x15": "kill_start",
    "\x17": "kill_word",
    "\x7f": "backspace",
}

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide characters take two).

    ANSI escape sequences take none.
    """
    width = 0
    for char in _ANSI_ESCAPE.sub("", text):
        if unicodedata.combining(char) or unicodedata.category(char) == "Cf" or char == "\x07":
            continue  # combining marks, zero-width and format characters
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


class LineEditor:
    """One terminal's line being typed, its prompt, and its history.

    Args:
        max_line: most characters in one line.
        history_size: how many lines Up and Down can bring back.
        columns: the terminal's width (for erasing a line that wraps).
        echo: False for a client that echoes for itself (an SSH client with
            no terminal, whose lines come whole): nothing is echoed or redrawn.
    """

    def __init__(
        self, *, max_line: int, history_size: int, columns: int = 80, echo: bool = True
    ) -> None:
        self.max_line = max_line
        self.columns = max(1, columns)
        self.echoing = echo
        #: The prompt shown before the line, as rendered (it may hold colour).
        self.prompt = ""
        #: Whether what is typed now is hidden (a password).
        self.hidden = False
        self._buffer: list[str] = []
        self._cursor = 0
        self._history: deque[str] = deque(maxlen=history_size)
        #: Where Up/Down is in the history (len(history) is the line being typed).
        self._browsing = 0
        self._draft = ""
        #: An escape sequence read so far ("" when none is under way).
        self._sequence = ""
        self._after_cr = False
        self._echo: list[str] = []
        #: Lines put in the history since output last came (typed ahead).
        self._typed_ahead = 0

    # -- what the connection calls ------------------------------------------------------

    @property
    def text(self) -> str:
        """The line typed so far."""
        return "".join(self._buffer)

    def feed(self, keys: str) -> list[Event]:
        """Handle ``keys`` (decoded); what they mean. The echo waits in :meth:`echo`."""
        events: list[Event] = []
        for key in keys:
            if self._sequence and self._escape(key):
                continue
            after_cr, self._after_cr = self._after_cr, key == "\r"
            if key in "\r\n":
                if key == "\n" and after_cr:
                    continue  # CR LF is one Enter
                events.append(self._enter())
            elif key == "\x00":
                continue  # CR NUL, from some clients
            elif key == "\x1b":
                self._sequence = key
            elif key in _CONTROLS:
                event = self._control(_CONTROLS[key])
                if event is not None:
                    events.append(event)
            elif key == "\t":
                self._insert(" ")
            elif key < " " or "\x80" <= key < "\xa0":
                continue  # other control characters mean nothing here
            else:
                self._insert(key)
        return events

    def echo(self) -> str:
        """What the terminal must be sent for the keys fed so far (then forgotten)."""
        text = "".join(self._echo) if self.echoing else ""
        self._echo.clear()
        return text

    def set_prompt(self, prompt: str, *, hidden: bool = False) -> str:
        """Show ``prompt`` (rendered) before the line; the text that does it.

        ``hidden``: the next line is not echoed (a password). The first line
        typed since the last output is the one this prompt answers; any typed
        after it, ahead of the prompt, may have been the password: they are
        taken out of the history.
        """
        typed_ahead = self._typed_ahead
        erase = self.erase()
        self.prompt = prompt
        self.hidden = hidden
        if hidden:
            for _ in range(min(typed_ahead - 1, len(self._history))):
                self._history.pop()
            self._browsing = len(self._history)
        self._typed_ahead = 0
        return erase + (self.redraw() if self.echoing else prompt)

    def erase(self) -> str:
        """Text that clears the prompt and the line typed so far off the screen
        (call it before writing output above the line)."""
        self._typed_ahead = 0  # output came: what was typed before was answered
        if not self.echoing or (not self.prompt and not self._buffer):
            return ""
        rows = self._column(self._cursor) // self.columns
        return "\r" + (f"\x1b[{rows}A" if rows else "") + "\x1b[J"

    def redraw(self) -> str:
        """Text that shows the prompt and the line again (after :meth:`erase`).

        The cursor ends where it was in the line. A line that ends exactly at
        the right margin is followed by a line break, so that the terminal's
        cursor is always where the editor counts it (no "pending wrap").
        """
        if not self.echoing:
            return ""
        shown = self.prompt + ("" if self.hidden else self.text)
        end = display_width(shown)
        if end and end % self.columns == 0:
            shown += "\r\n"
        return shown + self._goto(end, self._column(self._cursor))

    # -- keys ------------------------------------------------------------------------

    def _escape(self, key: str) -> bool:
        """Read ``key`` as part of an escape sequence; False if it is not one."""
        if key < " " or key == "\x7f":
            self._sequence = ""  # a control key ends a broken sequence, and counts
            return False
        sequence = self._sequence + key
        if len(sequence) == 2:
            # ESC [ and ESC O start a sequence; ESC then anything else is
            # Alt+key, which is the key alone here.
            if key in "[O":
                self._sequence = sequence
                return True
            self._sequence = ""
            return False
        if "\x40" <= key <= "\x7e" and not (key == "[" and len(sequence) == 3):
            self._sequence = ""
            action = _SEQUENCES.get(sequence[2:])
            if action is not None:
                self._control(action)
        elif len(sequence) > _MAX_SEQUENCE:
            self._sequence = ""
        else:
            self._sequence = sequence
        return True

    def _control(self, action: str) -> Event | None:
        buffer, cursor = self._buffer, self._cursor
        if action == "interrupt":
            self._echo.append(self._to_end() + ("^C\r\n" if not self.hidden else "\r\n"))
            self._reset_line()  # a hidden prompt stays hidden
            self._echo.append(self.redraw())
            return Interrupt()
        if action == "eof":
            if not buffer:
                return EndOfInput()
            action = "delete"
        if action == "backspace" and cursor > 0:
            self._delete(cursor - 1, cursor)
        elif action == "delete" and cursor < len(buffer):
            self._delete(cursor, cursor + 1)
        elif action == "kill_start":
            self._delete(0, cursor)
        elif action == "kill_end":
            self._delete(cursor, len(buffer))
        elif action == "kill_word":
            start = cursor
            while start > 0 and buffer[start - 1] == " ":
                start -= 1
            while start > 0 and buffer[start - 1] != " ":
                start -= 1
            self._delete(start, cursor)
        elif action == "left" and cursor > 0:
            self._move_to(cursor - 1)
        elif action == "right" and cursor < len(buffer):
            self._move_to(cursor + 1)
        elif action == "home":
            self._move_to(0)
        elif action == "end":
            self._move_to(len(buffer))
        elif action == "up":
            self._browse(-1)
        elif action == "down":
            self._browse(+1)
        elif action == "refresh":
            self._echo.append(self._erase_line() + self.redraw())
        return None

    def _enter(self) -> Line:
        line = Line(self.text, hidden=self.hidden)
        fresh = not self._history or self._history[-1] != line.text
        if line.text.strip() and not self.hidden and fresh:
            self._history.append(line.text)
            self._typed_ahead += 1
        end = self._column(len(self._buffer))
        wrapped = end and end % self.columns == 0  # the cursor is on a new row already
        self._echo.append(self._to_end() + ("" if wrapped else "\r\n"))
        self._reset_line()
        self.prompt = ""  # it stays on the screen, above
        self.hidden = False
        return line

    def _reset_line(self) -> None:
        self._buffer = []
        self._cursor = 0
        self._browsing = len(self._history)
        self._draft = ""

    def _insert(self, char: str) -> None:
        if len(self._buffer) >= self.max_line:
            self._echo.append("\x07")
            return
        at_end = self._cursor == len(self._buffer)
        before = self._erase_line()
        self._buffer.insert(self._cursor, char)
        self._cursor += 1
        if self.hidden:
            return
        if at_end and display_width(char) == 1:
            # Typing at the end (most keys): just the character.
            end = self._column(self._cursor)
            self._echo.append(char + ("\r\n" if end % self.columns == 0 else ""))
        else:
            self._echo.append(before + self.redraw())

    def _delete(self, start: int, end: int) -> None:
        """Remove ``buffer[start:end]``; the cursor (at one end of it) goes to ``start``."""
        if start >= end:
            return
        before = self._erase_line()
        del self._buffer[start:end]
        self._cursor = start
        if not self.hidden:
            self._echo.append(before + self.redraw())

    def _move_to(self, position: int) -> None:
        if not self.hidden:
            self._echo.append(self._goto(self._column(self._cursor), self._column(position)))
        self._cursor = position

    def _browse(self, step: int) -> None:
        """Up (-1) or Down (+1) through the history."""
        if self.hidden:
            return
        target = self._browsing + step
        if not 0 <= target <= len(self._history):
            self._echo.append("\x07")
            return
        if self._browsing == len(self._history):
            self._draft = self.text
        self._browsing = target
        text = self._draft if target == len(self._history) else self._history[target]
        before = self._erase_line()
        self._buffer = list(text)
        self._cursor = len(self._buffer)
        self._echo.append(before + self.redraw())

    # -- the screen ------------------------------------------------------------------------

    def _column(self, index: int) -> int:
        """Where buffer position ``index`` is, in columns from the prompt's start."""
        typed = "" if self.hidden else "".join(self._buffer[:index])
        return display_width(self.prompt) + display_width(typed)

    def _goto(self, here: int, there: int) -> str:
        """Text that moves the cursor from column ``here`` to ``there`` (rows wrap)."""
        (row, column), (to_row, to_column) = divmod(here, self.columns), divmod(there, self.columns)
        out = ""
        if to_row < row:
            out += f"\x1b[{row - to_row}A"
        elif to_row > row:
            out += f"\x1b[{to_row - row}B"
        if to_column != column:
            out += "\r" + (f"\x1b[{to_column}C" if to_column else "")
        return out

    def _to_end(self) -> str:
        return self._goto(self._column(self._cursor), self._column(len(self._buffer)))

    def _erase_line(self) -> str:
        """Like :meth:`erase`, for an edit (typing ahead stays counted)."""
        typed_ahead = self._typed_ahead
        text = self.erase() if (self.prompt or self._buffer) and self.echoing else ""
        self._typed_ahead = typed_ahead
        return text

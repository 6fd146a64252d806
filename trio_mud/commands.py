"""Commands for game authors: plain functions, grouped in sets, matched and helped.

A command is a function (sync or async) of a :class:`Context` and the text
typed after its name, declared with :func:`command`::

    @command("say", aliases=["'"])
    def say(ctx: Context, args: str) -> None:
        \"\"\"say <message>

        Speak to everyone in the room.
        \"\"\"
        ctx.msg(f'You say, "{args}"')

Its docstring is its help (the first line is its usage). ``permission``
names what a session must have (``"admin"``, say; see
:meth:`Commands.has_permission`), and a command a session may not use is,
for it, a command that does not exist. ``parse`` turns the text into
keyword arguments for the function; :class:`ParseError` from it shows the
player the message and the usage.

Commands go in :class:`CommandSet` s. A session has a stack of sets, by
name, kept in its ``server_data`` (so they survive reloads): the connection
screen has one, the game another, and a game adds a set while a player is
in a shop and removes it after. Later sets win on a clash.

:class:`Commands` runs it all: it finds the command for a typed line (case
does not matter; unique prefixes where the set allows them), answers
``help`` and ``help <command>`` from what the session may use, and suggests
near names for an unknown one ("did you mean ...?").

Error handling:
    A command that raises is the handler's business: the player gets one
    line and the log the traceback (see :mod:`trio_mud.handler`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from . import markup
from .handler import ServerSession

__all__ = [
    "CMDSETS",
    "Command",
    "CommandSet",
    "Commands",
    "Context",
    "ParseError",
    "command",
]

#: Where a session's command sets (their names, in order) are kept in ``server_data``.
CMDSETS = "cmdsets"


class ParseError(Exception):
    """The arguments cannot be understood; the message says how (the player sees it)."""


@frozen
class Context:
    """What a command runs with: the session, the game, and the command itself."""

    session: ServerSession
    game: Any
    command: Command
    #: The name the player typed (an alias or a prefix, perhaps).
    typed: str
    #: Everything typed after the name, stripped.
    args: str

    def msg(self, text: str | None = None, **kwargs: Any) -> None:
        """Send output to this session (as :meth:`ServerSession.msg`)."""
        self.session.msg(text, **kwargs)


CommandFunc = Callable[..., Awaitable[None] | None]


@frozen
class Command:
    """One command: its names, what it does, who may use it, its help."""

    key: str
    func: CommandFunc
    aliases: tuple[str, ...] = ()
    #: What a session must have to use it (None: anyone).
    permission: str | None = None
    #: Turns the typed text into keyword arguments for ``func`` (None: ``args``).
    parse: Callable[[str], Mapping[str, Any]] | None = None
    help: str = ""
    #: Left out of ``help`` listings (still usable and helpable).
    hidden: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.key, *self.aliases)

    @property
    def usage(self) -> str:
        """The first line of the help: how to call it."""
        return self.help.splitlines()[0] if self.help else self.key

    async def run(self, ctx: Context) -> None:
        """Run the command for ``ctx`` (parsing its arguments first, if it has a parser)."""
        pending = self.start(ctx)
        if pending is not None:
            await pending

    def start(self, ctx: Context) -> Awaitable[None] | None:
        """Run the command as far as it goes without waiting: a sync command
        is done on return (None); an async one returns what is left to await."""
        if self.parse is None:
            result = self.func(ctx, ctx.args)
        else:
            try:
                kwargs = self.parse(ctx.args)
            except ParseError as exc:
                ctx.msg(markup.escape(f"{exc} Usage: {self.usage}"))
                return None
            result = self.func(ctx, **kwargs)
        return result if inspect.isawaitable(result) else None


def command(
    key: str,
    *,
    aliases: Iterable[str] = (),
    permission: str | None = None,
    parse: Callable[[str], Mapping[str, Any]] | None = None,
    hidden: bool = False,
) -> Callable[[CommandFunc], Command]:
    """Declare a command; the decorated function becomes a :class:`Command`."""

    def declare(func: CommandFunc) -> Command:
        return Command(
            key=key.lower(),
            func=func,
            aliases=tuple(alias.lower() for alias in aliases),
            permission=permission,
            parse=parse,
            help=inspect.cleandoc(func.__doc__ or ""),
            hidden=hidden,
        )

    return declare


def _as_commands(commands: Iterable[Command]) -> tuple[Command, ...]:
    return tuple(commands)


@frozen
class CommandSet:
    """Commands that go together (the connection screen's, a shop's)."""

    name: str
    commands: tuple[Command, ...] = field(converter=_as_commands)
    #: Whether a unique prefix of a name finds the command ("inv" for "inventory").
    prefixes: bool = True

    def merged_into(self, table: dict[str, tuple[Command, bool]]) -> None:
        """Put this set's names into ``table`` (over what is there)."""
        for cmd in self.commands:
            for name in cmd.names:
                table[name] = (cmd, self.prefixes)


class Commands:
    """Finds and runs commands for sessions, with help and suggestions.

    Args:
        sets: every command set the game has, by name.
        game: what :attr:`Context.game` is.
        default: the sets a session has until told otherwise (or a function
            of the session that says which).
        permissions: what a session has (``"admin"`` and so on); by default,
            ``"admin"`` for an account whose ``is_admin`` is true.
    """

    def __init__(
        self,
        sets: Iterable[CommandSet],
        *,
        game: Any = None,
        default: Sequence[str] | Callable[[ServerSession], Sequence[str]] = (),
        permissions: Callable[[ServerSession], Iterable[str]] | None = None,
    ) -> None:
        self.sets = {cmdset.name: cmdset for cmdset in sets}
        self.game = game
        self.default = default
        self._permissions = permissions or _account_permissions
        #: Merged tables by (sets, permissions): see :meth:`available`.
        self._tables: dict[Any, tuple[dict[str, tuple[Command, bool]], tuple[CommandSet, ...]]] = {}

    def add(self, set_name: str, cmd: Command) -> None:
        """Add ``cmd`` to the set ``set_name`` (replacing one of the same key)."""
        old = self.sets[set_name]
        kept = [c for c in old.commands if c.key != cmd.key]
        self.sets[set_name] = CommandSet(old.name, [*kept, cmd], prefixes=old.prefixes)

    # -- a session's sets ------------------------------------------------------------------

    def sets_of(self, session: ServerSession) -> list[str]:
        """The names of ``session``'s command sets, in order (its default if none were set)."""
        names = session.server_data.get(CMDSETS)
        if not isinstance(names, list):
            default = self.default
            return list(default(session) if callable(default) else default)
        return [name for name in names if name in self.sets]

    def set_sets(self, session: ServerSession, names: Sequence[str]) -> None:
        """Give ``session`` exactly these sets (in order; later ones win)."""
        unknown = [name for name in names if name not in self.sets]
        if unknown:
            raise KeyError(f"no command set named {', '.join(unknown)}")
        session.server_data[CMDSETS] = list(names)
        session.sync()

    def add_set(self, session: ServerSession, name: str) -> None:
        """Put the set ``name`` on top of ``session``'s (a shop's, say)."""
        names = [n for n in self.sets_of(session) if n != name]
        self.set_sets(session, [*names, name])

    def remove_set(self, session: ServerSession, name: str) -> None:
        """Take the set ``name`` off ``session``'s."""
        self.set_sets(session, [n for n in self.sets_of(session) if n != name])

    # -- finding ---------------------------------------------------------------------------

    def has_permission(self, session: ServerSession, permission: str | None) -> bool:
        """Whether ``session`` has ``permission`` (None: everyone has it)."""
        return permission is None or permission in set(self._permissions(session))

    def available(self, session: ServerSession) -> dict[str, tuple[Command, bool]]:
        """Every name this session may type, and its command (later sets win).

        Kept per combination of sets and permissions (a set replaced in
        :attr:`sets` is a new combination), so a command costs a lookup.
        """
        sets = tuple(self.sets[name] for name in self.sets_of(session))
        # Sets by identity (hashing one hashes all its commands); the cache
        # keeps them alive, so an id in a key is never another set's.
        key = (tuple(map(id, sets)), frozenset(self._permissions(session)))
        cached = self._tables.get(key)
        if cached is not None:
            return cached[0]
        merged: dict[str, tuple[Command, bool]] = {}
        for command_set in sets:
            command_set.merged_into(merged)
        table = {
            name: entry
            for name, entry in merged.items()
            if self.has_permission(session, entry[0].permission)
        }
        if len(self._tables) > 256:
            self._tables.clear()
        self._tables[key] = (table, sets)
        return table

    def find(self, session: ServerSession, word: str) -> Command | None:
        """The command ``word`` names for ``session``: exact, else a unique prefix."""
        word = word.lower()
        table = self.available(session)
        if word in table:
            return table[word][0]
        found = {
            cmd for name, (cmd, prefixes) in table.items() if prefixes and name.startswith(word)
        }
        return found.pop() if len(found) == 1 else None

    def suggestions(self, session: ServerSession, word: str) -> list[str]:
        """Names close to ``word`` that ``session`` may use."""
        return difflib.get_close_matches(
            word.lower(), list(self.available(session)), n=3, cutoff=0.6
        )

    # -- running ---------------------------------------------------------------------------

    async def run(self, session: ServerSession, line: str) -> bool:
        """Run the command ``line`` names; False (nothing done) if none does."""
        found, pending = self.start(session, line)
        if pending is not None:
            await pending
        return found

    def start(self, session: ServerSession, line: str) -> tuple[bool, Awaitable[None] | None]:
        """Like :meth:`run`, without waiting: whether a command was found, and
        what is left to await of it (None for a sync command, done already).

        An input function that returns the awaitable only when there is one
        lets the handler run sync commands inline, without a task each.
        """
        word, _, rest = line.strip().partition(" ")
        cmd = self.find(session, word) if word else None
        if cmd is None:
            return False, None
        return True, cmd.start(Context(session, self.game, cmd, word, rest.strip()))

    def unknown(self, session: ServerSession, word: str) -> str:
        """What a player is told for a command that is not there (for them)."""
        text = f'Command "{word}" is not available.'
        close = self.suggestions(session, word)
        if close:
            text += " Did you mean " + _either(close) + "?"
        return markup.escape(text + ' Type "help" for help.')

    def help(self, session: ServerSession, topic: str = "") -> str:
        """``help`` (a list of what this session may use) or ``help <command>``."""
        topic = topic.strip().lower()
        if topic:
            cmd = self.find(session, topic)
            if cmd is None:
                text = f'No help on "{topic}".'
                close = self.suggestions(session, topic)
                if close:
                    text += " Did you mean " + _either(close) + "?"
                return markup.escape(text + ' Type "help" for the list.')
            names = ", ".join(cmd.aliases)
            text = cmd.help or cmd.key
            return markup.escape(text + (f"\n  Also: {names}" if names else ""))
        seen: set[int] = set()
        lines = ["Commands:"]
        for cmd, _ in sorted(self.available(session).values(), key=lambda e: e[0].key):
            if id(cmd) in seen or cmd.hidden:
                continue
            seen.add(id(cmd))
            lines.append(f"  {cmd.usage}")
        lines.append('Type "help <command>" for more.')
        return markup.escape("\n".join(lines))


def _either(names: list[str]) -> str:
    quoted = [f'"{name}"' for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _account_permissions(session: ServerSession) -> Iterable[str]:
    account = session.account
    return ("admin",) if getattr(account, "is_admin", False) else ()

"""Player options (Evennia's ``option`` command): how a session is shown things.

``option`` lists them; ``option <name> <value>`` sets one for this session;
``option save`` keeps them on the account (the ``_saved_protocol_flags``
attribute, Evennia's name), and they come back at every login and after
every reload (:func:`restore`, the seed's ``at_sync`` merge).

Each option is a protocol flag, and the portal acts on it for every
transport:

``ANSI``, ``XTERM256``, ``TRUECOLOR``
    the colour level
``NOCOLOR``
    no colour at all
``SCREENREADER``
    no colour, no box-drawing or rules
``RAW``
    markup sent as it is, unparsed (``|rred|n``)
``ENCODING``
    how input is decoded and output encoded (an unknown one is refused)
``SCREENWIDTH``, ``SCREENHEIGHT``
    the screen size the game formats for
``LOCALECHO``
    the server echoes each line typed (for clients that do not)
``INPUTDEBUG``
    each line typed is shown as it came, control characters spelled out
``NOPROMPT``
    no prompt after commands
"""

from __future__ import annotations

import codecs
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from . import markup
from .attributes import Attributes
from .commands import Command, Context
from .handler import ServerSession

__all__ = ["OPTIONS", "SAVED_FLAGS", "option_command", "restore"]

#: The account attribute the saved options live in (Evennia's name).
SAVED_FLAGS = "_saved_protocol_flags"


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ValueError("takes on or off")


def _encoding(text: str, allowed: Sequence[str] = ()) -> str:
    """A text encoding's canonical name, if ``allowed`` (the ``encodings``
    setting) names it; ValueError otherwise."""
    wanted = text.strip()
    name = _text_encoding(wanted)
    if name is None or (allowed and name not in {_text_encoding(a) for a in allowed}):
        choices = ", ".join(allowed) if allowed else "utf-8"
        raise ValueError(f"{wanted!r} is not an encoding this server takes (it takes {choices})")
    return name


def _text_encoding(name: str) -> str | None:
    """The canonical name of text encoding ``name``, or None (unknown, or bytes-to-bytes)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    return info.name if info._is_text_encoding else None


def _size(text: str) -> dict[int, int]:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("takes a number of characters") from None
    if not 10 <= value <= 1000:
        raise ValueError("takes a number from 10 to 1000")
    return {0: value}


#: Option name -> (how its value is read, what it does).
OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "ANSI": (_boolean, "16 colours"),
    "XTERM256": (_boolean, "256 colours"),
    "TRUECOLOR": (_boolean, "24-bit colour"),
    "NOCOLOR": (_boolean, "no colour at all"),
    "SCREENREADER": (_boolean, "text for screen readers: no colour, no rules"),
    "RAW": (_boolean, "show markup unparsed"),
    "ENCODING": (_encoding, "the character encoding (utf-8, latin-1, ...)"),
    "SCREENWIDTH": (_size, "the screen's width"),
    "SCREENHEIGHT": (_size, "the screen's height"),
    "LOCALECHO": (_boolean, "echo what you type"),
    "INPUTDEBUG": (_boolean, "show what you type as it arrives"),
    "NOPROMPT": (_boolean, "no prompt after each command"),
}


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get(0, next(iter(value.values()), ""))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


#: Whose options a session saves: ``(kind, ident)`` of an attribute owner, or
#: None when it has none yet (not logged in).
OwnerOf = Callable[[ServerSession], "tuple[str, int | str] | None"]


def account_of(session: ServerSession) -> tuple[str, int | str] | None:
    """The session's account (``("account", uid)``), once it is logged in."""
    return None if session.uid is None else ("account", session.uid)


def parse_option(key: str, text: str, encodings: Sequence[str] = ()) -> Any:
    """``text`` as the value of option ``key``.

    Raises:
        ValueError: it is not a value ``key`` takes (the message says why).
    """
    if key == "ENCODING":
        return _encoding(text, encodings)
    return OPTIONS[key][0](text)


def option_command(
    attributes: Attributes, *, encodings: Sequence[str] = (), owner: OwnerOf = account_of
) -> Command:
    """The ``option`` command.

    ``encodings`` are those a player may pick (the ``encodings`` setting;
    empty for any text encoding); ``option save`` keeps the options on the
    attribute owner ``owner(session)`` names (the account, by default).
    """

    def option(ctx: Context, args: str) -> Any:
        session = ctx.session
        name, _, value = args.strip().partition(" ")
        flags = session.protocol_flags
        if not name:
            lines = ["Options (option <name> <value> to change one, option save to keep them):"]
            for key, (_, what) in OPTIONS.items():
                lines.append(f"  {key:<13} {_shown(flags.get(key, '')):<8} {what}")
            ctx.msg(markup.escape("\n".join(lines)))
            return None
        if name.lower() == "save":
            return _save(ctx, attributes, owner)
        key = name.upper()
        if key not in OPTIONS:
            ctx.msg(markup.escape(f'No option {name!r}. Type "option" for the list.'))
            return None
        try:
            parsed = parse_option(key, value, encodings)
        except ValueError as exc:
            ctx.msg(markup.escape(f"{key} {exc}."))
            return None
        flags[key] = parsed
        session.sync()
        ctx.msg(markup.escape(f"{key} is now {_shown(parsed)}."))
        return None

    option.__doc__ = """option [<name> <value> | save]

    List your client options, set one for this session, or save them all
    (they come back at every login)."""
    return Command("option", option, aliases=("options",), help=inspect.cleandoc(option.__doc__))


async def _save(ctx: Context, attributes: Attributes, owner: OwnerOf) -> None:
    who = owner(ctx.session)
    if who is None:
        ctx.msg("Log in first: options are saved with you.")
        return
    flags = ctx.session.protocol_flags
    saved = {key: flags[key] for key in OPTIONS if key in flags}
    if not attributes.loaded(*who):
        await attributes.load(*who)
    attributes.set(*who, SAVED_FLAGS, saved)
    await attributes.saved()
    ctx.msg("Options saved: they come back at every login.")


async def restore(
    attributes: Attributes,
    session: ServerSession,
    *,
    encodings: Sequence[str] = (),
    owner: OwnerOf = account_of,
) -> None:
    """Merge the saved options into ``session``'s flags (at login and after a
    reload, as Evennia's ``at_sync`` does). A saved value that is no longer
    valid (an encoding the server no longer takes, say) is left out."""
    who = owner(session)
    if who is None:
        return
    if not attributes.loaded(*who):
        await attributes.load(*who)
    saved = attributes.get(*who, SAVED_FLAGS, default=None)
    if not isinstance(saved, dict):
        return
    restored = {}
    for key, value in saved.items():
        checked = _checked(key, value, encodings)
        if checked is not None:
            restored[key] = checked
    if restored:
        session.protocol_flags.update(restored)
        session.sync()


def _checked(key: str, value: Any, encodings: Sequence[str]) -> Any:
    """A saved ``value`` of option ``key``, if it is still one the option takes."""
    if key not in OPTIONS:
        return None
    try:
        if key in ("SCREENWIDTH", "SCREENHEIGHT"):
            width = next(iter(value.values())) if isinstance(value, dict) else value
            return parse_option(key, str(int(width)))
        if isinstance(value, bool):
            return parse_option(key, "on" if value else "off")
        return parse_option(key, str(value), encodings)
    except (ValueError, TypeError, StopIteration):
        return None

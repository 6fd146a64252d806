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
from collections.abc import Callable
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


def _encoding(text: str) -> str:
    try:
        return codecs.lookup(text.strip()).name
    except LookupError:
        raise ValueError(f"{text.strip()!r} is not an encoding this server knows") from None


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


def option_command(attributes: Attributes) -> Command:
    """The ``option`` command, saving to ``attributes`` on the session's account."""

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
            return _save(ctx, attributes)
        key = name.upper()
        if key not in OPTIONS:
            ctx.msg(markup.escape(f'No option {name!r}. Type "option" for the list.'))
            return None
        try:
            parsed = OPTIONS[key][0](value)
        except ValueError as exc:
            ctx.msg(markup.escape(f"{key} {exc}."))
            return None
        flags[key] = parsed
        session.sync()
        ctx.msg(markup.escape(f"{key} is now {_shown(parsed)}."))
        return None

    option.__doc__ = """option [<name> <value> | save]

    List your client options, set one for this session, or save them all
    on your account (they come back at every login)."""
    return Command("option", option, aliases=("options",), help=inspect.cleandoc(option.__doc__))


async def _save(ctx: Context, attributes: Attributes) -> None:
    session = ctx.session
    if session.uid is None:
        ctx.msg("Log in first: options are saved on your account.")
        return
    flags = session.protocol_flags
    saved = {key: flags[key] for key in OPTIONS if key in flags}
    if not attributes.loaded("account", session.uid):
        await attributes.load("account", session.uid)
    attributes.set("account", session.uid, SAVED_FLAGS, saved)
    await attributes.saved()
    ctx.msg("Options saved: they come back at every login.")


async def restore(attributes: Attributes, session: ServerSession) -> None:
    """Merge the account's saved options into ``session``'s flags (at login and
    after a reload, as Evennia's ``at_sync`` does)."""
    if session.uid is None:
        return
    if not attributes.loaded("account", session.uid):
        await attributes.load("account", session.uid)
    saved = attributes.get("account", session.uid, SAVED_FLAGS, default=None)
    if not isinstance(saved, dict):
        return
    restored = {key: _from_json(key, value) for key, value in saved.items() if key in OPTIONS}
    if restored:
        session.protocol_flags.update(restored)
        session.sync()


def _from_json(key: str, value: Any) -> Any:
    if key in ("SCREENWIDTH", "SCREENHEIGHT") and isinstance(value, dict):
        return {int(k): v for k, v in value.items()}  # JSON made the keys strings
    return value

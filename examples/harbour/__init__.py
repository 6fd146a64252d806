"""Harbour: a small fishing game built on trio_mud's author's kit.

Run it: ``python -m trio_mud --embedded --set game=harbour:Harbour`` with this
directory's parent on ``PYTHONPATH`` (``PYTHONPATH=examples``), then
``telnet 127.0.0.1 4000``.

What it shows:

- its own commands (:func:`trio_mud.commands.command`) in command sets: the
  town's, and the fish market's, which a player has only while standing in
  the market;
- state that survives reloads, crashes and restarts
  (:class:`trio_mud.attributes.Attributes`): each fisher's gold and creel;
- GMCP: ``Char.Status`` (gold and fish) whenever it changes, and at once
  when a client's ``Core.Supports`` turns ``Char`` on;
- hooks on connect and leave (:class:`trio_mud.handler.HandlerHooks`);
- a prompt after every command (``[12 gold, 3 fish] >``), which players turn
  off with ``option NOPROMPT on``;
- player options (``option``), from the kit.

To keep it short, fishers are known by name alone: there are no passwords
(see the starter game, :mod:`trio_mud.game`, for accounts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio
from attrs import frozen

from trio_mud.attributes import Attributes
from trio_mud.commands import Commands, CommandSet, Context, ParseError, command
from trio_mud.handler import Handler, HandlerHooks, InputFunc, ServerSession
from trio_mud.options import option_command, restore

log = logging.getLogger("harbour")

#: Rooms: name, description, exits (direction -> room).
ROOMS: dict[str, tuple[str, dict[str, str]]] = {
    "pier": ("Gulls circle over a long wooden pier. The water below is full of fish.",
             {"east": "market"}),
    "market": ("Stalls of ice and salt. A fishmonger buys whatever you catch.",
               {"west": "pier", "north": "tavern"}),
    "tavern": ("The Salty Anchor: warm, loud, and smelling of chowder.", {"south": "market"}),
}  # fmt: skip

#: What the pier gives, in turn (a real game would roll dice).
CATCH = ("herring", "mackerel", "cod", "herring", "sole")
PRICES = {"herring": 2, "mackerel": 3, "cod": 5, "sole": 8}


@frozen
class Creel:
    """A fisher's basket: the fish caught and not yet sold."""

    fish: tuple[str, ...] = ()


def _one_word(text: str) -> dict[str, str]:
    word = text.strip().lower()
    if not word:
        raise ParseError("Say which.")
    return {"what": word}


@command("look", aliases=["l"])
def look(ctx: Context, args: str) -> None:
    """look

    Describe where you are and who is here.
    """
    game: Harbour = ctx.game
    room = game.room_of(ctx.session)
    text, exits = ROOMS[room]
    others = sorted(s.uname or "?" for s in game.sessions_in(room) if s is not ctx.session)
    lines = [f"|c{room.title()}|n", text]
    if others:
        lines.append("Here: " + ", ".join(others) + ".")
    lines.append("|gExits:|n " + ", ".join(exits) + ".")
    ctx.msg("\n".join(lines))


@command("go", aliases=["walk"], parse=_one_word)
def go(ctx: Context, what: str) -> None:
    """go <direction>

    Walk east, west, north or south (or type the direction alone).
    """
    ctx.game.move(ctx.session, what)


@command("say", aliases=["'"])
def say(ctx: Context, args: str) -> None:
    """say <message>

    Speak to everyone here.
    """
    if not args:
        ctx.msg("Say what?")
        return
    game: Harbour = ctx.game
    ctx.msg(f'You say, "{args}|n"')
    game.tell_room(game.room_of(ctx.session), f'{ctx.session.uname} says, "{args}|n"', ctx.session)


@command("fish")
async def fish(ctx: Context, args: str) -> None:
    """fish

    Cast a line from the pier and keep what bites.
    """
    game: Harbour = ctx.game
    if game.room_of(ctx.session) != "pier":
        ctx.msg("There is no water here. Try the pier.")
        return
    creel = game.creel(ctx.session)
    catch = CATCH[len(creel.fish) % len(CATCH)]
    game.set_creel(ctx.session, Creel((*creel.fish, catch)))
    await game.attributes.saved()  # a catch is never lost, not even to a crash
    ctx.msg(f"You catch a {catch}!")


@command("creel", aliases=["inventory", "i"])
def creel(ctx: Context, args: str) -> None:
    """creel

    What you have caught, and your gold.
    """
    game: Harbour = ctx.game
    fish = game.creel(ctx.session).fish
    ctx.msg(f"In your creel: {', '.join(fish) if fish else 'nothing'}. "
            f"Gold: {game.gold(ctx.session)}.")  # fmt: skip


@command("sell", parse=_one_word)
async def sell(ctx: Context, what: str) -> None:
    """sell <fish>|all

    Sell fish to the fishmonger (only in the market).
    """
    game: Harbour = ctx.game
    fish = list(game.creel(ctx.session).fish)
    sold = list(fish) if what == "all" else [f for f in fish if f == what][:1]
    if not sold:
        ctx.msg(f"You have no {what} to sell.")
        return
    for item in sold:
        fish.remove(item)
    earned = sum(PRICES[item] for item in sold)
    game.set_creel(ctx.session, Creel(tuple(fish)), gold=game.gold(ctx.session) + earned)
    await game.attributes.saved()
    ctx.msg(f"You sell {len(sold)} fish for {earned} gold.")


@command("quit")
def quit_(ctx: Context, args: str) -> None:
    """quit

    Leave the harbour (your creel and gold are kept).
    """
    ctx.session.disconnect("Fair winds!")


@command("connect", aliases=["name"], parse=_one_word)
async def connect(ctx: Context, what: str) -> None:
    """connect <name>

    Start fishing as <name> (a new fisher, or one who has been here before).
    """
    await ctx.game.log_in(ctx.session, what.capitalize())


class Harbour(HandlerHooks):
    """The game: what :mod:`trio_mud`'s ``game`` setting names (``harbour:Harbour``).

    Args:
        settings, world, store: as trio_mud gives every game (the world file
            is the starter game's, unused here; the store holds attributes).
    """

    def __init__(self, settings: Any, world: Any, store: Any) -> None:
        self.settings = settings
        self.attributes = Attributes(store)
        self.handler: Handler | None = None
        options = option_command(
            self.attributes, encodings=settings.encodings, owner=self.fisher_of
        )
        town = CommandSet("town", [look, go, say, fish, creel, quit_, options], prefixes=False)
        self.commands = Commands(
            [CommandSet("arrival", [connect, quit_]), town, CommandSet("market", [sell])],
            game=self,
            default=["arrival"],
        )

    # -- wiring ------------------------------------------------------------------------

    def inputfuncs(self) -> dict[str, InputFunc]:
        return {
            "text": self.text,
            "core_supports_set": self.supports,
            "core_supports_add": self.supports,
        }

    def attach_handler(self, handler: Handler) -> None:
        self.handler = handler

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.attributes.run(task_status=task_status)

    # -- hooks ---------------------------------------------------------------------------

    def at_session_connect(self, session: ServerSession) -> None:
        session.msg("|cWelcome to the Harbour!|n Type |wconnect <name>|n to start fishing.")

    def at_session_disconnect(self, session: ServerSession, reason: str) -> None:
        if session.uname is not None:
            self.tell_room(self.room_of(session), f"{session.uname} heads home.", session)

    async def at_handler_start(self, sessions: Sequence[ServerSession]) -> None:
        for session in sessions:  # after a reload: fishers' state back in memory
            if session.uname is not None:
                await self.attributes.load("fisher", session.uname.lower())

    async def at_handler_pause(self) -> None:
        await self.attributes.flush()

    # -- input -----------------------------------------------------------------------------

    async def text(self, session: ServerSession, line: str = "", *args: Any, **kw: Any) -> None:
        line = line.strip()
        if not line:
            return
        word = line.split()[0].lower()
        if session.uname is not None and word in ROOMS[self.room_of(session)][1]:
            self.move(session, word)
        elif not await self.commands.run(session, line):
            session.msg(self.commands.unknown(session, word))
        self.prompt(session)

    def supports(self, session: ServerSession, *args: Any, **kwargs: Any) -> None:
        """Core.Supports.Set/Add: the client may take Char now; send it at once."""
        if session.uname is not None:
            self.send_status(session)

    # -- fishers -----------------------------------------------------------------------

    @staticmethod
    def fisher_of(session: ServerSession) -> tuple[str, str] | None:
        """Whose attributes (and saved options) a session's are."""
        return None if session.uname is None else ("fisher", session.uname.lower())

    async def log_in(self, session: ServerSession, name: str) -> None:
        if not name.isalpha() or not 3 <= len(name) <= 20:
            session.msg("Names are 3 to 20 letters.")
            return
        await self.attributes.load("fisher", name.lower())
        session.uname = name
        session.server_data["room"] = self.attributes.get("fisher", name.lower(), "room", str,
                                                          default="pier")  # fmt: skip
        self.commands.set_sets(session, self._sets_for(self.room_of(session)))
        log.info("sessid %d: %s is fishing", session.sessid, name)
        session.msg(f"Welcome, {name}.")
        self.tell_room(self.room_of(session), f"{name} arrives.", session)
        await restore(  # saved options
            self.attributes, session, encodings=self.settings.encodings, owner=self.fisher_of
        )
        self.show_room(session)
        self.send_status(session)

    def room_of(self, session: ServerSession) -> str:
        room = session.server_data.get("room", "pier")
        return room if room in ROOMS else "pier"

    def sessions_in(self, room: str) -> list[ServerSession]:
        sessions = self.handler.sessions.values() if self.handler is not None else []
        return [s for s in sessions if s.uname is not None and self.room_of(s) == room]

    def tell_room(self, room: str, text: str, exclude: ServerSession | None = None) -> None:
        if self.handler is not None:
            self.handler.broadcast([s for s in self.sessions_in(room) if s is not exclude], text)

    def move(self, session: ServerSession, direction: str) -> None:
        here = self.room_of(session)
        there = ROOMS[here][1].get(direction)
        if there is None:
            session.msg("You can't go that way.")
            return
        self.tell_room(here, f"{session.uname} walks {direction}.", session)
        session.server_data["room"] = there
        self.commands.set_sets(session, self._sets_for(there))  # the market's set comes and goes
        assert session.uname is not None
        self.attributes.set("fisher", session.uname.lower(), "room", there)
        self.tell_room(there, f"{session.uname} arrives.", session)
        self.show_room(session)

    def show_room(self, session: ServerSession) -> None:
        look.func(Context(session, self, look, "look", ""), "")

    @staticmethod
    def _sets_for(room: str) -> list[str]:
        return ["town", "market"] if room == "market" else ["town"]

    def creel(self, session: ServerSession) -> Creel:
        assert session.uname is not None
        found: Creel = self.attributes.get("fisher", session.uname.lower(), "creel", Creel,
                                           default=Creel())  # fmt: skip
        return found

    def gold(self, session: ServerSession) -> int:
        assert session.uname is not None
        gold: int = self.attributes.get("fisher", session.uname.lower(), "gold", int, default=0)
        return gold

    def set_creel(self, session: ServerSession, creel: Creel, *, gold: int | None = None) -> None:
        assert session.uname is not None
        self.attributes.set("fisher", session.uname.lower(), "creel", creel)
        if gold is not None:
            self.attributes.set("fisher", session.uname.lower(), "gold", gold)
        self.send_status(session)

    def send_status(self, session: ServerSession) -> None:
        """GMCP Char.Status (the portal sends it only to clients that take Char)."""
        status = {"name": session.uname, "gold": self.gold(session),
                  "fish": len(self.creel(session).fish)}  # fmt: skip
        session.data_out(**{"Char.Status": ((), status)})

    def prompt(self, session: ServerSession) -> None:
        if session.uname is None or not session.connected:
            return
        if session.protocol_flags.get("NOPROMPT"):
            return
        status = f"[{self.gold(session)} gold, {len(self.creel(session).fish)} fish] > "
        session.data_out(prompt=status)

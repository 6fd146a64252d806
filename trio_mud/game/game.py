"""The starter game: log in, look around, talk, walk.

Commands follow Evennia's defaults so that people and scripts coming from
Evennia feel at home: ``connect <name> <password>`` and ``create <name>
<password>`` at the connection screen; ``look``, ``say`` (``'``), ``pose``
(``emote``, ``:``), ``who``, ``help``, ``quit`` and exit names once in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from attrs import define, field

from .. import markup
from ..attributes import Attributes
from ..commands import Command, Commands, CommandSet, Context
from ..handler import Handler, HandlerHooks, InputFunc, ServerSession
from ..oob import MsdpVariables
from ..options import option_command, restore
from ..settings import Settings
from .accounts import NAME_PATTERN, Passwords, name_problem, password_problem
from .admin import ADMIN_HELP, Admin, duration, is_admin
from .security import LoginGuard
from .store import AccountRecord, CharacterRecord, NameTaken, Store
from .world import DIRECTION_ALIASES, Room, World

log = logging.getLogger("trio_mud.game")

#: The short exit names GMCP mappers expect (IRE's Room.Info convention).
_SHORT_DIRECTIONS = {long: short for short, long in DIRECTION_ALIASES.items()}

CommandFunc = Callable[[ServerSession, str], Awaitable[None] | None]


def _bind(
    key: str,
    func: CommandFunc,
    help_text: str,
    *,
    aliases: tuple[str, ...] = (),
    permission: str | None = None,
) -> Command:
    """One of the starter game's methods (``func(session, args)``) as a command."""

    def run(ctx: Context, args: str) -> Awaitable[None] | None:
        return func(ctx.session, args)

    return Command(key, run, aliases=aliases, permission=permission, help=help_text)


#: Where a session waiting at a password prompt keeps what it waits for:
#: ``[verb, name]`` in its ``server_data``, so that it survives a reload.
PASSWORD_FOR = "password_for"

UNKNOWN_AT_SCREEN = 'That is not a command here. Type "help" for the commands.'

CONNECTION_SCREEN = """\
==============================================================
 Welcome to |c{name}|n!

 If you have an account, connect to it by typing:
      connect <name> <password>
 If you need an account, create one by typing:
      create <name> <password>

 Type "help" for more, "who" to see who is online, "quit" to
 leave. "look" shows this screen again.
=============================================================="""

UNLOGGED_HELP = """\
Commands at the connection screen:
  connect <name> <password>   log in to your account
  create <name> <password>    make a new account and character
  look                        show the connection screen again
  who                         list the players online
  quit                        disconnect"""

#: Help at the connection screen.
UNLOGGED_TOPICS = {
    "connect": "connect <name> [<password>]\n  Log in to your account (without a password,"
    " you are asked for it at a prompt that hides it). (co, con)",
    "create": "create <name> [<password>]\n  Make a new account and its character. (cr)",
    "look": "look\n  Show the connection screen again.",
    "help": "help\n  The commands at the connection screen.",
}

HELP_TOPICS = {
    "look": "look [<target>]\n  Describe your surroundings, a person here,"
    " or where an exit leads. (l)",
    "say": "say <message>\n  Speak to everyone in the room. Shortcut: 'Hello there",
    "pose": "pose <action>\n  Act something out: 'pose waves.' shows 'Ann waves.'"
    " Also: emote, and :waves",
    "who": "who\n  List the players online, how long they have been on and how long idle.",
    "go": "go <exit>\n  Walk through an exit. Typing the exit's name (north, or n) does the same.",
    "help": "help [<command>]\n  List the commands, or explain one.",
    "quit": "quit\n  Leave the game. Your character stays where it is until you return.",
}


@define(eq=False)
class Character:
    """A character in the world, online or not."""

    id: int
    account_id: int
    name: str
    room: Room
    session: ServerSession | None = None
    online_since: float = field(factory=time.time)
    hp: int = 100
    maxhp: int = 100


class Game(HandlerHooks):
    """The starter game's state and commands.

    Args:
        settings: the server's configuration.
        world: rooms and exits.
        store: the open database.
    """

    def __init__(self, settings: Settings, world: World, store: Store) -> None:
        self.settings = settings
        self.world = world
        self.store = store
        self.passwords = Passwords(settings)
        self.guard = LoginGuard(settings, store)
        #: What the game keeps on accounts and characters (saved options, ...).
        self.attributes = Attributes(store)
        self.admin = Admin(self)
        self.started = time.time()
        #: Characters in the world, by character id.
        self.online: dict[int, Character] = {}
        self._occupants: dict[str, dict[int, Character]] = {key: {} for key in world.rooms}
        self._unsaved: dict[int, str] = {}
        self._unsaved_event = trio.Event()
        self.msdp = MsdpVariables()
        self.handler: Handler | None = None
        self.commands = Commands(
            [self._login_set(), self._game_set()],
            game=self,
            default=lambda session: ["game"] if session.puppet is not None else ["login"],
        )

    def add_command(
        self, names: tuple[str, ...], func: CommandFunc, *, logged_in: bool = True, help: str = ""
    ) -> None:
        """Add (or replace) a command ``func(session, args)`` named ``names[0]``,
        with the rest of ``names`` as aliases; ``logged_in=False`` puts it on
        the connection screen. (For more, build :class:`Command` s and sets.)"""
        cmd = _bind(names[0], func, help, aliases=tuple(names[1:]))
        self.commands.add("game" if logged_in else "login", cmd)

    def _login_set(self) -> CommandSet:
        """The connection screen's commands."""
        return CommandSet(
            "login",
            [
                _bind("connect", self.cmd_connect, UNLOGGED_TOPICS["connect"]),
                _bind("create", self.cmd_create, UNLOGGED_TOPICS["create"]),
                _bind("look", self.cmd_screen, UNLOGGED_TOPICS["look"], aliases=("l",)),
                _bind("help", self.cmd_unlogged_help, UNLOGGED_TOPICS["help"], aliases=("?",)),
                _bind("who", self.cmd_who, HELP_TOPICS["who"]),
                _bind("quit", self.cmd_quit, HELP_TOPICS["quit"]),
            ],
        )

    def _game_set(self) -> CommandSet:
        """The commands of a player in the world (admin ones for admins only)."""
        cmds = [
            _bind("look", self.cmd_look, HELP_TOPICS["look"], aliases=("l",)),
            _bind("say", self.cmd_say, HELP_TOPICS["say"]),
            _bind("pose", self.cmd_pose, HELP_TOPICS["pose"], aliases=("emote",)),
            _bind("who", self.cmd_who, HELP_TOPICS["who"]),
            _bind("help", self.cmd_help, HELP_TOPICS["help"], aliases=("?",)),
            _bind("quit", self.cmd_quit, HELP_TOPICS["quit"]),
            _bind("go", self.cmd_go, HELP_TOPICS["go"]),
            option_command(self.attributes, encodings=self.settings.encodings),
            _bind("reload", self.cmd_reload, ADMIN_HELP["reload"], permission="admin"),
        ]
        for name, func in self.admin.commands().items():
            cmds.append(_bind(name, func, ADMIN_HELP[name], permission="admin"))
        # Exits are typed by name ("north", "n"): whole names only, so that a
        # prefix of a command is never taken for a short exit name.
        return CommandSet("game", cmds, prefixes=False)

    # -- wiring ----------------------------------------------------------------------

    def inputfuncs(self) -> dict[str, InputFunc]:
        """The input functions to give the :class:`~trio_mud.handler.Handler`."""
        return {
            "text": self.text,
            "login": self.gmcp_login,
            "core_supports_set": self.gmcp_supports,
            "core_supports_add": self.gmcp_supports,
        }

    def attach_handler(self, handler: Handler) -> None:
        """Wire the game to the handler that runs it."""
        self.handler = handler
        self.register_msdp(handler.msdp)

    def register_msdp(self, msdp: MsdpVariables) -> None:
        """Offer the game's MSDP variables (call with ``handler.msdp``)."""
        self.msdp = msdp

        def puppet(session: ServerSession) -> Character | None:
            char = session.puppet
            return char if isinstance(char, Character) else None

        def room_table(session: ServerSession) -> dict[str, Any]:
            char = puppet(session)
            if char is None:
                return {}
            room = char.room
            return {
                "VNUM": room.num,
                "NAME": room.name,
                "AREA": room.area,
                "EXITS": self._exit_numbers(room),
            }

        msdp.add("SERVER_ID", lambda s: self.settings.server_name, reportable=False)
        msdp.add("SERVER_TIME", lambda s: str(int(time.time())), reportable=False)
        msdp.add("CHARACTER_NAME", lambda s: c.name if (c := puppet(s)) else "")
        msdp.add("HEALTH", lambda s: c.hp if (c := puppet(s)) else "")
        msdp.add("HEALTH_MAX", lambda s: c.maxhp if (c := puppet(s)) else "")
        msdp.add("ROOM", room_table)
        msdp.add("ROOM_VNUM", lambda s: room_table(s).get("VNUM", ""))
        msdp.add("ROOM_NAME", lambda s: room_table(s).get("NAME", ""))
        msdp.add("ROOM_EXITS", lambda s: room_table(s).get("EXITS", {}))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Save characters' locations in the background until cancelled.

        Moves are batched: whatever changed while one save ran goes in the
        next. On the way out, everything still unsaved is saved.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.attributes.run)
            task_status.started()
            try:
                while True:
                    await self._unsaved_event.wait()
                    await self.flush()
            finally:
                with trio.CancelScope(shield=True):
                    await self.flush()

    async def flush(self) -> None:
        """Write every unsaved location now."""
        batch, self._unsaved = self._unsaved, {}
        self._unsaved_event = trio.Event()
        try:
            await self.store.save_locations(batch)
        except Exception:
            log.exception("saving %d locations failed; will retry", len(batch))
            for char_id, room in batch.items():
                self._unsaved.setdefault(char_id, room)

    def _mark_unsaved(self, char: Character) -> None:
        self._unsaved[char.id] = char.room.key
        self._unsaved_event.set()

    # -- handler restarts ------------------------------------------------------------

    async def load_bans(self) -> None:
        """Read the bans; account bans apply here, address bans go to the portal."""
        bans = await self.guard.load()
        if self.handler is not None:
            self.handler.set_banned_addresses(b.value for b in bans if b.kind == "address")

    async def at_handler_start(self, sessions: Sequence[ServerSession]) -> None:
        """At start and after a reload: the bans to the portal, and every
        puppeted character back where it was."""
        await self.load_bans()
        playing = [s for s in sessions if s.logged_in and s.uid and s.puid]
        found = await self.store.puppets([(s.uid, s.puid) for s in playing])  # type: ignore[misc]
        for session in playing:
            assert session.puid is not None
            if session.puid not in found:
                log.warning("sessid %d: account or character gone after reload", session.sessid)
                session.logged_in = False
                session.uid = session.puid = session.uname = None
                session.sync()
                continue
            self._enter_world(session, *found[session.puid])
            await restore(self.attributes, session, encodings=self.settings.encodings)

    async def at_handler_pause(self) -> None:
        """Before a reload: every location and attribute saved."""
        await self.flush()
        await self.attributes.flush()

    # -- session hooks ----------------------------------------------------------------

    def at_session_connect(self, session: ServerSession) -> None:
        self.cmd_screen(session, "")
        session.data_out(**{"Char.Login.Default": ((), {"type": ["password-credentials"]})})

    def at_session_disconnect(self, session: ServerSession, reason: str) -> None:
        char = session.puppet
        if not isinstance(char, Character):
            return
        session.puppet = None
        char.session = None
        self._leave_world(char, f"{char.name} has left the game.")

    # -- input -----------------------------------------------------------------------

    def text(self, session: ServerSession, line: str = "", *args: Any, **kwargs: Any) -> Any:
        """The ``text`` input function: one line the player typed."""
        pending = session.server_data.pop(PASSWORD_FOR, None)
        if pending is not None:
            session.sync()  # the portal's copy forgets the prompt too
            if not (isinstance(pending, list | tuple) and len(pending) == 2):
                return None
            verb, name = str(pending[0]), str(pending[1])
            if not line:
                session.msg("Cancelled.")
                return None
            if verb == "create":
                return self._create(session, name, line.strip(), prompted=True)
            return self.cmd_connect(session, f"{name} {line}")
        line = line.strip()
        if not line:
            return None
        if session.puppet is None:
            found, pending = self.commands.start(session, line)
            if not found:
                # Not echoed: at this screen a mistyped line may be a password.
                session.msg(UNKNOWN_AT_SCREEN)
            return pending
        return self._in_game(session, session.puppet, line)

    def _in_game(self, session: ServerSession, char: Character, line: str) -> Any:
        """A line typed by a player in the world; the prompt after its output.

        Done here and now when the command is sync (most are: say, look,
        walking), so that the handler needs no task for it; an async command
        is returned to be awaited, the prompt after it.
        """
        if line[0] in "'\"":
            self.cmd_say(session, line[1:].strip())
        elif line[0] == ":":
            self.cmd_pose(session, line[1:].strip())
        else:
            found, pending = self.commands.start(session, line)
            if pending is not None:
                return self._prompt_after(session, pending)
            if not found:
                word = line.partition(" ")[0].lower()
                target = self.world.exit_from(char.room, word)
                if target is not None:
                    self._move(char, target, DIRECTION_ALIASES.get(word, word))
                else:
                    session.msg(self.commands.unknown(session, word))
        self.prompt(session)
        return None

    async def _prompt_after(self, session: ServerSession, pending: Awaitable[None]) -> None:
        await pending
        self.prompt(session)

    def prompt(self, session: ServerSession) -> None:
        """The prompt (``game_prompt``), unless the player turned it off (NOPROMPT)."""
        char = session.puppet
        template = self.settings.game_prompt
        if not template or not isinstance(char, Character) or not session.connected:
            return
        if session.protocol_flags.get("NOPROMPT"):
            return
        session.data_out(
            prompt=template.format(
                hp=char.hp, maxhp=char.maxhp, name=char.name, room=char.room.name
            )
        )

    def gmcp_supports(self, session: ServerSession, *args: Any, **kwargs: Any) -> None:
        """GMCP ``Core.Supports.Set``/``.Add``: the state of what the client now takes,
        at once (the portal sends each package only to clients that take it)."""
        char = session.puppet
        if isinstance(char, Character):
            self._send_status(char, everything=True)

    # -- the connection screen --------------------------------------------------------

    def cmd_screen(self, session: ServerSession, args: str) -> None:
        """``look`` at the connection screen: the screen again."""
        session.msg(CONNECTION_SCREEN.format(name=self.settings.server_name))

    def cmd_unlogged_help(self, session: ServerSession, args: str) -> None:
        """``help`` at the connection screen."""
        session.msg(UNLOGGED_HELP)

    def _ask_password(self, session: ServerSession, verb: str, name: str) -> None:
        """A hidden ``Password:`` prompt; the next line is the password.

        What it waits for lives in ``server_data``, which the portal keeps:
        a reload in between still takes the next line as the password.
        """
        session.server_data[PASSWORD_FOR] = [verb, name]
        session.sync()
        session.data_out(prompt=("Password: ", {"password": True}))

    async def cmd_create(self, session: ServerSession, args: str) -> None:
        """``create <name> [<password>]``: a new account and character (a hidden
        password prompt when no password is given)."""
        name, _, password = args.partition(" ")
        password = password.strip()
        if not name:
            session.msg("Usage: create <name> <password>")
            return
        if not password:
            if (problem := name_problem(name)) is not None:
                session.msg(problem)
            else:
                self._ask_password(session, "create", name)
            return
        await self._create(session, name, password, prompted=False)

    async def _create(
        self, session: ServerSession, name: str, password: str, *, prompted: bool
    ) -> None:
        if (problem := name_problem(name)) is not None:
            session.msg(problem)
            return
        if (problem := password_problem(self.settings, name, password)) is not None:
            session.msg(problem)
            if prompted:
                # Still at the prompt: the next line is a password again, hidden.
                session.msg("Choose another password (an empty line cancels).")
                self._ask_password(session, "create", name)
            return
        if (refusal := await self.guard.creation_refusal(session.address)) is not None:
            session.msg(refusal)
            return
        if await self.store.find_account(name) is not None:
            session.msg(f"Sorry, the name {name!r} is taken. Please choose another.")
            return
        password_hash = await self.passwords.hash(password, session.address)
        try:
            account, record = await self.store.create_account(name, password_hash, self.world.start)
        except NameTaken:
            session.msg(f"Sorry, the name {name!r} is taken. Please choose another.")
            return
        log.info("sessid %d: created account %r", session.sessid, name)
        await self.guard.created(session.address)
        if not session.connected:
            return  # the client left while we worked
        session.msg(f"A new account {name!r} was created. Welcome!")
        self._puppet(session, account, record)
        self.prompt(session)

    async def cmd_connect(self, session: ServerSession, args: str) -> None:
        """``connect <name> [<password>]``: log in (asks for a hidden password if none is given)."""
        name, _, password = args.partition(" ")
        password = password.strip()
        if not name:
            session.msg("Usage: connect <name> <password>")
            return
        if not password:
            self._ask_password(session, "connect", name)
            return
        account = await self.log_in(session, name, password)
        if account is None:
            return
        record = await self.store.character_of(account.id)
        if not session.connected:
            return  # the client left while we worked
        if record is None:
            session.msg("Your account has no character. Please contact an administrator.")
            return
        log.info("sessid %d: %r logged in", session.sessid, account.name)
        self._puppet(session, account, record)
        await restore(self.attributes, session, encodings=self.settings.encodings)
        self.prompt(session)

    async def gmcp_login(self, session: ServerSession, *args: Any, **kwargs: Any) -> None:
        """GMCP ``Char.Login.Credentials {"account": ..., "password": ...}``."""
        if session.puppet is not None:
            return
        name, password = str(kwargs.get("account", "")), str(kwargs.get("password", ""))
        if not name or not password:
            session.data_out(
                **{"Char.Login.Result": ((), {"success": False, "message": "Missing credentials"})}
            )
            return
        await self.cmd_connect(session, f"{name} {password}")
        if session.connected:
            success = session.puppet is not None
            message = "" if success else "Incorrect name or password."
            session.data_out(
                **{"Char.Login.Result": ((), {"success": success, "message": message})}
            )

    async def log_in(
        self, session: ServerSession, name: str, password: str
    ) -> AccountRecord | None:
        """Check credentials; the account, or None (and the player told why).

        Refused without a password check while the address or the account is
        throttled (too many recent failures) or the account is banned.
        """
        ahead = self.guard.begin(name, session.address)
        try:
            refusal = await self.guard.login_refusal(name, session.address, ahead)
            if refusal is not None:
                if session.connected:
                    session.msg(refusal)
                return None
            found = await self.store.find_account(name) if NAME_PATTERN.fullmatch(name) else None
            valid = await self.passwords.verify(
                None if found is None else found.password_hash, password, session.address
            )
            if found is None or not valid:
                await self.guard.login_failed(name, session.address)
        finally:
            self.guard.end(name, session.address)
        account = found if valid else None
        if account is None:
            if self.handler is not None:
                self.handler.count("failed_logins")
            if session.connected:
                self._login_failed(session)
            return None
        rehash = None
        if self.passwords.needs_rehash(account.password_hash):
            rehash = await self.passwords.hash(password, session.address)
        await self.store.record_login(account.id, rehash)
        return account

    def _login_failed(self, session: ServerSession) -> None:
        failures = session.ndb.get("failed_logins", 0) + 1
        session.ndb["failed_logins"] = failures
        log.info("sessid %d: failed login (%d)", session.sessid, failures)
        if failures >= self.settings.max_failed_logins:
            session.disconnect("Too many failed login attempts. Goodbye.")
        else:
            session.msg("Incorrect name or password.")

    # -- entering and leaving the world -----------------------------------------------

    def _puppet(
        self, session: ServerSession, account: AccountRecord, record: CharacterRecord
    ) -> None:
        char = self.online.get(record.id)
        if char is not None and char.session is not None:
            old = char.session
            old.puppet = None
            old.disconnect("Your character was taken over by a new connection.")
            arrival = f"{char.name} has reconnected."
        else:
            arrival = f"{char.name if char else record.name} has entered the game."
        char = self._enter_world(session, account, record)
        self._tell_room(char.room, arrival, exclude=char)
        self.cmd_look(session, "")
        self._send_status(char, everything=True)

    def _enter_world(
        self, session: ServerSession, account: AccountRecord, record: CharacterRecord
    ) -> Character:
        """Link ``session`` to its character, placing it in the world if need be."""
        char = self.online.get(record.id)
        if char is None:
            room = self.world.rooms.get(record.location) or self.world.rooms[self.world.start]
            char = Character(record.id, record.account_id, record.name, room)
            self.online[char.id] = char
            self._occupants[room.key][char.id] = char
        char.session = session
        session.puppet = char
        session.account = account
        session.uid = account.id
        session.uname = account.name
        session.puid = char.id
        session.logged_in = True
        session.sync()
        return char

    def _leave_world(self, char: Character, announcement: str) -> None:
        self.online.pop(char.id, None)
        self._occupants[char.room.key].pop(char.id, None)
        self._mark_unsaved(char)
        self._tell_room(char.room, announcement)

    def _move(self, char: Character, target: Room, direction: str) -> None:
        self._tell_room(char.room, f"{char.name} leaves {direction}.", exclude=char)
        self._occupants[char.room.key].pop(char.id, None)
        char.room = target
        self._occupants[target.key][char.id] = char
        self._mark_unsaved(char)
        self._tell_room(target, f"{char.name} arrives.", exclude=char)
        if char.session is not None:
            self.cmd_look(char.session, "")
            self._send_status(char)

    def _exit_numbers(self, room: Room) -> dict[str, int]:
        return {
            _SHORT_DIRECTIONS.get(direction, direction): self.world.rooms[target].num
            for direction, target in room.exits.items()
        }

    def _send_status(self, char: Character, *, everything: bool = False) -> None:
        """Out-of-band news for clients: GMCP packages, MSDP variables.

        ``Room.Info`` carries what Mudlet's mapper follows: the room number,
        name, area and exits (direction -> room number).
        """
        session = char.session
        if session is None:
            return
        room = char.room
        packages: dict[str, Any] = {}
        if everything:
            packages["Char.Name"] = ((), {"name": char.name, "fullname": char.name})
            packages["Char.Vitals"] = ((), {"hp": char.hp, "maxhp": char.maxhp})
        packages["Room.Info"] = (
            (),
            {"num": room.num, "name": room.name, "area": room.area,
             "exits": self._exit_numbers(room)},
        )  # fmt: skip
        session.data_out(**packages)
        names = ["ROOM", "ROOM_VNUM", "ROOM_NAME", "ROOM_EXITS"]
        if everything:
            names += ["CHARACTER_NAME", "HEALTH", "HEALTH_MAX"]
        self.msdp.changed(session, *names)

    def _tell_room(self, room: Room, text: str, exclude: Character | None = None) -> None:
        """Tell everyone in ``room`` (but ``exclude``): one broadcast, not a message each."""
        sessions = [
            other.session
            for other in self._occupants[room.key].values()
            if other is not exclude and other.session is not None
        ]
        if self.handler is not None:
            self.handler.broadcast(sessions, text)
        else:
            for session in sessions:
                session.msg(text)

    def characters_in(self, room: Room) -> list[Character]:
        """The characters in ``room`` now."""
        return list(self._occupants[room.key].values())

    # -- in-game commands -------------------------------------------------------------

    def cmd_look(self, session: ServerSession, args: str) -> None:
        """``look [<target>]``: the room, an exit or someone in it."""
        char: Character = session.puppet
        room = char.room
        if args:
            target = self.world.exit_from(room, args)
            if target is not None:
                session.msg(f"That way lies {target.name}.")
                return
            for other in self.characters_in(room):
                if other.name.casefold() == args.casefold():
                    session.msg(f"{other.name} is here, looking much like anyone else.")
                    return
            session.msg(f"You see no {args!r} here.")
            return
        lines = [f"|c{room.name}|n", room.desc]
        others = sorted(c.name for c in self.characters_in(room) if c is not char)
        if others:
            lines.append("Also here: |w" + "|n, |w".join(others) + "|n.")
        exits = ", ".join(room.exits) if room.exits else "none"
        lines.append(f"|gExits:|n {exits}.")
        session.msg("\n".join(lines))

    def cmd_say(self, session: ServerSession, args: str) -> None:
        """``say <message>``: speech to the room (one broadcast)."""
        args = markup.one_line(args).strip()
        if not args:
            session.msg("Say what?")
            return
        char: Character = session.puppet
        session.msg(f'You say, "{args}|n"')
        self._tell_room(char.room, f'{char.name} says, "{args}|n"', exclude=char)

    def cmd_pose(self, session: ServerSession, args: str) -> None:
        """``pose <action>``: an action shown to the room."""
        args = markup.one_line(args).strip()
        if not args:
            session.msg("Pose what?")
            return
        char: Character = session.puppet
        self._tell_room(char.room, f"{char.name} {args}|n")

    def cmd_who(self, session: ServerSession, args: str) -> None:
        """``who``: who is playing (every session, in full, for admins)."""
        if is_admin(session):
            self.admin.who(session)
            return
        now = time.time()
        chars = sorted(self.online.values(), key=lambda c: c.name.casefold())
        playing = [c for c in chars if c.session is not None]
        lines = [f"Players online ({len(playing)}):"]
        for char in playing:
            assert char.session is not None
            on_for = duration(now - char.online_since)
            idle = duration(now - char.session.cmd_last_visible)
            lines.append(f"  {char.name:<20} on {on_for:>6}  idle {idle:>6}")
        session.msg("\n".join(lines))

    def cmd_help(self, session: ServerSession, args: str) -> None:
        """``help [<command>]``: what this session may use, or one command's help."""
        session.msg(self.commands.help(session, args))

    def cmd_go(self, session: ServerSession, args: str) -> None:
        """``go <exit>``: walk through an exit."""
        char: Character = session.puppet
        target = self.world.exit_from(char.room, args) if args else None
        if target is None:
            session.msg("You can't go that way." if args else "Go where?")
            return
        self._move(char, target, DIRECTION_ALIASES.get(args.lower(), args.lower()))

    def cmd_reload(self, session: ServerSession, args: str) -> None:
        """``reload`` (admins): ask the portal for a reload."""
        if self.handler is None:
            session.msg("This server cannot reload.")
            return
        log.info("sessid %d: %s asked for a reload", session.sessid, session.uname)
        session.msg("Reloading...")
        self.handler.request_reload(session)

    def cmd_quit(self, session: ServerSession, args: str) -> None:
        """``quit``: leave (the character stays where it is)."""
        session.disconnect("Goodbye! Come back soon.")

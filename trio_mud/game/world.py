"""Rooms and exits, loaded from a JSON data file.

The bundled world is ``trio_mud/game/data/world.json``; an operator can point
:func:`load_world` at a file of the same shape.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from attrs import field, frozen

#: Short forms players type for the usual directions.
DIRECTION_ALIASES = {
    "n": "north",
    "s": "south",
    "e": "east",
    "w": "west",
    "ne": "northeast",
    "nw": "northwest",
    "se": "southeast",
    "sw": "southwest",
    "u": "up",
    "d": "down",
}


class WorldError(Exception):
    """The world file is not valid; the message says where."""


@frozen
class Room:
    """A room: its key, number, name, area, description and exits."""

    key: str
    num: int
    name: str
    desc: str
    area: str = ""
    exits: dict[str, str] = field(factory=dict)


@frozen
class World:
    """Every room, and where new characters start."""

    rooms: dict[str, Room]
    start: str

    def exit_from(self, room: Room, word: str) -> Room | None:
        """The room ``word`` (an exit name or alias) leads to from ``room``."""
        word = word.lower()
        target = room.exits.get(DIRECTION_ALIASES.get(word, word))
        return None if target is None else self.rooms[target]

    @classmethod
    def from_dict(cls, data: Any) -> World:
        """A world from decoded JSON, checked whole.

        Raises:
            WorldError: the first thing wrong, saying where (``rooms[3]
                ("hall"): "num" must be a whole number``).
        """
        if not isinstance(data, dict):
            raise WorldError('the world must be a JSON object with "rooms" and "start"')
        raw_rooms, start = data.get("rooms"), data.get("start")
        if not isinstance(raw_rooms, list) or not raw_rooms:
            raise WorldError('"rooms" must be a list of rooms (JSON objects), and not empty')
        if not isinstance(start, str):
            raise WorldError('"start" must be the key of the room new characters start in')
        rooms: dict[str, Room] = {}
        numbers: dict[int, str] = {}
        for index, raw in enumerate(raw_rooms):
            room = _room(index, raw)
            if room.key in rooms:
                raise WorldError(f"rooms[{index}]: the room key {room.key!r} is used twice")
            if room.num in numbers:
                raise WorldError(
                    f"rooms[{index}] ({room.key!r}): room number {room.num} is used by "
                    f"{numbers[room.num]!r} too; numbers must be unique"
                )
            rooms[room.key] = room
            numbers[room.num] = room.key
        if start not in rooms:
            raise WorldError(f"the start room {start!r} does not exist")
        for room in rooms.values():
            for direction, target in room.exits.items():
                if target not in rooms:
                    raise WorldError(f"{room.key}: exit {direction!r} leads to unknown {target!r}")
        return cls(rooms, start)


def _room(index: int, raw: Any) -> Room:
    where = f"rooms[{index}]"
    if not isinstance(raw, dict):
        raise WorldError(f"{where} must be a JSON object")
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise WorldError(f'{where}: "key" must be a non-empty string')
    where = f"{where} ({key!r})"
    num = raw.get("num")
    if not isinstance(num, int) or isinstance(num, bool):
        raise WorldError(f'{where}: "num" must be a whole number')
    texts = {}
    for name, required in (("name", True), ("desc", True), ("area", False)):
        value = raw.get(name, None if required else "")
        if not isinstance(value, str):
            raise WorldError(f'{where}: "{name}" must be a string')
        texts[name] = value
    exits = raw.get("exits", {})
    if not isinstance(exits, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in exits.items()
    ):
        raise WorldError(f'{where}: "exits" must map directions to room keys (strings)')
    unknown = set(raw) - {"key", "num", "name", "desc", "area", "exits"}
    if unknown:
        raise WorldError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    lowered = {k.lower(): v for k, v in exits.items()}
    if len(lowered) != len(exits):
        raise WorldError(f"{where}: two exits differ only in case")
    return Room(key=key, num=num, exits=lowered, **texts)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WorldError(f"the key {key!r} appears twice in one JSON object")
        result[key] = value
    return result


def load_world(path: Path | None = None) -> World:
    """Load a world file, or the bundled one.

    Raises:
        WorldError: the file is not a valid world (the message says where).
        OSError: the file cannot be read.
    """
    if path is None:
        text = resources.files("trio_mud.game").joinpath("data/world.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise WorldError(f"world file is not valid JSON: {exc}") from exc
    except RecursionError:
        raise WorldError("world file is nested too deeply") from None
    return World.from_dict(data)

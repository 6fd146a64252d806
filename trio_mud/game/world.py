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
    key: str
    num: int
    name: str
    desc: str
    area: str = ""
    exits: dict[str, str] = field(factory=dict)


@frozen
class World:
    rooms: dict[str, Room]
    start: str

    def exit_from(self, room: Room, word: str) -> Room | None:
        """The room ``word`` (an exit name or alias) leads to from ``room``."""
        word = word.lower()
        target = room.exits.get(DIRECTION_ALIASES.get(word, word))
        return None if target is None else self.rooms[target]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> World:
        try:
            rooms = {
                r["key"]: Room(
                    key=str(r["key"]),
                    num=int(r["num"]),
                    name=str(r["name"]),
                    desc=str(r["desc"]),
                    area=str(r.get("area", "")),
                    exits={str(k).lower(): str(v) for k, v in r.get("exits", {}).items()},
                )
                for r in data["rooms"]
            }
            start = str(data["start"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WorldError(f"malformed world data: {exc!r}") from exc
        if start not in rooms:
            raise WorldError(f"start room {start!r} does not exist")
        for room in rooms.values():
            for direction, target in room.exits.items():
                if target not in rooms:
                    raise WorldError(f"{room.key}: exit {direction!r} leads to unknown {target!r}")
        if len({r.num for r in rooms.values()}) != len(rooms):
            raise WorldError("room numbers must be unique")
        return cls(rooms, start)


def load_world(path: Path | None = None) -> World:
    """Load a world file, or the bundled one."""
    if path is None:
        text = resources.files("trio_mud.game").joinpath("data/world.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorldError(f"world file is not valid JSON: {exc}") from exc
    return World.from_dict(data)

"""The starter game that ``python -m trio_mud`` serves."""

from .game import Character, Game
from .store import Store
from .world import Room, World, WorldError, load_world

__all__ = ["Character", "Game", "Room", "Store", "World", "WorldError", "load_world"]

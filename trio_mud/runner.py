"""One handler generation of the game, in whatever process runs it.

:func:`run_generation` is what a handler generation is, whether it runs in
the portal's process (``--embedded``) or in a server process of its own
(:mod:`trio_mud.serverproc`): import the game named by ``settings.game``, load
the world, open the database, and run a :class:`~trio_mud.handler.Handler`
attached to the portal until the portal retires it.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
from collections.abc import Callable
from typing import Any

import trio

from .game import Store, World, load_world
from .generations import StatusTap
from .handler import Handler, HandlerHooks
from .settings import Settings

log = logging.getLogger("trio_mud.server")

#: glibc's M_MMAP_THRESHOLD parameter (malloc.h).
_M_MMAP_THRESHOLD = -3


def pin_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """Keep glibc from raising its mmap threshold; whether it could be set.

    Password hashes allocate several MiB in worker threads. glibc serves an
    allocation that large with mmap and, when it is freed, raises its mmap
    threshold to that size, so the next hashes come from per-thread heaps
    that keep the memory: the server's RSS jumped by 57-75 MB at the first ten
    logins with 8 MiB hashes (nothing with 64 MiB ones, past the highest
    threshold glibc ever picks). A fixed threshold returns every large block
    at once (measured: +0.5 MB at ten logins). Does nothing off glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


#: What ``settings.game`` names: ``factory(settings, world, store) -> game``.
GameFactory = Callable[[Settings, World, Store], Any]


def load_game_factory(path: str) -> GameFactory:
    """Import ``module:attribute`` (the game's factory), fresh."""
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    factory: GameFactory = getattr(module, attribute or "Game")
    return factory


async def run_generation(
    settings: Settings,
    portal: Any,
    *,
    on_live: Callable[[Handler, Any], None] | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one handler generation of the game in this Trio run.

    Opens its own database connection, loads the world and the game (from
    ``settings.game``), and runs a :class:`Handler` attached to ``portal``
    until the portal retires it. Anything that fails before the handler has
    taken over (a broken game module, say) raises, and the portal keeps the
    generation it had.
    """
    # Imports and the world file are disk reads: off the event loop, which may
    # be serving players (an embedded reload).
    factory = await trio.to_thread.run_sync(load_game_factory, settings.game)
    world = await trio.to_thread.run_sync(load_world, settings.world_file)
    await trio.Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    async with Store.open(settings.database_path) as store:
        game = factory(settings, world, store)
        hooks: HandlerHooks = game
        handler = Handler(settings, game.inputfuncs(), hooks=hooks)
        game.attach_handler(handler)
        async with trio.open_nursery() as background:
            await background.start(game.run)
            status = StatusTap(task_status, (lambda: on_live(handler, game)) if on_live else None)
            await handler.run(portal, task_status=status)
            background.cancel_scope.cancel()  # the game saves what is unsaved

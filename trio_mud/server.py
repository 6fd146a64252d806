"""The whole server in one Trio run: portal, handler and the starter game.

:class:`Server` is what ``python -m trio_mud`` runs, and what tests start on
port 0. A custom application that wants its own game builds a
:class:`~trio_mud.nursery_portal.Portal` and a
:class:`~trio_mud.handler.Handler` directly (see the README).
"""

from __future__ import annotations

import logging

import trio

from .game import Game, Store, World, load_world
from .handler import Handler
from .nursery_portal import Portal
from .settings import Settings

log = logging.getLogger("trio_mud.server")


class Server:
    """Runs the portal, the handler and the game until :meth:`shutdown`.

    Args:
        settings: the configuration.
        world: the rooms to serve; the bundled world if not given.
    """

    def __init__(self, settings: Settings, *, world: World | None = None) -> None:
        self.settings = settings
        self.world = world if world is not None else load_world()
        self.portal = Portal(settings)
        self.handler: Handler | None = None
        self.game: Game | None = None
        self._shutdown = trio.Event()

    @property
    def telnet_port(self) -> int:
        """The first telnet port actually bound (useful after asking for 0)."""
        return self.portal.telnet_addresses[0][1]

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    def shutdown(self) -> None:
        """Start a graceful shutdown: goodbye to everyone, save, stop."""
        self._shutdown.set()

    async def run(self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown` is called (or the task is cancelled).

        ``task_status.started`` is given this server once it is listening.
        """
        await trio.Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        async with Store.open(self.settings.database_path) as store:
            game = self.game = Game(self.settings, self.world, store)
            handler = self.handler = Handler(self.settings, game.inputfuncs(), hooks=game)
            game.register_msdp(handler.msdp)
            async with trio.open_nursery() as background:
                await background.start(game.run)
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.portal.run)
                    await nursery.start(handler.run, self.portal)
                    log.info(
                        "%s is up; data in %s", self.settings.server_name, self.settings.data_dir
                    )
                    task_status.started(self)
                    await self._shutdown.wait()
                    log.info("shutting down")
                    await self.portal.shutdown()
                    # portal.run returns once every connection is closed; the
                    # handler then sees the end of its channel and returns.
                background.cancel_scope.cancel()  # the game saves what is unsaved
        log.info("stopped")

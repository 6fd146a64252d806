"""The whole server: a portal, and handler generations running the game.

:class:`Server` is what ``python -m trio_mud`` runs, and what tests start on
port 0. In ``"embedded"`` mode every handler generation runs in this Trio run;
in ``"process"`` mode each runs in a server process of its own (see
:mod:`trio_mud.serverproc`), so that a reload loads entirely new code. Either
way the portal keeps every connection through reloads and crashes.

A custom application that wants its own game builds a
:class:`~trio_mud.nursery_portal.Portal` and a
:class:`~trio_mud.handler.Handler` directly (see the README).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Literal

import trio

from .generations import Starter
from .handler import Handler
from .nursery_portal import Portal
from .runner import run_generation
from .serverproc import ProcessStarter
from .settings import Settings
from .transports.web import serve_web
from .transports.websocket import serve_websockets

log = logging.getLogger("trio_mud.server")

Mode = Literal["embedded", "process"]


class Server:
    """Runs the portal and the game until :meth:`shutdown`.

    Args:
        settings: the configuration.
        mode: ``"embedded"`` (one process) or ``"process"`` (a server process
            per handler generation).
    """

    def __init__(self, settings: Settings, *, mode: Mode = "embedded") -> None:
        self.settings = settings
        self.mode = mode
        starter: Starter
        if mode == "process":
            starter = ProcessStarter(settings)
        else:
            starter = partial(run_generation, settings, on_live=self._on_live)
        self.portal = Portal(settings, starter=starter)
        #: The live generation's handler and game (embedded mode only).
        self.handler: Handler | None = None
        self.game: Any = None
        self._shutdown = trio.Event()

    def _on_live(self, handler: Handler, game: Any) -> None:
        self.handler, self.game = handler, game

    @property
    def websocket_port(self) -> int:
        """The WebSocket port actually bound."""
        return self.portal.websocket_addresses[0][1]

    @property
    def web_port(self) -> int:
        """The web page's port actually bound."""
        return self.portal.web_addresses[0][1]

    @property
    def tls_port(self) -> int:
        """The first telnet-over-TLS port actually bound (``ssl_ports``)."""
        return self.portal.tls_addresses[0][1]

    @property
    def ssh_port(self) -> int:
        """The first SSH port actually bound (``ssh_ports``)."""
        return self.portal.ssh_addresses[0][1]

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

    async def reload(self) -> str | None:
        """Replace the game's handler (new code in process mode); None or the error."""
        return await self.portal.reload()

    async def run(self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown` is called (or the task is cancelled).

        ``task_status.started`` is given this server once it is listening.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.portal.run)
            async with trio.open_nursery() as web:
                if self.settings.websocket_port is not None:
                    await web.start(serve_websockets, self.portal)
                if self.settings.web_port is not None:
                    await web.start(serve_web, self.portal)
                if self.settings.ssh_ports:
                    from .transports.ssh import serve_ssh  # asyncssh loads only when used

                    await web.start(serve_ssh, self.portal)
                log.info(
                    "%s is up (%s mode); data in %s",
                    self.settings.server_name,
                    self.mode,
                    self.settings.data_dir,
                )
                task_status.started(self)
                await self._shutdown.wait()
                log.info("shutting down")
                await self.portal.shutdown()
                web.cancel_scope.cancel()  # listeners close; sessions ended above
        log.info("stopped")

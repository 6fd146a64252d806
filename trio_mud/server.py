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
import os
import time
from collections.abc import Callable
from typing import Any, Literal

import trio

from .config import ConfigError, changes, merge_live
from .control import Command, serve_control
from .generations import Starter
from .handler import Handler
from .nursery_portal import Portal
from .runner import run_generation
from .serverproc import ProcessStarter
from .settings import Settings
from .transports.web import serve_metrics, serve_web
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

    def __init__(
        self,
        settings: Settings,
        *,
        mode: Mode = "embedded",
        control: bool = False,
        reconfigure: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        #: Reads the settings again at each reload (the command line's
        #: configuration file and environment); None keeps them as they are.
        self.reconfigure = reconfigure
        self.mode = mode
        #: Answer ``status``/``reload``/``stop`` on the data directory's control
        #: socket (the command line does; hold the directory's lock first).
        self.control = control
        starter: Starter
        if mode == "process":
            self._process_starter: ProcessStarter | None = ProcessStarter(settings)
            starter = self._process_starter
        else:
            self._process_starter = None
            starter = self._start_embedded
        self.portal = Portal(settings, starter=starter)
        self.portal.on_shutdown_request = self.shutdown
        # An admin's in-game "reload" reads the settings again too.
        self.portal.generations.reload_hook = self.reload
        #: The live generation's handler and game (embedded mode only).
        self.handler: Handler | None = None
        self.game: Any = None
        self.started = time.time()
        self._shutdown = trio.Event()
        self._shutdown_message: str | None = None

    async def _start_embedded(self, portal: Any, *, task_status: trio.TaskStatus[Any]) -> None:
        await run_generation(self.settings, portal, on_live=self._on_live, task_status=task_status)

    def apply_settings(self, settings: Settings) -> None:
        """Use ``settings`` from now on: new connections, limits, messages, and
        the next handler generation (call :meth:`reload` for the game to see them).

        Listeners, the data directory and the log's destination stay as they
        are (see :data:`trio_mud.config.FIXED_WHILE_RUNNING`).
        """
        if settings.log_level != self.settings.log_level:
            logging.getLogger().setLevel(settings.log_level)
        self.settings = settings
        self.portal.settings = settings
        self.portal.generations.settings = settings
        if self._process_starter is not None:
            self._process_starter.settings = settings

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
    def metrics_port(self) -> int:
        """The metrics' own port actually bound (``metrics_port``)."""
        return self.portal.metrics_addresses[0][1]

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

    def shutdown(self, message: str | None = None) -> None:
        """Start a graceful shutdown: goodbye to everyone (``message``, or
        ``shutdown_message``), save, stop."""
        if not self._shutdown.is_set():
            self._shutdown_message = message
        self._shutdown.set()

    def status(self) -> dict[str, Any]:
        """What ``python -m trio_mud status`` prints: pid, uptime, sessions, reloads."""
        by_protocol: dict[str, int] = {}
        logged_in = 0
        for session in self.portal.sessions.values():
            by_protocol[session.protocol_key] = by_protocol.get(session.protocol_key, 0) + 1
            logged_in += bool(session.logged_in)
        last = self.portal.generations.last_reload
        return {
            "ok": True,
            "pid": os.getpid(),
            "server_pid": getattr(self._process_starter, "pid", None),
            "name": self.settings.server_name,
            "mode": self.mode,
            "data_dir": str(self.settings.data_dir),
            "started": self.started,
            "uptime": round(time.time() - self.started, 1),
            "sessions": sum(by_protocol.values()),
            "logged_in": logged_in,
            "by_protocol": by_protocol,
            "generation": self.portal.generations.number,
            "reloads": self.portal.generations.reloads_ok + self.portal.generations.reloads_failed,
            "restarts": self.portal.generations.restarts,
            "last_reload": None
            if last is None
            else {"at": last.at, "seconds": round(last.seconds, 3), "error": last.error},
        }

    async def reload(self) -> str | None:
        """Read the settings again (with ``reconfigure``), then replace the
        game's handler (new code in process mode); None or the error.

        Settings that cannot change while running are kept, with a warning;
        settings that cannot be read leave everything as it was.
        """
        if self.reconfigure is not None:
            try:
                fresh = await trio.to_thread.run_sync(self.reconfigure)
            except ConfigError as exc:
                log.error("settings not reloaded: %s", exc)
                return f"settings not reloaded: {exc}"
            live, fixed = changes(self.settings, fresh)
            for name, (before, after) in sorted(live.items()):
                log.info("setting %s: %r -> %r", name, before, after)
            for name in sorted(fixed):
                log.warning("setting %s changed, but takes a restart to apply", name)
            if live:
                self.apply_settings(merge_live(self.settings, fresh))
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
                if self.settings.metrics_port is not None:
                    await web.start(serve_metrics, self.portal)
                if self.settings.ssh_ports:
                    from .transports.ssh import serve_ssh  # asyncssh loads only when used

                    await web.start(serve_ssh, self.portal)
                log.info(
                    "%s is up (%s mode); data in %s",
                    self.settings.server_name,
                    self.mode,
                    self.settings.data_dir,
                )
                if self.control:
                    await web.start(serve_control, self.settings.data_dir, self._control_commands())
                task_status.started(self)
                await self._shutdown.wait()
                log.info("shutting down")
                await self.portal.shutdown(self._shutdown_message)
                web.cancel_scope.cancel()  # listeners close; sessions ended above
        log.info("stopped")

    def _control_commands(self) -> dict[str, Command]:
        async def status(_: str) -> dict[str, Any]:
            return self.status()

        async def reload(_: str) -> dict[str, Any]:
            error = await self.reload()
            return {"ok": error is None, "error": error}

        async def stop(message: str) -> dict[str, Any]:
            self.shutdown(message or None)
            return {"ok": True}

        return {"status": status, "reload": reload, "stop": stop}

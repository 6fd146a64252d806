"""``python -m trio_mud``: run the server in the foreground, and talk to it.

``start`` (the default) serves until a signal or ``stop``; ``stop``,
``reload`` and ``status`` ask the server that owns the data directory
(:mod:`trio_mud.control`); ``backup DEST`` copies the database while it is in
use. Settings come from defaults, the TOML file, ``TRIO_MUD_*`` variables and
the options, in that order (:mod:`trio_mud.config`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from . import __version__, config, control, logs
from .admission import ListenError
from .config import CONFIG_NAME
from .control import AlreadyRunning, DataDirLock
from .game import Store, WorldError, load_world
from .game.store import StoreError, backup_database, check_database
from .runner import pin_mmap_threshold
from .server import Server
from .settings import Settings, parse_setting
from .transports.tls import TLSSetupError

COMMANDS = ("start", "stop", "reload", "status", "backup")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command (``start`` unless another is named first) and its options.

    Options that set a setting default to None here, so that only those
    given count as "command line" (over the file and the environment).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "start"
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m trio_mud",
        description="Run a trio_mud server: connect with telnet, Mudlet or TinTin++. "
        "Commands: start (the default, in the foreground), stop, reload, status "
        "(of the server owning --data-dir), backup DEST (a copy of the database).",
    )
    if command == "backup":
        parser.add_argument("destination", type=Path, help="where the copy of the database goes")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"a TOML file of settings (default: <data-dir>/{CONFIG_NAME} if it exists)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the settings in force and where each came from, then exit",
    )
    parser.add_argument(
        "--telnet-port",
        type=int,
        action="append",
        metavar="PORT",
        help=f"telnet port; repeat for several (default {defaults.telnet_ports[0]})",
    )
    parser.add_argument(
        "--ssl-port",
        type=int,
        action="append",
        metavar="PORT",
        help="telnet-over-TLS port; repeat for several (default: none). Without "
        "ssl_certificate/ssl_private_key, a self-signed certificate is made in the data dir",
    )
    parser.add_argument(
        "--ssh-port",
        type=int,
        action="append",
        metavar="PORT",
        help="SSH port; repeat for several (default: none). `ssh -p PORT name@host` "
        "with the account's password logs in; the host key is made in the data dir",
    )
    parser.add_argument(
        "--websocket-port",
        type=int,
        metavar="PORT",
        help=f"WebSocket port for web clients (default {defaults.websocket_port})",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        metavar="PORT",
        help=f"HTTP port of the web client page (default {defaults.web_port})",
    )
    parser.add_argument(
        "--no-web", action="store_true", help="no WebSocket listener and no web client page"
    )
    parser.add_argument(
        "--interface",
        action="append",
        metavar="ADDRESS",
        help="address to listen on, repeat for several; 0.0.0.0 for all "
        f"(default {', '.join(defaults.telnet_interfaces)})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"where the database lives (default ./{defaults.data_dir})",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default text)",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        metavar="FILE",
        help="log to FILE (rotated at log_file_max_bytes) instead of stderr",
    )
    parser.add_argument("--name", help="the game's name")
    parser.add_argument(
        "--world", type=Path, help="a world JSON file to serve instead of the bundled one"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        help=f"seconds of silence before a client is closed, 0 for never "
        f"(default {defaults.idle_timeout:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        help="connections open at once (default: what the open-file limit allows, "
        "less a reserve; see the log line at start)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="run the game in this process instead of a separate server process "
        "(reloads then reuse the code already loaded)",
    )
    parser.add_argument(
        "--make-admin",
        metavar="NAME",
        help="give the existing account NAME admin rights, then exit",
    )
    parser.add_argument(
        "--revoke-admin", metavar="NAME", help="take admin rights from NAME, then exit"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any setting by name, e.g. --set max_output_queue=2048 (repeatable)",
    )
    parser.add_argument("--version", action="version", version=f"trio_mud {__version__}")
    args = parser.parse_args(argv)
    args.command = command
    return args


def command_line_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the options given set (``--set`` last).

    Raises:
        ValueError: a ``--set`` names no setting or has a bad value.
    """
    values: dict[str, Any] = {}
    options = {
        "telnet_ports": args.telnet_port,
        "ssl_ports": args.ssl_port,
        "ssh_ports": args.ssh_port,
        "telnet_interfaces": args.interface,
        "websocket_port": args.websocket_port,
        "web_port": args.web_port,
        "data_dir": args.data_dir,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "log_file": args.log_file,
        "server_name": args.name,
        "world_file": args.world,
        "idle_timeout": args.idle_timeout,
        "max_connections": args.max_connections,
    }
    for name, value in options.items():
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    if args.no_web:
        values["websocket_port"] = values["web_port"] = None
    for item in args.set:
        name, value = parse_setting(*_split_assignment(item))
        values[name] = value
    return values


async def serve(server: Server) -> None:
    """Run ``server``; the first SIGINT/SIGTERM shuts down cleanly, a second hard."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, server, nursery)
        await server.run()
        nursery.cancel_scope.cancel()


async def _watch_signals(server: Server, nursery: trio.Nursery) -> None:
    """SIGHUP reloads (in a task of its own: a stop is never kept waiting for
    a reload; a SIGHUP during one asks for one more after it), SIGINT and
    SIGTERM stop."""
    log = logging.getLogger("trio_mud")
    reloading = False
    again = False

    async def reload() -> None:
        nonlocal reloading, again
        reloading = True
        try:
            while True:
                again = False
                await server.reload()  # says what went wrong, if anything
                if not again:
                    return
        finally:
            reloading = False

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: reloading the settings and the game")
                if reloading:
                    again = True
                else:
                    nursery.start_soon(reload)
                continue
            if server.shutting_down:
                nursery.cancel_scope.cancel()
                return
            log.info(
                "%s: shutting down (send it again to stop at once)", signal.Signals(signum).name
            )
            server.shutdown()


async def set_admin(settings: Settings, name: str, admin: bool) -> int:
    """``--make-admin`` / ``--revoke-admin``: change the account, report, exit."""
    async with Store.open(settings.database_path) as store:
        changed = await store.set_admin(name, admin)
    if not changed:
        print(f"trio_mud: there is no account named {name!r}", file=sys.stderr)
        return 1
    print(f"{name} is {'now' if admin else 'no longer'} an admin (effective at next login).")
    return 0


#: File descriptors kept back from connections: listeners, the database and
#: its WAL, the server process's pipes, logs.
FD_RESERVE = 64


def _raise_file_limit() -> int:
    """Every connection is a file descriptor: allow as many as the system does.

    Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep what we have; the check below says what it allows
    return soft


def fit_connections(
    settings: Settings, explicit: bool, file_limit: int, *, quiet: bool = False
) -> Settings:
    """``max_connections`` that the open-file limit can serve, said in the log.

    Unset, it is the limit less :data:`FD_RESERVE`; set higher than the limit
    allows, it is lowered to that, with a warning naming both numbers.
    """
    log = logging.getLogger("trio_mud")
    room = max(1, file_limit - FD_RESERVE)
    if not explicit:
        if not quiet:
            log.info(
                "max_connections: %d (the open-file limit %d, less %d)",
                room,
                file_limit,
                FD_RESERVE,
            )
        return attrs.evolve(settings, max_connections=room)
    if settings.max_connections > room:
        log.warning(
            "max_connections %d needs %d open files, but this process may open %d: "
            "serving at most %d (raise the limit with ulimit -n, or LimitNOFILE= in systemd)",
            settings.max_connections,
            settings.max_connections + FD_RESERVE,
            file_limit,
            room,
        )
        return attrs.evolve(settings, max_connections=room)
    return settings


def check_data_dir(path: Path) -> str | None:
    """Why the data directory cannot be used (one line), or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"the data directory {path} exists but is not a directory"
    except OSError as exc:
        return f"cannot create the data directory {path}: {exc.strerror or exc}"
    if not path.is_dir():
        return f"the data directory {path} exists but is not a directory"
    probe = path / f".trio_mud-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot write in the data directory {path}: {exc.strerror or exc}"
    return None


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    found: list[Exception] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        else:
            found.append(exc)
    return found


def _split_assignment(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"--set takes NAME=VALUE, not {item!r}")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cli = command_line_settings(args)
        configured = config.load(cli, config_file=args.config)
    except (ValueError, config.ConfigError) as exc:
        print(f"trio_mud: {exc}", file=sys.stderr)
        return 2
    settings = configured.settings
    if args.print_config:
        print(config.render(configured))
        return 0
    if args.command in ("stop", "reload", "status"):
        return operate(args.command, settings)
    if args.command == "backup":
        return make_backup(settings, args.destination)
    try:
        logs.configure(settings)
    except OSError as exc:
        print(
            f"trio_mud: cannot log to {settings.log_file}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    # Operator mistakes get one line each, before anything starts.
    try:
        load_world(settings.world_file)
    except WorldError as exc:
        print(f"trio_mud: world file {settings.world_file}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"trio_mud: cannot read the world file: {exc}", file=sys.stderr)
        return 2
    problem = check_data_dir(settings.data_dir)
    if problem is not None:
        print(f"trio_mud: {problem}; choose another with --data-dir", file=sys.stderr)
        return 2
    try:
        check_database(settings.database_path)
    except StoreError as exc:
        print(
            f"trio_mud: {exc}. Restore it from a backup, or move it away to start afresh.",
            file=sys.stderr,
        )
        return 2
    if args.make_admin or args.revoke_admin:
        return trio.run(
            set_admin, settings, args.make_admin or args.revoke_admin, bool(args.make_admin)
        )
    lock = DataDirLock(settings.data_dir)
    try:
        stale = lock.acquire()
    except AlreadyRunning as exc:
        print(f"trio_mud: {exc}", file=sys.stderr)
        return 1
    try:
        if stale is not None:
            logging.getLogger("trio_mud").warning(
                "took over the data directory from pid %d, which is gone (did it crash?)", stale
            )
        return run_server(args, configured, cli)
    finally:
        lock.release()


def run_server(args: argparse.Namespace, configured: config.Configured, cli: dict[str, Any]) -> int:
    """``start``: serve in the foreground until a signal or ``stop``."""
    explicit = configured.sources["max_connections"] != "default"
    file_limit = _raise_file_limit()
    settings = fit_connections(configured.settings, explicit, file_limit)

    def reconfigure() -> Settings:
        fresh = config.load(cli, config_file=args.config)
        chosen = fresh.sources["max_connections"] != "default"
        return fit_connections(fresh.settings, chosen, file_limit, quiet=True)

    if args.embedded:
        pin_mmap_threshold()  # the game, and its password hashes, run here
    server = Server(
        settings,
        mode="embedded" if args.embedded else "process",
        control=True,
        reconfigure=reconfigure,
    )
    handler = logging.getLogger().handlers[0]
    if isinstance(handler.formatter, logs.JsonFormatter):
        handler.formatter.addresses = server.portal.address_of
    setup_errors: tuple[type[Exception], ...] = (ListenError, TLSSetupError)
    if settings.ssh_ports:
        from .transports.ssh import SSHSetupError  # asyncssh loads only when used

        setup_errors += (SSHSetupError,)
    status = 0
    try:
        trio.run(serve, server)
    except* setup_errors as group:
        for error in _leaves(group):
            print(f"trio_mud: {error}", file=sys.stderr)
        status = 1
    return status


def operate(command: str, settings: Settings) -> int:
    """``stop``, ``reload``, ``status``: ask the server owning the data directory.

    Exit status 3 when none runs there (as init scripts expect), 1 when the
    request failed.
    """
    data_dir = settings.data_dir
    try:
        if command == "stop":
            answer = control.request(data_dir, "stop")
            if not control.wait_stopped(data_dir, settings.shutdown_grace + 30):
                print(f"trio_mud: the server on {data_dir} has not stopped yet", file=sys.stderr)
                return 1
            print(f"stopped the server on {data_dir}")
            return 0
        # A reload may wait for the old game to pause and the new one to start.
        wait = settings.pause_timeout + settings.server_start_timeout + 30
        answer = control.request(data_dir, command, timeout=wait)
    except control.NotRunning as exc:
        print(f"trio_mud: {exc}", file=sys.stderr)
        return 3
    except (TimeoutError, ValueError) as exc:  # no answer in time, or a broken one
        print(f"trio_mud: the server on {data_dir} did not answer: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        pid = control.owner(data_dir)
        unreachable = isinstance(exc, ConnectionRefusedError | FileNotFoundError)
        if unreachable and command in ("reload", "stop") and pid and pid > 0:
            # No control socket (a path too long for one, say): signals do.
            os.kill(pid, signal.SIGHUP if command == "reload" else signal.SIGTERM)
            print(f"sent {'SIGHUP' if command == 'reload' else 'SIGTERM'} to pid {pid}")
            return 0
        print(f"trio_mud: cannot reach the server on {data_dir}: {exc}", file=sys.stderr)
        return 1
    if command == "status":
        print(json.dumps(answer, indent=2))
        return 0
    if not answer.get("ok"):
        print(f"trio_mud: reload failed: {answer.get('error')}", file=sys.stderr)
        return 1
    print("reloaded")
    return 0


def make_backup(settings: Settings, destination: Path) -> int:
    """``backup DEST``: a consistent copy of the database, even while it is in use."""
    try:
        pages = backup_database(settings.database_path, destination)
    except (OSError, StoreError, sqlite3.Error) as exc:
        print(f"trio_mud: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {settings.database_path} to {destination} ({pages} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

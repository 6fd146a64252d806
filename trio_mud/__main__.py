"""``python -m trio_mud``: run the server in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from . import __version__
from .admission import ListenError
from .game import Store, WorldError, load_world
from .game.store import StoreError, check_database
from .runner import pin_mmap_threshold
from .server import Server
from .settings import Settings, parse_setting
from .transports.tls import TLSSetupError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m trio_mud",
        description="Run a trio_mud server: connect with telnet, Mudlet or TinTin++.",
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
        default=defaults.websocket_port,
        metavar="PORT",
        help=f"WebSocket port for web clients (default {defaults.websocket_port})",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        default=defaults.web_port,
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
        default=defaults.data_dir,
        help=f"where the database lives (default ./{defaults.data_dir})",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log to stderr (default INFO)",
    )
    parser.add_argument("--name", default=defaults.server_name, help="the game's name")
    parser.add_argument(
        "--world", type=Path, help="a world JSON file to serve instead of the bundled one"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        help=f"seconds of silence before a client is closed, 0 for never "
        f"(default {defaults.idle_timeout:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
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
        help="give the existing account NAME admin rights (the reload command), then exit",
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
    return parser.parse_args(argv)


async def serve(server: Server) -> None:
    """Run ``server``; the first SIGINT/SIGTERM shuts down cleanly, a second hard."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, server, nursery.cancel_scope)
        await server.run()
        nursery.cancel_scope.cancel()


async def _watch_signals(server: Server, hard_stop: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                logging.getLogger("trio_mud").info("SIGHUP: reloading the game")
                error = await server.reload()
                if error is not None:
                    logging.getLogger("trio_mud").error("reload failed: %s", error)
                continue
            if server.shutting_down:
                hard_stop.cancel()
                return
            logging.getLogger("trio_mud").info(
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


def fit_connections(settings: Settings, explicit: bool, file_limit: int) -> Settings:
    """``max_connections`` that the open-file limit can serve, said in the log.

    Unset, it is the limit less :data:`FD_RESERVE`; set higher than the limit
    allows, it is lowered to that, with a warning naming both numbers.
    """
    log = logging.getLogger("trio_mud")
    room = max(1, file_limit - FD_RESERVE)
    if not explicit:
        log.info(
            "max_connections: %d (the open-file limit %d, less %d)", room, file_limit, FD_RESERVE
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
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    defaults = Settings()
    ports: tuple[int, ...] = tuple(args.telnet_port) if args.telnet_port else defaults.telnet_ports
    try:
        overrides = dict(parse_setting(*_split_assignment(item)) for item in args.set)
        settings = Settings(
            **{
                "server_name": args.name,
                "telnet_interfaces": tuple(args.interface or defaults.telnet_interfaces),
                "telnet_ports": ports,
                **({"ssl_ports": tuple(args.ssl_port)} if args.ssl_port else {}),
                **({"ssh_ports": tuple(args.ssh_port)} if args.ssh_port else {}),
                "data_dir": args.data_dir,
                "idle_timeout": args.idle_timeout,
                **(
                    {}
                    if args.max_connections is None
                    else {"max_connections": args.max_connections}
                ),
                "world_file": args.world,
                "websocket_port": None if args.no_web else args.websocket_port,
                "web_port": None if args.no_web else args.web_port,
                "log_level": args.log_level,
                **overrides,
            }
        )
    except (ValueError, TypeError) as exc:
        print(f"trio_mud: {exc}", file=sys.stderr)
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
    explicit = args.max_connections is not None or "max_connections" in overrides
    settings = fit_connections(settings, explicit, _raise_file_limit())
    if args.embedded:
        pin_mmap_threshold()  # the game, and its password hashes, run here
    server = Server(settings, mode="embedded" if args.embedded else "process")
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


if __name__ == "__main__":
    sys.exit(main())

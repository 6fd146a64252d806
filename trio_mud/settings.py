"""Configuration: one frozen attrs object, passed in wherever it is needed.

Names follow Evennia's settings (``MAX_CHAR_LIMIT`` becomes
``max_char_limit``) so that operators coming from Evennia find their way.
Every limit the server enforces is a field here, with a default that suits a
small public game.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from attrs import field, frozen

#: The session attributes that travel between portal and handler (Evennia's
#: ``SESSION_SYNC_ATTRS``).
DEFAULT_SESSION_SYNC_ATTRS: tuple[str, ...] = (
    "protocol_key",
    "address",
    "suid",
    "sessid",
    "uid",
    "csessid",
    "uname",
    "logged_in",
    "puid",
    "conn_time",
    "cmd_last",
    "cmd_last_visible",
    "cmd_total",
    "protocol_flags",
    "server_data",
)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("text", "json")


def _tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """``(name, value)`` pairs from pairs or a mapping (MSSP's extra fields)."""
    items = value.items() if isinstance(value, dict) else value
    pairs = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValueError(f"expected (name, value) pairs, not {item!r}")
        pairs.append((str(item[0]), str(item[1])))
    return tuple(pairs)


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be zero or positive, not {value!r}")


def _ports(
    instance: Any, attribute: attrs.Attribute[tuple[int, ...]], value: tuple[int, ...]
) -> None:
    for port in value:
        if not 0 <= port <= 65535:
            raise ValueError(f"{attribute.name}: {port} is not a TCP port")


def _prompt_template(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        value.format(hp=100, maxhp=100, name="Ann", room="Town Square")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"{attribute.name} may use {{hp}}, {{maxhp}}, {{name}} and {{room}}, "
            f"not {value!r} ({type(exc).__name__}: {exc})"
        ) from None


@frozen
class Settings:
    """Everything an operator can tune. All fields have sane defaults.

    Time is in seconds, sizes in bytes or characters as named.
    """

    # -- identity -----------------------------------------------------------
    server_name: str = "trio_mud"

    # -- listeners ----------------------------------------------------------
    #: Addresses the listeners bind to (telnet, WebSocket and the web page;
    #: Evennia's TELNET_INTERFACES). The default accepts only this machine;
    #: "0.0.0.0" accepts the world.
    telnet_interfaces: tuple[str, ...] = field(default=("127.0.0.1",), converter=_tuple)
    #: Telnet ports; 0 picks a free port (tests read it back).
    telnet_ports: tuple[int, ...] = field(default=(4000,), converter=_tuple, validator=_ports)
    #: Telnet-over-TLS ports (Evennia's SSL_PORTS); none by default, 0 picks a
    #: free port. The full telnet and MUD protocol suite runs over them.
    ssl_ports: tuple[int, ...] = field(default=(), converter=_tuple, validator=_ports)
    #: PEM certificate (chain) and private key for TLS; when neither is set, a
    #: self-signed pair is made once in the data directory.
    ssl_certificate: Path | None = field(default=None, converter=attrs.converters.optional(Path))
    ssl_private_key: Path | None = field(default=None, converter=attrs.converters.optional(Path))
    #: SSH ports (``ssh -p PORT name@host``); none by default, 0 picks a free
    #: port. The user name and password log in to the game's account.
    ssh_ports: tuple[int, ...] = field(default=(), converter=_tuple, validator=_ports)
    #: The SSH host key (OpenSSH's private key format); when unset, an Ed25519
    #: key is made once in the data directory and kept.
    ssh_host_key: Path | None = field(default=None, converter=attrs.converters.optional(Path))
    #: Seconds an SSH client may take from connecting to its shell (password
    #: typing included).
    ssh_login_timeout: float = field(default=60.0, validator=_positive)
    #: Lines an SSH player can bring back with the Up key.
    ssh_history_size: int = field(default=100, validator=_non_negative)
    #: Proxies whose word is taken for a client's address (Evennia's
    #: UPSTREAM_IPS): addresses or networks (``10.0.0.0/8``). Connections from
    #: them on telnet, TLS and SSH ports must start with a PROXY header (v1 or v2);
    #: on the web and WebSocket ports their ``X-Forwarded-For`` is used. From
    #: anyone else such a header is not believed (an ``X-Forwarded-For`` is
    #: refused).
    upstream_ips: tuple[str, ...] = field(default=(), converter=_tuple)
    #: AJAX long polling (the web page's fallback when no WebSocket opens):
    #: how long one poll waits for output, how long a client may go without
    #: polling before its session ends, the largest request body, and the most
    #: output frames kept for a client between polls.
    ajax_poll_timeout: float = field(default=25.0, validator=_positive)
    ajax_grace: float = field(default=30.0, validator=_positive)
    ajax_max_body: int = field(default=64 * 1024, validator=_positive)
    ajax_max_queued: int = field(default=1000, validator=_positive)
    #: Serve the web page over https and the WebSocket over wss, with the TLS
    #: certificate above (or the self-signed one); the page then connects with
    #: wss:// by itself.
    web_tls: bool = False
    #: WebSocket port for web clients (Evennia's WEBSOCKET_CLIENT_PORT); 0 picks
    #: a free port; None turns WebSockets off.
    websocket_port: int | None = 4002
    #: HTTP port of the web client page; None turns it off.
    web_port: int | None = 4001
    #: Seconds one HTTP request for the web page may take.
    web_request_timeout: float = field(default=10.0, validator=_positive)
    #: Seconds a new WebSocket client may take over its opening handshake
    #: (its socket counts against ``max_connections`` from the accept on).
    handshake_timeout: float = field(default=10.0, validator=_positive)
    #: Page origins (``https://game.example.org``) whose scripts may open a
    #: WebSocket besides the server's own page; ``*`` allows any. A client
    #: that sends no Origin (a native MUD client) is always let in.
    websocket_allowed_origins: tuple[str, ...] = field(default=(), converter=_tuple)
    #: Largest WebSocket message a client may send, in bytes.
    websocket_max_message: int = field(default=64 * 1024, validator=_positive)
    #: Seconds between pings to each WebSocket client, and how long a pong may
    #: take before the client counts as gone.
    websocket_ping_interval: float = field(default=20.0, validator=_positive)
    websocket_ping_timeout: float = field(default=10.0, validator=_positive)
    #: Seconds a WebSocket session waits for its client to come back (with
    #: its resume token) before it ends.
    websocket_resume_grace: float = field(default=60.0, validator=_non_negative)
    #: Where the database and other state live.
    data_dir: Path = field(default=Path("trio_mud_data"), converter=Path)
    #: A world JSON file to serve; None serves the bundled world.
    world_file: Path | None = field(default=None, converter=attrs.converters.optional(Path))

    # -- per-connection limits (portal) -------------------------------------
    #: Longest accepted input line, in characters (Evennia's MAX_CHAR_LIMIT).
    max_char_limit: int = field(default=6000, validator=_positive)
    #: Hard cap on a partial line the client has not ended yet, in bytes.
    #: Going over it is a protocol error that closes the connection.
    max_partial_line: int = field(default=64 * 1024, validator=_positive)
    #: Hard cap on one telnet subnegotiation, in bytes.
    max_subnegotiation: int = field(default=16 * 1024, validator=_positive)
    #: Most bytes taken from one socket in one read (the work one read can
    #: cause is bounded by it).
    max_read_size: int = field(default=16 * 1024, validator=_positive)
    #: Deepest nesting accepted in JSON a client sends (GMCP, WebSocket);
    #: deeper messages are refused with a message.
    max_json_depth: int = field(default=32, validator=_positive)
    #: Most GMCP packages a client's ``Core.Supports`` may name.
    max_gmcp_supports: int = field(default=64, validator=_positive)
    #: Commands a session may send per second; bursts up to
    #: ``command_rate_burst`` (Evennia's MAX_COMMAND_RATE).
    max_command_rate: float = field(default=80.0, validator=_positive)
    command_rate_burst: int = field(default=80, validator=_positive)
    command_rate_warning: str = "You entered commands too fast; wait a moment and try again."
    #: Inputs dropped in a row for the command rate before the client is
    #: taken to be flooding and is disconnected.
    max_dropped_commands: int = field(default=500, validator=_positive)
    #: New connections per second from one address, with a burst allowance
    #: (Evennia's MAX_CONNECTION_RATE).
    max_connection_rate: float = field(default=5.0, validator=_positive)
    connection_rate_burst: int = field(default=20, validator=_positive)
    #: Connections open at once, over all addresses.
    max_connections: int = field(default=4096, validator=_positive)
    #: Seconds without input before a session is closed; 0 disables
    #: (Evennia's IDLE_TIMEOUT).
    idle_timeout: float = field(default=3600.0, validator=_non_negative)
    #: Messages queued for one client before it counts as "not reading" and
    #: is disconnected.
    max_output_queue: int = field(default=1024, validator=_positive)
    #: Seconds one socket write may take before the client counts as stalled.
    write_timeout: float = field(default=60.0, validator=_positive)
    #: Messages from all connections waiting for the handler.
    inbound_queue_size: int = field(default=4096, validator=_positive)
    #: Character encodings a client may pick (Evennia's ENCODINGS).
    encodings: tuple[str, ...] = field(default=("utf-8", "latin-1", "ISO-8859-1"), converter=_tuple)

    # -- telnet -----------------------------------------------------------------
    #: Longest wait for a new client's answers to our telnet questions before
    #: the game starts with what is known (later answers still count).
    negotiation_timeout: float = field(default=0.3, validator=_positive)
    #: Offer MCCP2 (and MCCP3) compression.
    mccp: bool = True
    #: Most bytes one read of MCCP3-compressed input may inflate to; more
    #: closes the connection (a zlib bomb).
    max_inflated: int = field(default=64 * 1024, validator=_positive)
    #: Seconds of output silence after which a telnet client is sent IAC NOP,
    #: so that dead links are noticed (looked at every half of it, so the NOP
    #: comes within one and a half times it); 0 disables.
    telnet_keepalive: float = field(default=0.0, validator=_non_negative)
    #: Extra MSSP variables for MUD listings, on top of NAME, PLAYERS, UPTIME,
    #: PORT, CODEBASE and the protocol flags.
    mssp_extra: tuple[tuple[str, str], ...] = field(
        default=(("FAMILY", "Custom"), ("STATUS", "Alpha"), ("CRAWL DELAY", "-1")),
        converter=_pairs,
    )

    # -- handler restarts ---------------------------------------------------------
    #: Import path of the game a handler generation runs: a callable taking
    #: ``(settings, world, store)`` and returning the game (HandlerHooks with
    #: ``inputfuncs()``), as ``module:attribute``.
    game: str = "trio_mud.game:Game"
    #: Messages (typed lines mostly) one session may have waiting while no
    #: handler takes input; beyond it, typed input is dropped and the player told.
    max_pending_input: int = field(default=100, validator=_positive)
    input_dropped_message: str = (
        "The server is restarting and cannot keep more of your input: some of what "
        "you typed was dropped. Please type it again in a moment."
    )
    reload_message: str = "Server restarting..."
    reload_done_message: str = "... Server restarted."
    reload_failed_message: str = "... Server restart failed; carrying on as before."
    crash_message: str = "The server stopped unexpectedly; restarting it..."
    #: What a player is told when input of theirs was in hand when two server
    #: processes in a row died, and is therefore dropped rather than replayed.
    poisoned_input_message: str = (
        "Your last input could not be handled (the server stopped while running it, "
        "twice) and was dropped."
    )
    #: Seconds a handler may take to finish its work when asked to pause.
    pause_timeout: float = field(default=30.0, validator=_positive)
    #: Seconds a new server process may take to start and load the snapshot.
    server_start_timeout: float = field(default=60.0, validator=_positive)
    #: Restart after a crash at once, then after this, doubling each time it
    #: fails again, up to ``restart_backoff_max``; a handler that stayed up
    #: ``restart_stable_after`` seconds resets the count.
    restart_backoff: float = field(default=0.5, validator=_positive)
    restart_backoff_max: float = field(default=30.0, validator=_positive)
    restart_stable_after: float = field(default=60.0, validator=_positive)

    # -- logging -----------------------------------------------------------------
    #: Log level of the portal and of every server process.
    log_level: str = field(default="INFO", validator=attrs.validators.in_(_LOG_LEVELS))
    #: ``text`` (one readable line per record) or ``json`` (one object per
    #: line: time, level, logger, sessid, address, message).
    log_format: str = field(default="text", validator=attrs.validators.in_(_LOG_FORMATS))
    #: A file to log to instead of stderr, rotated by size: at
    #: ``log_file_max_bytes`` it is renamed ``.1`` (and so on, keeping
    #: ``log_file_backups``). 0 bytes: never rotated here (logrotate's job).
    log_file: Path | None = field(default=None, converter=attrs.converters.optional(Path))
    log_file_max_bytes: int = field(default=10 * 1024 * 1024, validator=_non_negative)
    log_file_backups: int = field(default=5, validator=_non_negative)

    # -- metrics -----------------------------------------------------------------
    #: A port of its own for the Prometheus/OpenMetrics endpoint (``/metrics``);
    #: unset, it is served on the web port. Either way only to the addresses
    #: in ``metrics_allowed_ips`` (networks too); others get 403.
    metrics_port: int | None = field(default=None)
    metrics_allowed_ips: tuple[str, ...] = field(default=("127.0.0.0/8", "::1"), converter=_tuple)

    # -- bans and throttles -------------------------------------------------------
    #: What a banned address or account is told before the connection closes.
    ban_message: str = "You are banned from this game."
    #: Connections open at once from one address (the address a trusted proxy
    #: names, behind one); more are refused with a message.
    max_connections_per_address: int = field(default=16, validator=_positive)
    #: Failed logins counted per address and per account within
    #: ``login_throttle_timeout`` seconds; at the limit, logins from that
    #: address or to that account are refused until the window has passed.
    #: Kept in the database: reconnecting, a reload or a restart resets nothing
    #: (Evennia's LOGIN_THROTTLE_LIMIT and LOGIN_THROTTLE_TIMEOUT).
    login_throttle_limit: int = field(default=5, validator=_positive)
    login_throttle_timeout: float = field(default=300.0, validator=_positive)
    #: Accounts one address may create within ``creation_throttle_timeout``
    #: seconds (Evennia's CREATION_THROTTLE_LIMIT and _TIMEOUT).
    creation_throttle_limit: int = field(default=2, validator=_positive)
    creation_throttle_timeout: float = field(default=600.0, validator=_positive)

    # -- sessions and shutdown ------------------------------------------------
    session_sync_attrs: tuple[str, ...] = field(
        default=DEFAULT_SESSION_SYNC_ATTRS, converter=_tuple
    )
    #: Text typed that counts as a keepalive rather than a command.
    idle_command: str = "idle"
    #: Seconds a clean shutdown waits for goodbyes to reach clients.
    shutdown_grace: float = field(default=3.0, validator=_positive)
    shutdown_message: str = "The server is shutting down. Goodbye!"

    # -- the starter game ---------------------------------------------------------
    #: The prompt shown after each command (``{hp}``, ``{maxhp}``, ``{name}``
    #: and ``{room}`` are filled in; markup allowed); empty for none. A player
    #: turns it off with ``option NOPROMPT on``.
    game_prompt: str = field(default="|gHP {hp}/{maxhp}|n > ", validator=_prompt_template)

    # -- accounts -------------------------------------------------------------
    min_password_length: int = field(default=8, validator=_positive)
    max_password_length: int = field(default=128, validator=_positive)
    #: Failed logins one connection may make before it is closed.
    max_failed_logins: int = field(default=5, validator=_positive)
    #: Argon2id cost. Every hash holds ``password_hash_memory_kib`` of memory,
    #: so at most ``password_hash_concurrency`` run at once.
    password_hash_time_cost: int = field(default=3, validator=_positive)
    password_hash_memory_kib: int = field(default=64 * 1024, validator=_positive)
    password_hash_concurrency: int = field(default=4, validator=_positive)
    #: Of those, how many one address may hold at once (the rest stay free
    #: for everyone else while one address floods logins).
    password_hash_per_address: int = field(default=2, validator=_positive)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "trio_mud.sqlite3"


def parse_setting(name: str, text: str) -> tuple[str, Any]:
    """Turn ``--set name=text`` into a value of the field's type.

    Scalars are written as themselves (``true``/``false`` for switches,
    ``none`` for an optional value left unset); lists of names or numbers
    are comma-separated; structured settings (``mssp_extra``) are JSON, an
    object or a list of pairs: ``--set 'mssp_extra={"GENRE": "Fantasy"}'``.

    Raises:
        ValueError: no such setting, or ``text`` is not of its type (the
            message names the setting and what it takes).
    """
    fields = attrs.fields_dict(Settings)
    if name not in fields:
        known = ", ".join(sorted(fields))
        raise ValueError(f"unknown setting {name!r}; known settings: {known}")
    kind = _FIELD_TYPES[name]
    try:
        value = _parse_as(kind, text.strip())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name}: {exc}") from None
    return name, value


def _parse_as(kind: Any, text: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        inner = [arg for arg in args if arg is not type(None)]
        if text.lower() in ("", "none", "null", "off"):
            return None
        return _parse_as(inner[0], text)
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"takes true or false, not {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"takes a number ({kind.__name__}), not {text!r}") from None
    if kind is str:
        return text
    if kind is Path:
        if not text:
            raise ValueError("takes a path, not nothing")
        return Path(text)
    if origin is tuple:
        item = args[0] if args else str
        if typing.get_origin(item) is tuple:  # structured: JSON pairs
            try:
                return _pairs(json.loads(text))
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(
                    "takes JSON: an object or a list of [name, value] pairs, "
                    f'e.g. {{"GENRE": "Fantasy"}} ({exc})'
                ) from None
        parts = [part.strip() for part in text.split(",") if part.strip()]
        return tuple(_parse_as(item, part) for part in parts)
    raise ValueError(f"cannot be set from text (type {kind!r})")


_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Settings)

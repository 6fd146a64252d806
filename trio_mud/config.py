"""Where each setting comes from: defaults, a TOML file, the environment, the command line.

Later sources win: a setting's default, then the configuration file
(``--config FILE``, else ``<data-dir>/trio_mud.toml`` when it exists), then
an environment variable ``TRIO_MUD_<NAME>`` (``TRIO_MUD_MAX_CHAR_LIMIT``),
then the command line. The file holds settings by their names at the top
level::

    server_name = "Dark Harbour"
    telnet_ports = [4000, 4010]
    idle_timeout = 1800
    mssp_extra = { GENRE = "Fantasy", STATUS = "Live" }
    websocket_port = "none"          # off ("none" unsets an optional setting)

Environment variables are written as on the command line (``--set``):
comma-separated lists, ``true``/``false``, ``none``, JSON for ``mssp_extra``.

Error handling:
    :func:`load` raises :class:`ConfigError` naming the setting and where its
    value came from (the file and key, or the variable): an unknown key, a
    value of the wrong type, a value out of range, a file that is not TOML.
"""

from __future__ import annotations

import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from .settings import Settings, _pairs, parse_setting

__all__ = ["CONFIG_NAME", "ENV_PREFIX", "ConfigError", "Configured", "load", "render"]

#: The configuration file looked for in the data directory.
CONFIG_NAME = "trio_mud.toml"
#: Environment variables ``TRIO_MUD_<SETTING NAME>`` set settings.
ENV_PREFIX = "TRIO_MUD_"

#: Settings a running server cannot take up (SIGHUP says they need a restart).
FIXED_WHILE_RUNNING = frozenset(
    {
        "telnet_interfaces",
        "telnet_ports",
        "ssl_ports",
        "ssh_ports",
        "ssh_host_key",
        "websocket_port",
        "web_port",
        "web_tls",
        "metrics_port",
        "data_dir",
        "session_sync_attrs",
        "inbound_queue_size",
        "log_format",
        "log_file",
        "log_file_max_bytes",
        "log_file_backups",
    }
)

_FIELDS = attrs.fields_dict(Settings)
_TYPES: dict[str, Any] = typing.get_type_hints(Settings)


class ConfigError(Exception):
    """A setting cannot be used; the message names it and its source."""


@frozen
class Configured:
    """The settings in force, and where each came from."""

    settings: Settings
    #: Setting name -> "default", "file PATH", "environment VAR" or "command line".
    sources: dict[str, str]
    #: The configuration file read, if any.
    file: Path | None = None


def load(
    command_line: Mapping[str, Any],
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Configured:
    """The settings from every source, checked one by one.

    ``command_line``: values already of their setting's type (the options
    given, nothing for those left out).

    Raises:
        ConfigError: a value from some source cannot be used.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(_FIELDS, "default")

    from_environment: dict[str, tuple[Any, str]] = {}
    for name in _FIELDS:
        variable = ENV_PREFIX + name.upper()
        if variable in environ:
            try:
                from_environment[name] = (parse_setting(name, environ[variable])[1], variable)
            except ValueError as exc:
                raise ConfigError(f"environment variable {variable}: {exc}") from None

    # The data directory decides where the file is looked for.
    data_dir = Path(
        command_line.get("data_dir")
        or from_environment.get("data_dir", (Settings().data_dir, ""))[0]
    )
    file = config_file
    if file is None and (data_dir / CONFIG_NAME).is_file():
        file = data_dir / CONFIG_NAME
    if file is not None:
        for name, value in _read_file(file).items():
            values[name] = value
            sources[name] = f"file {file}"
    for name, (value, variable) in from_environment.items():
        values[name] = value
        sources[name] = f"environment {variable}"
    for name, value in command_line.items():
        values[name] = value
        sources[name] = "command line"

    defaults = Settings()
    for name, value in values.items():
        try:
            attrs.evolve(defaults, **{name: value})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{_where(sources[name], name)}: {exc}") from None
    try:
        settings = Settings(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    return Configured(settings, sources, file)


def _where(source: str, name: str) -> str:
    if source.startswith("file "):
        return f"{source[5:]}: key {name}"
    if source.startswith("environment "):
        return f"environment variable {source[12:]}"
    return f"setting {name}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values = {}
    for name, value in table.items():
        if name not in _FIELDS:
            close = [known for known in _FIELDS if known.startswith(name[:4])][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{path}: key {name}: no such setting{hint}")
        try:
            values[name] = _from_toml(_TYPES[name], value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: key {name}: {exc}") from None
    return values


def _from_toml(kind: Any, value: Any) -> Any:
    """``value`` as read from TOML, checked against (and turned into) ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is False or (isinstance(value, str) and value.lower() in ("none", "")):
            return None
        inner = [arg for arg in args if arg is not type(None)]
        return _from_toml(inner[0], value)
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"takes true or false, not {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"takes a whole number, not {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"takes a number, not {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"takes a string, not {value!r}")
        return value
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise TypeError(f"takes a path (a string), not {value!r}")
        return Path(value)
    if origin is tuple:
        item = args[0] if args else str
        if typing.get_origin(item) is tuple:  # pairs: a table or [[name, value], ...]
            try:
                return _pairs(value)
            except (ValueError, TypeError, AttributeError) as exc:
                raise TypeError(f"takes a table or a list of [name, value] pairs ({exc})") from None
        items = value if isinstance(value, list) else [value]
        return tuple(_from_toml(item, element) for element in items)
    raise TypeError(f"cannot be set in a file (type {kind!r})")


def render(configured: Configured) -> str:
    """The settings in force as TOML, each with its source (``--print-config``)."""
    lines = ["# trio_mud settings in force: value, then where it came from"]
    for name in sorted(_FIELDS):
        value = getattr(configured.settings, name)
        source = configured.sources[name]
        if value is None:
            lines.append(f'{name} = "none"  # {source}')
        else:
            lines.append(f"{name} = {_to_toml(value)}  # {source}")
    return "\n".join(lines)


def _to_toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        # JSON's string escapes are TOML's (DEL aside, which TOML wants escaped).
        return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, tuple):
        return "[" + ", ".join(_to_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def changes(old: Settings, new: Settings) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """What differs between ``old`` and ``new``: the settings a running
    server takes up (name -> (old, new)), and those that need a restart."""
    live: dict[str, tuple[Any, Any]] = {}
    fixed: list[str] = []
    for name in _FIELDS:
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            if name in FIXED_WHILE_RUNNING:
                fixed.append(name)
            else:
                live[name] = (before, after)
    return live, fixed


def merge_live(old: Settings, new: Settings) -> Settings:
    """``new``, except for what a running server cannot change (kept from ``old``)."""
    return attrs.evolve(new, **{name: getattr(old, name) for name in FIXED_WHILE_RUNNING})

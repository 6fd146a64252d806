"""Running it for real: the configuration file, the launcher's commands, the
data directory's lock, JSON logs and backups, driven as an operator would."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from trio_mud import Server
from trio_mud.config import ConfigError, load, render
from trio_mud.control import LOCK_NAME
from trio_mud.settings import Settings

from .helpers import WAIT, Client, login, make_settings, start_server
from .test_cli import CliServer, one_clear_line, trio_mud


def launcher(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_mud", *arguments],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )


# -- the configuration file --------------------------------------------------------------


def test_file_environment_and_command_line_in_that_order(tmp_path: Path) -> None:
    (tmp_path / "trio_mud.toml").write_text(
        'server_name = "From File"\nidle_timeout = 1800\ntelnet_ports = [4100, 4101]\n'
        'max_command_rate = 10\nmssp_extra = { GENRE = "Fantasy" }\n'
        'websocket_port = "none"\n'
    )
    environ = {"TRIO_MUD_IDLE_TIMEOUT": "900", "TRIO_MUD_MAX_CHAR_LIMIT": "500"}
    configured = load({"data_dir": tmp_path, "max_char_limit": 100}, environ=environ)
    settings = configured.settings
    assert settings.server_name == "From File"  # file
    assert settings.telnet_ports == (4100, 4101) and settings.max_command_rate == 10.0
    assert settings.mssp_extra == (("GENRE", "Fantasy"),) and settings.websocket_port is None
    assert settings.idle_timeout == 900  # environment over file
    assert settings.max_char_limit == 100  # command line over environment
    sources = configured.sources
    assert sources["server_name"] == f"file {tmp_path / 'trio_mud.toml'}"
    assert sources["idle_timeout"] == "environment TRIO_MUD_IDLE_TIMEOUT"
    assert sources["max_char_limit"] == "command line"
    assert sources["mccp"] == "default"
    # What --print-config prints is a TOML file that loads back the same.
    printed = tmp_path / "printed.toml"
    printed.write_text(render(configured))
    again = load({}, config_file=printed, environ={}).settings
    assert again == settings


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("max_char_limt = 5\n", ["key max_char_limt", "no such setting", "max_char_limit"]),
        ('idle_timeout = "soon"\n', ["key idle_timeout", "takes a number"]),
        ("telnet_ports = [70000]\n", ["key telnet_ports", "70000 is not a TCP port"]),
        ("max_connections = -1\n", ["key max_connections", "must be positive"]),
        ("mccp = 1\n", ["key mccp", "true or false"]),
        ("log_level = 'LOUD'\n", ["key log_level", "LOUD"]),
        ("server_name = \n", ["not valid TOML"]),
        ("game_prompt = '{mana} > '\n", ["key game_prompt", "may use {hp}"]),
    ],
)
def test_every_kind_of_bad_value_names_the_key_and_the_file(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    config = tmp_path / "game.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load({}, config_file=config, environ={})
    for needle in [str(config), *needles]:
        assert needle in str(caught.value)
    # The command line stops with that line and status 2, starting nothing.
    result = trio_mud("--config", str(config), "--data-dir", str(tmp_path / "data"))
    one_clear_line(result, 2, str(config), needles[0])
    assert not (tmp_path / "data" / LOCK_NAME).exists()


def test_bad_environment_values_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TRIO_MUD_MAX_CHAR_LIMIT.*takes a number"):
        load({}, environ={"TRIO_MUD_MAX_CHAR_LIMIT": "lots"})
    env = {**os.environ, "TRIO_MUD_WRITE_TIMEOUT": "-3"}
    result = launcher("--data-dir", str(tmp_path), "--print-config", env=env)
    one_clear_line(result, 2, "TRIO_MUD_WRITE_TIMEOUT", "must be positive")


def test_print_config_shows_each_value_and_its_source(tmp_path: Path) -> None:
    (tmp_path / "trio_mud.toml").write_text('server_name = "Harbour"\n')
    env = {**os.environ, "TRIO_MUD_IDLE_TIMEOUT": "60"}
    result = launcher("--data-dir", str(tmp_path), "--print-config", "--telnet-port", "4444",
                      env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f'server_name = "Harbour"  # file {tmp_path / "trio_mud.toml"}' in lines
    assert "idle_timeout = 60.0  # environment TRIO_MUD_IDLE_TIMEOUT" in lines
    assert "telnet_ports = [4444]  # command line" in lines
    assert "mccp = true  # default" in lines


# -- start, stop, reload, status, the lock ------------------------------------------------


async def test_start_status_reload_stop_against_a_running_server(tmp_path: Path) -> None:
    (tmp_path / "trio_mud.toml").write_text('command_rate_warning = "Slow down."\n')
    async with trio.open_nursery() as nursery:
        server = await CliServer.start(nursery, tmp_path, extra=["--embedded"])
        port = await server.telnet_port()
        player = await login(port, "Ann")

        status = await trio.to_thread.run_sync(launcher, "status", "--data-dir", str(tmp_path))
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["pid"] == server.process.pid and report["sessions"] == 1
        assert report["logged_in"] == 1 and report["by_protocol"] == {"telnet": 1}
        assert report["uptime"] >= 0 and report["last_reload"] is None

        # A second server on the same directory is refused, naming the first.
        second = await trio.to_thread.run_sync(
            launcher, "--data-dir", str(tmp_path), "--telnet-port", "0", "--no-web"
        )
        assert second.returncode == 1
        assert f"another trio_mud (pid {server.process.pid})" in second.stderr

        # reload: the settings file is read again; players stay.
        (tmp_path / "trio_mud.toml").write_text('command_rate_warning = "Easy there."\n')
        reloaded = await trio.to_thread.run_sync(launcher, "reload", "--data-dir", str(tmp_path))
        assert reloaded.returncode == 0 and "reloaded" in reloaded.stdout, reloaded.stderr
        report = json.loads(
            (await trio.to_thread.run_sync(launcher, "status", "--data-dir", str(tmp_path))).stdout
        )
        assert report["last_reload"]["error"] is None and report["reloads"] == 1
        await player.command("look", "Exits:")

        stopped = await trio.to_thread.run_sync(launcher, "stop", "--data-dir", str(tmp_path))
        assert stopped.returncode == 0, stopped.stderr
        assert await server.exit_status() == 0
        assert "setting command_rate_warning: 'Slow down.' -> 'Easy there.'" in server.log.decode()
        assert "The server is shutting down." in "\n".join(await player.read_until_closed())

    gone = launcher("status", "--data-dir", str(tmp_path))
    assert gone.returncode == 3 and "no trio_mud is running" in gone.stderr


async def test_a_stale_lock_from_a_crashed_server_is_taken_over(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        crashed = await CliServer.start(nursery, tmp_path)
        await crashed.telnet_port()
        crashed.process.send_signal(signal.SIGKILL)  # no clean-up at all
        await crashed.exit_status()
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(crashed.process.pid)
        server = await CliServer.start(nursery, tmp_path)
        await server.telnet_port()
        assert f"took over the data directory from pid {crashed.process.pid}" in server.log.decode()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0


def test_commands_without_a_server_say_so_with_status_3(tmp_path: Path) -> None:
    for command in ("status", "reload", "stop"):
        result = launcher(command, "--data-dir", str(tmp_path))
        assert result.returncode == 3 and "no trio_mud is running" in result.stderr


# -- SIGHUP re-reads settings ---------------------------------------------------------------


async def test_a_reload_applies_live_settings_and_keeps_fixed_ones(tmp_path: Path) -> None:
    config = tmp_path / "game.toml"
    config.write_text("max_output_queue = 1024\ntelnet_ports = [0]\n")

    def reconfigure() -> Settings:
        return load({"data_dir": tmp_path}, config_file=config, environ={}).settings

    settings = make_settings(tmp_path)
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(settings, reconfigure=reconfigure).run)
        config.write_text("max_output_queue = 77\ntelnet_ports = [4999]\n")
        assert await server.reload() is None
        assert server.portal.settings.max_output_queue == 77
        assert server.portal.settings.telnet_ports == (0,)  # takes a restart
        player = await login(server.telnet_port, "Bea")
        assert player.stream is not None
        assert (
            server.portal.connections[max(server.portal.connections)].settings.max_output_queue
            == 77
        )
        config.write_text("max_output_queue = 'many'\n")
        error = await server.reload()
        assert error is not None and "key max_output_queue" in error
        assert server.portal.settings.max_output_queue == 77  # unchanged
        nursery.cancel_scope.cancel()


# -- logs ---------------------------------------------------------------------------------


async def test_json_logs_of_a_whole_session_at_debug_never_hold_a_password(
    tmp_path: Path,
) -> None:
    secret = "hunter2-but-longer"
    log_file = tmp_path / "logs" / "trio_mud.log"
    async with trio.open_nursery() as nursery:
        server = await CliServer.start(
            nursery, tmp_path, level="DEBUG",
            extra=["--log-format", "json", "--log-file", str(log_file)],
        )  # fmt: skip
        port = await _port_from_log(log_file)
        player = await login(port, "Cleo", secret)
        await player.send_line(f"connect Cleo {secret}")
        await player.command("say hello", "You say")
        await player.send_line("quit")
        await player.read_until_closed()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0
    text = log_file.read_text()
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert secret not in text
    assert {"time", "level", "logger", "sessid", "address", "message"} <= set(records[0])
    server_records = [r for r in records if "server_pid" in r]
    assert any(r["logger"] == "trio_mud.handler" and r["level"] == "DEBUG" for r in server_records)
    connected = [r for r in records if "telnet connection from" in r["message"]]
    assert connected and connected[0]["sessid"] == 1 and connected[0]["address"] == "127.0.0.1"
    assert any(r["sessid"] == 1 and r["logger"] == "trio_mud.game" for r in server_records)


async def _port_from_log(log_file: Path) -> int:
    with trio.fail_after(WAIT):
        while True:
            if await trio.Path(log_file).exists():
                for line in (await trio.Path(log_file).read_text()).splitlines():
                    message = json.loads(line)["message"]
                    if message.startswith("telnet listening on 127.0.0.1 port "):
                        return int(message.rsplit(" ", 1)[1])
            await trio.sleep(0.05)


def test_the_log_file_rotates_by_size(tmp_path: Path) -> None:
    from trio_mud import logs

    log_file = tmp_path / "rotating.log"
    settings = make_settings(tmp_path, log_file=log_file, log_file_max_bytes=2000,
                             log_file_backups=2)  # fmt: skip
    handler = logs.configure(settings)
    try:
        import logging

        for n in range(200):
            logging.getLogger("trio_mud.test").info("line %d of the rotation test", n)
    finally:
        handler.close()
        logs.configure(make_settings(tmp_path))
    assert log_file.exists() and (tmp_path / "rotating.log.1").exists()
    assert (tmp_path / "rotating.log.2").exists() and not (tmp_path / "rotating.log.3").exists()
    assert log_file.stat().st_size <= 2000


# -- backups --------------------------------------------------------------------------------


async def test_a_backup_taken_under_load_passes_integrity_check(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        stop = trio.Event()

        async def busy(name: str) -> None:
            player = await login(server.telnet_port, name)
            n = 0
            while not stop.is_set():
                await player.command("north" if n % 2 else "south", "Exits:")
                n += 1

        for name in ("Dax", "Eli", "Fay"):
            nursery.start_soon(busy, name)
        await trio.lowlevel.checkpoint()
        copies = []
        for n in range(3):
            destination = tmp_path / f"copy-{n}.sqlite3"
            result = await trio.to_thread.run_sync(
                launcher, "backup", str(destination), "--data-dir", str(tmp_path / "data")
            )
            assert result.returncode == 0, result.stderr
            copies.append(destination)
        stop.set()
        nursery.cancel_scope.cancel()
    for copy in copies:
        with sqlite3.connect(copy) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            names = {row[0] for row in db.execute("SELECT name FROM accounts")}
            assert names <= {"Dax", "Eli", "Fay"}
    assert not list(await trio.Path(tmp_path).glob("*.partial"))


def test_backup_of_nothing_is_one_line(tmp_path: Path) -> None:
    result = launcher("backup", str(tmp_path / "copy.sqlite3"), "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "there is no database" in result.stderr


# -- metrics ----------------------------------------------------------------------------------


async def scrape(
    port: int, *, source: str = "127.0.0.1", openmetrics: bool = False
) -> tuple[int, str]:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    accept = b"Accept: application/openmetrics-text; version=1.0.0\r\n" if openmetrics else b""
    await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n" + accept + b"\r\n")
    answer = b""
    with trio.fail_after(WAIT):
        while chunk := await stream.receive_some():
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_parse_and_move_after_a_login(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, metrics_port=0, metrics_allowed_ips=("127.0.0.1",))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, settings)
        status, before_text = await scrape(server.web_port)
        assert status == 200
        before = samples(before_text)
        assert before[("trio_mud_handler_live", ())] == 1
        assert ("trio_mud_sessions", (("protocol", "telnet"), ("state", "logged_in"))) not in before

        player = await login(server.telnet_port, "Ann")
        await player.command("look", "Exits:")
        await player.send_line("quit")
        await player.read_until_closed()
        guesser = await login(server.telnet_port, "Bob")
        await guesser.command("quit", "Goodbye")
        wrong = await Client.connect(server.telnet_port)
        await wrong.welcome()
        await wrong.command("connect Ann not-the-password", "Incorrect")

        # The game counts the failure before it answers, on the same link: by
        # the time "Incorrect" arrived, the portal had the count.
        after = samples((await scrape(server.metrics_port))[1])
        assert after[("trio_mud_failed_logins_total", ())] == 1
        sessions = ("trio_mud_sessions", (("protocol", "telnet"), ("state", "connection_screen")))
        assert after[sessions] == 1
        assert after[("trio_mud_connections_accepted_total", (("protocol", "telnet"),))] == 3
        assert after[("trio_mud_commands_total", ())] >= 4
        latency = after[("trio_mud_command_latency_seconds_count", ())]
        assert latency == after[("trio_mud_commands_total", ())]
        wire = ("trio_mud_sent_bytes_total", (("protocol", "telnet"), ("stage", "wire")))
        plain = ("trio_mud_sent_bytes_total", (("protocol", "telnet"), ("stage", "uncompressed")))
        assert after[plain] >= after[wire] > before.get(wire, 0)

        assert await server.reload() is None
        reloaded = samples((await scrape(server.web_port))[1])
        assert reloaded[("trio_mud_reloads_total", (("outcome", "ok"),))] == 1
        assert reloaded[("trio_mud_reload_duration_seconds_count", ())] == 1

        # The OpenMetrics form parses with its own parser too.
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        status, text = await scrape(server.web_port, openmetrics=True)
        assert status == 200 and text.rstrip().endswith("# EOF")
        assert any(f.name == "trio_mud_sessions" for f in text_string_to_metric_families(text))
        # Anyone not in metrics_allowed_ips is refused.
        assert (await scrape(server.web_port, source="127.0.0.2"))[0] == 403
        nursery.cancel_scope.cancel()

"""``python -m trio_mud`` as an operator runs it, in a child process."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mud.game import Store
from trio_mud.settings import parse_setting

from .helpers import WAIT, Client, MudClient

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (DEBUG|INFO) ")


def test_help_lists_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mud", "--help"], capture_output=True, text=True, check=True
    )
    for option in ["--telnet-port", "--interface", "--data-dir", "--log-level"]:
        assert option in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--telnet-port", "70000"], "is not a TCP port"),
        (["--set", "max_output_queue=0"], "max_output_queue must be positive"),
        (["--set", "max_output_queue=lots"], "max_output_queue: takes a number (int)"),
        (["--set", "no_such_thing=1"], "unknown setting 'no_such_thing'"),
        (["--set", "max_output_queue"], "--set takes NAME=VALUE"),
    ],
)
def test_bad_arguments_give_a_clear_message(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mud", "--data-dir", str(tmp_path), *arguments],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_parse_setting_types() -> None:
    assert parse_setting("max_command_rate", "2.5") == ("max_command_rate", 2.5)
    assert parse_setting("telnet_ports", "4000, 4001") == ("telnet_ports", (4000, 4001))
    assert parse_setting("encodings", "utf-8,latin-1") == ("encodings", ("utf-8", "latin-1"))
    assert parse_setting("data_dir", "/srv/mud") == ("data_dir", Path("/srv/mud"))


def test_make_admin(tmp_path: Path) -> None:
    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trio_mud", "--data-dir", str(tmp_path), *arguments],
            capture_output=True,
            text=True,
        )

    missing = run("--make-admin", "Nobody")
    assert missing.returncode == 1 and "no account named 'Nobody'" in missing.stderr

    async def create() -> None:
        async with Store.open(tmp_path / "trio_mud.sqlite3") as store:
            await store.create_account("Ann", "not a real hash", "square")

    trio.run(create)
    made = run("--make-admin", "ann")
    assert made.returncode == 0 and "ann is now an admin" in made.stdout
    assert run("--revoke-admin", "Ann").returncode == 0

    async def check() -> bool:
        async with Store.open(tmp_path / "trio_mud.sqlite3") as store:
            account = await store.find_account("Ann")
        assert account is not None
        return account.is_admin

    assert trio.run(check) is False


def trio_mud(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_mud", "--no-web", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_clear_line(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> str:
    """The run failed with ``status`` and a single stderr line holding every needle."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    # Log records at INFO (what the server chose at start) may come first.
    lines = [line for line in result.stderr.strip().splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr  # one line, no noise
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_a_port_in_use_is_one_line_naming_the_option(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = trio_mud("--telnet-port", str(port), "--data-dir", str(tmp_path))
    one_clear_line(result, 1, f"port {port}", "in use", "--telnet-port")


def test_an_unusable_ssh_host_key_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "host_key"
    key.write_text("not a key")
    result = trio_mud(
        "--telnet-port", "0", "--ssh-port", "0", "--data-dir", str(tmp_path),
        "--set", f"ssh_host_key={key}",
    )  # fmt: skip
    one_clear_line(result, 1, "cannot use the SSH host key", str(key))


def test_an_address_that_is_not_ours_is_one_line(tmp_path: Path) -> None:
    result = trio_mud("--interface", "192.0.2.1", "--telnet-port", "0", "--data-dir", str(tmp_path))
    one_clear_line(result, 1, "192.0.2.1", "not an address of this machine", "--interface")


def test_a_data_dir_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    one_clear_line(trio_mud("--data-dir", str(a_file)), 2, "not a directory", "--data-dir")
    under_a_file = a_file / "data"
    one_clear_line(trio_mud("--data-dir", str(under_a_file)), 2, str(under_a_file), "--data-dir")


def test_a_damaged_database_is_found_at_start(tmp_path: Path) -> None:
    (tmp_path / "trio_mud.sqlite3").write_bytes(b"this is not a database, it is a mistake" * 100)
    result = trio_mud("--data-dir", str(tmp_path))
    one_clear_line(result, 2, "damaged or not a database", "backup")
    # A real database with damaged pages is caught too (PRAGMA quick_check).
    database = tmp_path / "trio_mud.sqlite3"
    database.unlink()
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [("y" * 500,)] * 200)
        db.execute("CREATE INDEX t_x ON t(x)")
    db.close()
    data = bytearray(database.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = b"\xaa" * 200  # scribble over a page
    database.write_bytes(bytes(data))
    one_clear_line(trio_mud("--data-dir", str(tmp_path)), 2, str(database), "damaged")


@pytest.mark.parametrize(
    ("world", "needle"),
    [
        ([], '"rooms" and "start"'),
        ({"rooms": [], "start": "a"}, '"rooms" must be a list'),
        ({"rooms": [{"key": "a", "num": "one", "name": "A", "desc": ""}], "start": "a"},
         'rooms[0] (\'a\'): "num" must be a whole number'),
        ({"rooms": [{"key": "a", "num": 1, "name": "A"}], "start": "a"}, '"desc" must be'),
        ({"rooms": [{"key": "a", "num": 1, "name": "A", "desc": "", "exits": ["north"]}],
          "start": "a"}, '"exits" must map'),
        ({"rooms": [{"key": "a", "num": 1, "name": "A", "desc": ""},
                    {"key": "a", "num": 2, "name": "B", "desc": ""}], "start": "a"},
         "the room key 'a' is used twice"),
        ({"rooms": [{"key": "a", "num": 1, "name": "A", "desc": ""}], "start": "b"},
         "start room 'b' does not exist"),
    ],
)  # fmt: skip
def test_a_wrong_world_file_is_one_line_saying_where(
    tmp_path: Path, world: Any, needle: str
) -> None:
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world))
    one_clear_line(trio_mud("--world", str(path), "--data-dir", str(tmp_path)), 2, needle)


def test_duplicate_keys_in_a_world_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text(
        '{"start": "a", "rooms": [{"key": "a", "num": 1, "name": "A", "desc": "", "num": 2}]}'
    )
    result = trio_mud("--world", str(path), "--data-dir", str(tmp_path))
    one_clear_line(result, 2, "'num' appears twice")


def test_structured_settings_are_parsed_or_refused_at_start(tmp_path: Path) -> None:
    assert parse_setting("mssp_extra", '{"GENRE": "Fantasy", "STATUS": "Live"}') == (
        "mssp_extra",
        (("GENRE", "Fantasy"), ("STATUS", "Live")),
    )
    assert parse_setting("mssp_extra", '[["GENRE", "Fantasy"]]')[1] == (("GENRE", "Fantasy"),)
    for bad in ("GENRE=Fantasy", "[1, 2]", '{"a": 1'):
        result = trio_mud("--data-dir", str(tmp_path), "--set", f"mssp_extra={bad}")
        one_clear_line(result, 2, "mssp_extra", "takes JSON")


async def test_mssp_extra_from_the_command_line_reaches_crawlers(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await CliServer.start(
            nursery, tmp_path, extra=["--set", 'mssp_extra={"GENRE": "Fantasy"}']
        )
        crawler = await Client.connect(await server.telnet_port())
        await crawler.welcome()
        reply = await crawler.command("MSSP-REQUEST", "MSSP-REPLY-END")
        assert "GENRE\tFantasy" in reply
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0


async def test_log_level_reaches_the_server_process(tmp_path: Path) -> None:
    secret = "p4ssw0rd-of-Ann"
    async with trio.open_nursery() as nursery:
        server = await CliServer.start(nursery, tmp_path, level="DEBUG")
        port = await server.telnet_port()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        mud = MudClient(stream)
        await mud.welcome()
        await mud.flush()
        await mud.command(f"create Ann {secret}", "Exits:")
        await mud.send_gmcp("Some.Unknown.Package", {"x": 1})
        await mud.stream.send_all(f"quit\r\nconnect Ann {secret}\r\n".encode())
        await mud.read_until_closed()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0
    assert re.search(rb"\[server \d+\] DEBUG trio_mud\.handler: ", server.log), server.log
    assert secret.encode() not in server.log


class CliServer:
    """``python -m trio_mud`` in a child process, its stderr log collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = b""

    @classmethod
    async def start(
        cls,
        nursery: trio.Nursery,
        data_dir: Path,
        *,
        level: str = "INFO",
        extra: Sequence[str] = (),
        **popen: Any,
    ) -> CliServer:
        command = [sys.executable, "-m", "trio_mud", "--no-web", "--telnet-port", "0",
                   "--data-dir", str(data_dir), "--log-level", level, *extra]  # fmt: skip
        process: trio.Process = await nursery.start(
            partial(trio.run_process, command, stderr=subprocess.PIPE, check=False, **popen)
        )
        return cls(process)

    async def telnet_port(self) -> int:
        assert self.process.stderr is not None
        with trio.fail_after(WAIT):
            while not (match := LISTENING.search(self.log)):
                chunk = await self.process.stderr.receive_some()
                assert chunk, self.log
                self.log += chunk
        return int(match.group(1))

    async def exit_status(self) -> int:
        """Read the rest of the log; the exit status."""
        assert self.process.stderr is not None
        with trio.fail_after(WAIT):
            while chunk := await self.process.stderr.receive_some():
                self.log += chunk
            return await self.process.wait()


async def test_play_then_sigterm_says_goodbye_and_exits(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await CliServer.start(nursery, tmp_path)
        client = await Client.connect(await server.telnet_port())
        await client.welcome()
        await client.command("create Ann correct horse", "Exits:")
        await client.command("north", "North Gate")
        # SIGHUP reloads the game in a fresh server process; nobody drops.
        server.process.send_signal(signal.SIGHUP)
        await client.read_until("Server restarting...")
        await client.read_until("... Server restarted.")
        assert (await client.command("look", "Exits:"))[0] == "North Gate"
        server.process.send_signal(signal.SIGTERM)
        farewell = await client.read_until_closed()
        # After the game's prompt (a bare client shows what follows on its line).
        assert farewell[-1].endswith("The server is shutting down. Goodbye!")
        assert await server.exit_status() == 0
    assert b"Traceback" not in server.log
    assert b"stopped" in server.log


async def test_ctrl_c_reaches_the_whole_process_group_and_all_exit_cleanly(
    tmp_path: Path,
) -> None:
    """A terminal's Ctrl-C signals every process in its foreground group."""
    async with trio.open_nursery() as nursery:
        # Its own process group, like a shell job.
        server = await CliServer.start(nursery, tmp_path, start_new_session=True)
        client = await Client.connect(await server.telnet_port())
        await client.welcome()
        os.killpg(server.process.pid, signal.SIGINT)
        assert "The server is shutting down. Goodbye!" in await client.read_until_closed()
        assert await server.exit_status() == 0
    assert b"Traceback" not in server.log and b"KeyboardInterrupt" not in server.log
    assert re.search(rb"server process \d+ exited \(0\)", server.log)


def _file_limit_200() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))


async def test_max_connections_follows_the_open_file_limit(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await CliServer.start(nursery, tmp_path, preexec_fn=_file_limit_200)
        await server.telnet_port()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0
    assert b"max_connections: 136 (the open-file limit 200, less 64)" in server.log
    async with trio.open_nursery() as nursery:
        server = await CliServer.start(
            nursery, tmp_path, extra=["--max-connections", "5000"], preexec_fn=_file_limit_200
        )
        await server.telnet_port()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0
    assert b"max_connections 5000 needs 5064 open files" in server.log
    assert b"serving at most 136" in server.log

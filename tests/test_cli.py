"""``python -m trio_mud`` as an operator runs it, in a child process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mud.game import Store
from trio_mud.settings import parse_setting

from .helpers import WAIT, Client

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")


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


class CliServer:
    """``python -m trio_mud`` in a child process, its stderr log collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = b""

    @classmethod
    async def start(cls, nursery: trio.Nursery, data_dir: Path, **popen: Any) -> CliServer:
        command = [sys.executable, "-m", "trio_mud", "--no-web", "--telnet-port", "0",
                   "--data-dir", str(data_dir), "--log-level", "INFO"]  # fmt: skip
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
        assert "The server is shutting down. Goodbye!" in farewell
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

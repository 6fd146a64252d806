"""``python -m trio_mud`` as an operator runs it, in a child process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import trio

from .helpers import WAIT, Client

LISTENING = re.compile(rb"telnet listening on 127\.0\.0\.1 port (\d+)")


def test_help_lists_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mud", "--help"], capture_output=True, text=True, check=True
    )
    for option in ["--telnet-port", "--interface", "--data-dir", "--log-level"]:
        assert option in result.stdout


def test_bad_arguments_give_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mud", "--telnet-port", "70000", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "is not a TCP port" in result.stderr
    assert "Traceback" not in result.stderr


async def test_play_then_sigterm_says_goodbye_and_exits(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "trio_mud",
        "--telnet-port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--log-level",
        "INFO",
    ]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            lambda task_status: trio.run_process(
                command, stderr=subprocess.PIPE, check=False, task_status=task_status
            )
        )
        assert process.stderr is not None
        log = b""
        with trio.fail_after(WAIT):
            while not (match := LISTENING.search(log)):
                chunk = await process.stderr.receive_some()
                assert chunk, log
                log += chunk
        client = await Client.connect(int(match.group(1)))
        await client.welcome()
        await client.command("create Ann correct horse", "Exits:")
        process.send_signal(signal.SIGTERM)
        farewell = await client.read_until_closed()
        assert "The server is shutting down. Goodbye!" in farewell
        with trio.fail_after(WAIT):
            while chunk := await process.stderr.receive_some():
                log += chunk
            assert await process.wait() == 0
    assert b"Traceback" not in log
    assert b"stopped" in log

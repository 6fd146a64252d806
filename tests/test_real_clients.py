"""Real clients against a running server: TinTin++, plain telnet and OpenSSH.

Each client runs in its own tmux server (a private socket), which gives it a
real terminal of a known size that the test can resize, type into and read.
The clients are Debian packages (tintin++, telnet, openssh-client, tmux) that .ci/run
installs; where they are missing these tests are skipped, except in CI
(``CI`` set), where a missing client is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mud import Server
from trio_mud.nursery_portal import PortalSession

from .helpers import WAIT, login, make_settings, start_server

TT = shutil.which("tt++") or shutil.which("tt++", path="/usr/games")
TELNET = shutil.which("telnet")
TMUX = shutil.which("tmux")
SSH = shutil.which("ssh")


def need(program: str | None, name: str) -> str:
    if program is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed")
    return program


class Terminal:
    """A program in a tmux window: type into it, read its screen."""

    def __init__(self, tmux: str, socket: str) -> None:
        self.tmux = tmux
        self.socket = socket

    async def run(self, *args: str) -> str:
        result = await trio.run_process(
            [self.tmux, "-L", self.socket, *args], capture_stdout=True, check=True
        )
        return result.stdout.decode("utf-8", errors="replace")

    async def type(self, *keys: str) -> None:
        await self.run("send-keys", "-t", "main", *keys)

    async def screen(self) -> str:
        return await self.run("capture-pane", "-p", "-t", "main", "-S", "-200")

    async def resize(self, width: int, height: int) -> None:
        await self.run("resize-window", "-t", "main", "-x", str(width), "-y", str(height))

    async def wait_for_screen(self, text: str) -> str:
        """The screen, once it shows ``text``."""
        return await wait_until(self.screen, lambda screen: text in screen)


async def wait_until(read: Callable[[], Any], ready: Callable[[Any], bool]) -> Any:
    """Poll ``read()`` until ``ready`` says yes.

    An external program gives no event to wait on, so this polls, with a
    deadline; it waits for a condition, never for a fixed time.
    """
    with trio.fail_after(WAIT):
        while True:
            value = read()
            if hasattr(value, "__await__"):
                value = await value
            if ready(value):
                return value
            await trio.sleep(0.02)


@asynccontextmanager
async def terminal(
    command: list[str], width: int = 100, height: int = 30
) -> AsyncIterator[Terminal]:
    tmux = need(TMUX, "tmux")
    socket = f"trio-mud-test-{os.getpid()}-{id(command)}"
    term = Terminal(tmux, socket)
    env = {**os.environ, "TERM": "xterm-256color"}
    await trio.run_process(
        [tmux, "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", "main",
         "-x", str(width), "-y", str(height), *command],
        env=env,
        check=True,
    )  # fmt: skip
    try:
        yield term
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(
                [tmux, "-L", socket, "kill-server"], check=False, stderr=subprocess.DEVNULL
            )


def portal_session(server: Server, ready: Callable[[PortalSession], bool]) -> PortalSession | None:
    for session in server.portal.sessions.values():
        if ready(session):
            return session
    return None


# TinTin++ refuses GMCP unless a script takes it (as its manual shows).
TINTIN_SCRIPT = """\
#event {{IAC WILL GMCP}}
{{
    #send {{\\xFF\\xFD\\xC9\\}};
    #send {{\\xFF\\xFA\\xC9Core.Supports.Set ["Room 1", "Char 1"]\\xFF\\xF0\\}}
}}
#event {{IAC SB GMCP Room.Info IAC SE}} {{#showme {{GMCP-ROOM %1}}}}
#session mud 127.0.0.1 {port}
"""


async def test_tintin(server: Server, tmp_path: Path) -> None:
    tintin = need(TT, "TinTin++ (tt++)")
    script = tmp_path / "client.tin"
    script.write_text(TINTIN_SCRIPT.format(port=server.telnet_port))
    async with terminal([tintin, "-G", str(script)]) as term:
        # The connection screen arrives, through MCCP2, and reads as text.
        await term.wait_for_screen('"look" shows this screen again')
        session = await wait_until(
            lambda: portal_session(server, lambda s: "MTTS" in s.protocol_flags), bool
        )
        flags = session.protocol_flags
        assert flags["CLIENTNAME"] == "TinTin++"
        assert flags["MTTS"] & 271 == 271  # ANSI, VT100, UTF-8, 256 colours, truecolor
        assert flags["TRUECOLOR"] and flags["UTF-8"]
        assert flags["MCCP"] is True
        connection = session.connection
        assert connection is not None and connection.protocol.compressing
        # NAWS, and a resize.
        assert flags["SCREENWIDTH"] == {0: 100} and flags["SCREENHEIGHT"] == {0: 30}
        await term.resize(120, 40)
        await wait_until(lambda: flags.get("SCREENWIDTH"), lambda width: width == {0: 120})
        assert flags["SCREENHEIGHT"] == {0: 40}
        # GMCP from the client: its Core.Supports.Set.
        await wait_until(lambda: flags.get("GMCP_SUPPORTS"), bool)
        assert flags["GMCP_SUPPORTS"] == {"Room": 1, "Char": 1}
        # The password prompt hides the password.
        await term.type("create Tess", "Enter")
        await term.wait_for_screen("Password:")
        await term.type("hidden-words-9", "Enter")
        screen = await term.wait_for_screen("Exits:")
        assert "hidden-words-9" not in screen
        # GMCP from the server: Room.Info, on login and on every move.
        assert 'GMCP-ROOM Room.Info {"num":1,"name":"Town Square"' in screen
        await term.type("north", "Enter")
        await term.wait_for_screen('GMCP-ROOM Room.Info {"num":6,"name":"North Gate"')
        await term.type("say Ünïcode wörks", "Enter")
        await term.wait_for_screen('You say, "Ünïcode wörks"')


async def test_plain_telnet(server: Server) -> None:
    telnet = need(TELNET, "telnet")
    async with terminal([telnet, "127.0.0.1", str(server.telnet_port)]) as term:
        screen = await term.wait_for_screen('"look" shows this screen again')
        await term.type("create Tom", "Enter")
        await term.wait_for_screen("Password:")
        await term.type("secret-sauce-7", "Enter")
        await term.wait_for_screen("Exits:")
        await term.type("say héllo wörld", "Enter")
        screen = await term.wait_for_screen('You say, "héllo wörld"')
        # Line editing is the terminal's own (telnet stays in line mode).
        await term.type("lokk", "BSpace", "BSpace", "ok", "Enter")
        await wait_until(term.screen, lambda s: s.count("Exits:") >= 2)
        screen = await term.screen()
        assert "secret-sauce-7" not in screen
        served = screen.split("Escape character is '^]'.", 1)[1]  # after telnet's banner
        for stray in ("\ufffd", "ÿ", "^", "[0;", "\x1b", "\x00"):
            assert stray not in served, stray


async def test_tintin_password_hidden_after_wrong_password(server: Server, tmp_path: Path) -> None:
    """A second password prompt hides the password too, in TinTin++.

    TinTin++ answers ``WILL ECHO`` with ``DO ECHO`` but never answers
    ``WONT ECHO``; the prompt after a wrong password must still send
    ``WILL ECHO``, or the client shows the password as it is typed.
    """
    tintin = need(TT, "TinTin++ (tt++)")
    client = await login(server.telnet_port, "Tina", "right-answer-5")
    await client.aclose()
    script = tmp_path / "client.tin"
    script.write_text(f"#session mud 127.0.0.1 {server.telnet_port}\n")
    async with terminal([tintin, "-G", str(script)]) as term:
        await term.wait_for_screen('"look" shows this screen again')
        await term.type("connect Tina", "Enter")
        await term.wait_for_screen("Password:")
        await term.type("wrong-guess-3", "Enter")
        await term.wait_for_screen("Incorrect name or password.")
        await term.type("connect Tina", "Enter")
        await wait_until(term.screen, lambda s: s.count("Password:") >= 2)
        await term.type("right-answer-5", "Enter")
        screen = await term.wait_for_screen("Exits:")  # logged in
        # TinTin++ shows nothing of hidden input, not even asterisks; input
        # it echoes stays on the screen after the prompt.
        assert "wrong-guess-3" not in screen
        assert "right-answer-5" not in screen


async def test_plain_telnet_utf8_input(server: Server) -> None:
    """UTF-8 typed into GNU inetutils telnet reaches the server intact.

    In line mode, a BSD-derived telnet that does not send in binary compares
    each typed byte, masked to 7 bits, with the terminal's special
    characters: the 0x9C in a check mark (E2 9C 93) reads as Ctrl-backslash
    (QUIT) and goes out as ``IAC BRK IAC DO TIMING-MARK``.
    """
    telnet = need(TELNET, "telnet")
    observer = await login(server.telnet_port, "Olga")
    async with terminal([telnet, "127.0.0.1", str(server.telnet_port)]) as term:
        await term.wait_for_screen('"look" shows this screen again')
        await term.type("create Tom", "Enter")
        await term.wait_for_screen("Password:")
        await term.type("secret-sauce-7", "Enter")
        await term.wait_for_screen("Exits:")
        await observer.read_until("Tom has entered the game.")
        await term.type("say café ✓", "Enter")
        heard = await observer.read_until("Tom says,")
        assert heard[-1] == 'Tom says, "café ✓"'
        screen = await term.wait_for_screen('You say, "café ✓"')
        assert "\ufffd" not in screen.split("Escape character is '^]'.", 1)[1]
    await observer.aclose()


async def test_tintin_over_tls(nursery: trio.Nursery, tmp_path: Path) -> None:
    """TinTin++'s #ssl against the generated certificate: it plays over TLS."""
    tintin = need(TT, "TinTin++ (tt++)")
    server = await start_server(nursery, make_settings(tmp_path / "data", ssl_ports=(0,)))
    home = tmp_path / "home"  # TinTin++ keeps the certificates it has seen here
    home.mkdir()
    script = tmp_path / "tls.tin"
    script.write_text(f"#ssl mud 127.0.0.1 {server.tls_port}\n")
    async with terminal(["env", f"HOME={home}", tintin, "-G", str(script)]) as term:
        await term.wait_for_screen('"look" shows this screen again')
        session = await wait_until(
            lambda: portal_session(server, lambda s: s.protocol_key == "telnet/ssl"), bool
        )
        await term.type("create Tls", "Enter")
        await term.wait_for_screen("Password:")
        await term.type("hidden-over-tls", "Enter")
        screen = await term.wait_for_screen("Exits:")
        assert "hidden-over-tls" not in screen
        await term.type("say encrypted ünïcode", "Enter")
        await term.wait_for_screen('You say, "encrypted ünïcode"')
        assert session.logged_in


async def test_openssh_logs_in_plays_and_follows_the_window(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """OpenSSH's own client: password login, line editing, a live window size."""
    ssh = need(SSH, "OpenSSH's ssh client")
    server = await start_server(nursery, make_settings(tmp_path, ssh_ports=(0,)))
    await (await login(server.telnet_port, "Tia")).aclose()
    known_hosts = tmp_path / "known_hosts"
    command = [
        "sh", "-c", '"$@"; echo "[ssh exited: $?]"; sleep 60', "ssh",
        ssh, "-p", str(server.ssh_port), "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=accept-new", "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password", "-F", "/dev/null", "tia@127.0.0.1",
    ]  # fmt: skip
    async with terminal(command, width=100, height=30) as term:
        await term.wait_for_screen("password:")
        await term.type("correct horse", "Enter")
        await term.wait_for_screen("Exits:")
        session = await wait_until(
            lambda: portal_session(server, lambda s: s.protocol_key == "ssh"),
            lambda found: found is not None,
        )
        assert session.logged_in and session.protocol_flags["SCREENWIDTH"] == {0: 100}
        assert session.protocol_flags["CLIENTNAME"].startswith("OpenSSH")
        # Keystrokes edited by the server: a typo fixed with Backspace.
        await term.type("say helo", "BSpace", "lo there", "Enter")
        screen = await term.wait_for_screen('You say, "hello there"')
        assert "correct horse" not in screen
        # A new window size reaches the session, as NAWS would.
        await term.resize(132, 40)
        await wait_until(
            lambda: session.protocol_flags.get("SCREENWIDTH"), lambda width: width == {0: 132}
        )
        # Up brings back the last command; Ctrl-D on an empty line leaves.
        await term.type("Up", "Enter")
        await wait_until(term.screen, lambda screen: screen.count('You say, "hello there"') == 2)
        await term.type("C-d")
        screen = await term.wait_for_screen("[ssh exited: 0]")
        assert "Goodbye." in screen
    # The host key was written down once, and is the one the server keeps.
    assert known_hosts.read_text().count("ssh-ed25519") == 1

"""A real browser plays: headless Chromium (Debian's) driven by Playwright.

The server runs as ``python -m trio_mud`` in a child process. The test is
synchronous (Playwright's sync API runs its own loop). Without Chromium or
Playwright it is skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PORTS = re.compile(r"(telnet listening on|websocket listening on|web client on) .*?(\d+)/?$")


def need_browser() -> str:
    missing = None
    if CHROMIUM is None:
        missing = "chromium is not installed"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run must install it")
        pytest.skip(missing)
    assert CHROMIUM is not None
    return CHROMIUM


def start_mud(
    data_dir: Path, ports: dict[str, int] | None = None, *extra: str
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """``python -m trio_mud`` on the given ports (free ones by default)."""
    ports = ports or {"telnet": 0, "ws": 0, "web": 0}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "trio_mud", "--embedded", "--data-dir", str(data_dir),
            "--telnet-port", str(ports["telnet"]), "--websocket-port", str(ports["ws"]),
            "--web-port", str(ports["web"]),
            "--set", "password_hash_time_cost=1", "--set", "password_hash_memory_kib=8192",
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stderr is not None
    bound: dict[str, int] = {}
    names = {
        "telnet listening on": "telnet",
        "websocket listening on": "ws",
        "web client on": "web",
    }
    while len(bound) < 3:
        line = process.stderr.readline()
        assert line, "the server exited before listening"
        if match := PORTS.search(line.strip()):
            bound[names[match.group(1)]] = int(match.group(2))
    threading.Thread(target=process.stderr.read, daemon=True).start()
    return process, bound


@pytest.fixture(autouse=True)
def plain_asyncio() -> Iterator[None]:
    """Playwright's sync API runs an asyncio loop of its own in this thread.

    Once trio-asyncio is imported (the SSH tests import it), a new loop
    outside Trio would be trio-asyncio's (see docs/ssh.md): ask for a plain one.
    """
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    yield
    asyncio.set_event_loop_policy(None)


@pytest.fixture
def mud(tmp_path: Path) -> Iterator[dict[str, int]]:
    """A running server; yields its ports ({"telnet", "ws", "web"})."""
    process, ports = start_mud(tmp_path)
    try:
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_browser_plays_and_player_markup_stays_text(mud: dict[str, int]) -> None:
    chromium = need_browser()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )  # fmt: skip
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(f"http://127.0.0.1:{mud['web']}/")
            output = page.locator("#output")  # the page's CSP allows no eval: locators only
            expect(output).to_contain_text("shows this screen again")
            expect(page.locator("#status")).to_have_text("Connected")
            expect(page.locator("#output")).to_have_attribute("role", "log")
            expect(page.locator("#output")).to_have_attribute("aria-live", "polite")

            page.fill("#command", "create Alice")
            page.press("#command", "Enter")
            expect(page.locator("#command")).to_have_attribute("type", "password")
            page.fill("#command", "correct horse")
            page.press("#command", "Enter")
            expect(output).to_contain_text("Exits:")
            expect(page.locator("#command")).to_have_attribute("type", "text")
            assert "correct horse" not in page.locator("#output").text_content()

            page.fill("#command", "say hello from the browser")
            page.press("#command", "Enter")
            expect(output).to_contain_text('You say, "hello from the browser"')
            page.press("#command", "ArrowUp")  # history
            expect(page.locator("#command")).to_have_value("say hello from the browser")
            page.fill("#command", "connect Alice correct horse")  # already in: refused,
            page.press("#command", "Enter")  # but the echo must not show the password
            expect(output).to_contain_text("> connect Alice ********")
            assert "correct horse" not in (output.text_content() or "")
            # Nor does the up-arrow history give the password back.
            page.press("#command", "ArrowUp")
            expect(page.locator("#command")).to_have_value("connect Alice ")
            page.press("#command", "ArrowUp")
            expect(page.locator("#command")).to_have_value("say hello from the browser")
            page.fill("#command", "")

            # A second player, on telnet, says something full of markup.
            mallory = socket.create_connection(("127.0.0.1", mud["telnet"]))
            mallory.sendall(b"create Mallory correct horse\r\n")
            expect(output).to_contain_text("Mallory has entered the game.")
            attack = '<script>document.title="pwned"</script><img src=x onerror="alert(1)">'
            mallory.sendall(f"say {attack} |rred\r\n".encode())
            expect(output).to_contain_text("Mallory says")
            text = page.locator("#output").text_content() or ""
            assert f'Mallory says, "{attack} red"' in text  # shown as text, exactly
            assert page.locator("#output img").count() == 0
            assert page.locator("#output script").count() == 0
            assert page.title() != "pwned" and dialogs == []
            red = page.locator('#output span:text-is("red")').last
            assert red.evaluate("e => getComputedStyle(e).color") == "rgb(255, 0, 0)"
            mallory.close()

            # Usable on a phone: nothing wider than the screen.
            page.set_viewport_size({"width": 375, "height": 667})
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            expect(page.locator("#command")).to_be_visible()
        finally:
            browser.close()


def test_the_page_reconnects_by_itself(tmp_path: Path) -> None:
    chromium = need_browser()
    from playwright.sync_api import expect, sync_playwright

    process, ports = start_mud(tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{ports['web']}/")
            output, status = page.locator("#output"), page.locator("#status")
            expect(output).to_contain_text("shows this screen again")
            page.fill("#command", "create Alice correct horse")
            page.press("#command", "Enter")
            expect(output).to_contain_text("Exits:")
            # The server goes away: the page says so, and keeps trying.
            process.terminate()
            process.wait(timeout=30)
            expect(status).to_contain_text("Connection lost; retrying", timeout=15_000)
            expect(status).to_have_attribute("data-state", "lost")
            # It comes back on the same ports: the page reconnects on its own.
            process, _ = start_mud(tmp_path, ports)
            expect(status).to_have_text("Connected", timeout=20_000)
            page.fill("#command", "connect Alice correct horse")
            page.press("#command", "Enter")
            expect(output).to_contain_text("Town Square", timeout=10_000)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_browser_plays_over_https_and_wss(tmp_path: Path) -> None:
    """The page over https with the generated certificate; it connects with wss."""
    chromium = need_browser()
    from playwright.sync_api import expect, sync_playwright

    process, ports = start_mud(tmp_path, None, "--set", "web_tls=true")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--ignore-certificate-errors"]
            )
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(f"https://localhost:{ports['web']}/")
            output = page.locator("#output")
            expect(output).to_contain_text("shows this screen again")
            expect(page.locator("#status")).to_have_text("Connected")
            assert sockets and sockets[0].startswith(f"wss://localhost:{ports['ws']}/")
            page.fill("#command", "create Tessa correct horse")
            page.press("#command", "Enter")
            expect(output).to_contain_text("Exits:")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_browser_without_websockets_plays_over_ajax(mud: dict[str, int]) -> None:
    """With window.WebSocket gone before the page loads, it plays over AJAX."""
    chromium = need_browser()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.add_init_script("delete window.WebSocket;")
            page.goto(f"http://127.0.0.1:{mud['web']}/")
            output, status = page.locator("#output"), page.locator("#status")
            expect(output).to_contain_text("shows this screen again")
            expect(status).to_contain_text("AJAX")
            page.fill("#command", "create Polly")
            page.press("#command", "Enter")
            expect(page.locator("#command")).to_have_attribute("type", "password")
            page.fill("#command", "correct horse")
            page.press("#command", "Enter")
            expect(output).to_contain_text("Exits:")
            page.fill("#command", "say no sockets here")
            page.press("#command", "Enter")
            expect(output).to_contain_text('You say, "no sockets here"')
            assert "correct horse" not in (output.text_content() or "")
        finally:
            browser.close()

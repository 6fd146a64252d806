"""The README's embedding example, run exactly as it stands."""

from __future__ import annotations

import runpy
from pathlib import Path

import trio

from trio_mud import Portal, Settings

from .helpers import Client

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "embed.py"


def test_readme_shows_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert EXAMPLE.read_text("utf-8") in readme


async def test_the_example_serves_a_real_client() -> None:
    example = runpy.run_path(str(EXAMPLE))  # __name__ is not "__main__"
    settings = Settings(telnet_ports=(0,))
    async with trio.open_nursery() as nursery:
        portal: Portal = await nursery.start(example["run_shouting_mud"], settings)
        client = await Client.connect(portal.telnet_addresses[0][1])
        await client.send_line("hello there")
        assert (await client.read_until("HELLO"))[-1] == "HELLO THERE!"
        nursery.cancel_scope.cancel()

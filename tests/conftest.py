from __future__ import annotations

from pathlib import Path

import pytest
import trio

from trio_mud import Server

from .helpers import make_settings, start_server


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> Server:
    return await start_server(nursery, make_settings(tmp_path))

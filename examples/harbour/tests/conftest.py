"""The Harbour's tests run on trio_mud's pytest plugin: only the game differs."""

import pytest


@pytest.fixture
def mud_game() -> str:
    return "harbour:Harbour"

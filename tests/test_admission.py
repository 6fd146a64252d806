"""Admission at accept time and rate-limited logs (unit tests, one module)."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_mud.admission import AdmittingListener, RateLimitedLog


class ExhaustedListener:
    """A listener that runs out of descriptors ``failures`` times, then accepts."""

    def __init__(self, failures: int, stream: Any) -> None:
        self.failures = failures
        self.stream = stream
        self.socket = None

    async def accept(self) -> Any:
        await trio.lowlevel.checkpoint()
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.stream


class FakeStream:
    class socket:  # what trio.SocketStream calls it
        @staticmethod
        def getpeername() -> tuple[str, int]:
            return ("192.0.2.7", 5555)


async def test_running_out_of_descriptors_is_logged_once_and_accepting_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    stream = FakeStream()
    admitted: list[str] = []
    listener = AdmittingListener(
        ExhaustedListener(50, stream),  # type: ignore[arg-type]
        admit=lambda address: admitted.append(address),  # type: ignore[func-returns-value]
        log=RateLimitedLog(logging.getLogger("test.admission"), interval=3600),
    )
    with caplog.at_level(logging.ERROR, logger="test.admission"):
        assert await listener.accept() is stream
    assert admitted == ["192.0.2.7"]
    assert len(caplog.records) == 1
    assert "EMFILE" in caplog.records[0].getMessage()


def test_a_rate_limited_line_says_how_many_were_left_out(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("trio_mud.admission.time.monotonic", lambda: now[0])
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), interval=10)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        assert limited.log(logging.WARNING, "k", "refused %s", "a")
        for _ in range(99):
            assert not limited.log(logging.WARNING, "k", "refused %s", "a")
        assert limited.log(logging.WARNING, "other", "another key")
        now[0] += 11
        assert limited.log(logging.WARNING, "k", "refused %s", "b")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "refused a",
        "another key",
        "refused b (99 more like this in the last 10 s)",
    ]

"""Handler generations in a server process of their own.

``python -m trio_mud`` runs a portal process that owns every socket. Each
handler generation is a fresh ``python -m trio_mud.serverproc`` process, so a
reload loads entirely new code. The two talk over a socket pair the portal
creates and the child inherits (no file anyone else could open), in frames of
:mod:`trio_mud.wire`:

1. the child imports the game and opens the database, then says ``Hello``;
2. the portal pauses the generation serving now and sends a ``Snapshot``;
3. the child loads it and says ``Loaded``; from then on it is the handler.

If the child dies before ``Loaded`` (a syntax error in the game, say), the
portal reports the last lines of its stderr and keeps the old generation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import cattrs
import trio

from .generations import PortalLink, queued_nowait, send_in_turn
from .logs import configure_server_process, record_from_line
from .messages import (
    Broadcast,
    Connect,
    DataIn,
    DataOut,
    Done,
    FromHandler,
    Hello,
    Loaded,
    Pause,
    Resume,
    Snapshot,
    ToHandler,
    describe,
)
from .runner import pin_mmap_threshold, run_generation
from .settings import Settings
from .wire import LINK_VERSION, FrameReader, LinkMessage, Undecodable, encode, encode_many

log = logging.getLogger("trio_mud.serverproc")

#: Messages the child may have queued for the portal before it counts as stuck.
_OUTBOX = 1_000_000

#: What a player is told when the server process could not read their input.
UNREADABLE_INPUT = "The server could not read your last input; it was ignored."

_settings_converter = cattrs.Converter()
_settings_converter.register_unstructure_hook(Path, str)
_settings_converter.register_structure_hook(Path, lambda value, _: Path(value))


def settings_to_json(settings: Settings) -> str:
    """``settings`` as one line of JSON (what a server process reads on stdin)."""
    return json.dumps(_settings_converter.unstructure(settings))


def settings_from_json(text: str) -> Settings:
    """The settings :func:`settings_to_json` wrote."""
    return _settings_converter.structure(json.loads(text), Settings)


class ServerStartError(Exception):
    """A server process could not start or take over; the message says why."""


# -- the portal's side ----------------------------------------------------------------


#: What a server process runs.
_ENTRY = "from trio_mud.serverproc import main; main()"


class ProcessStarter:
    """Runs each handler generation as a ``trio_mud.serverproc`` process."""

    def __init__(self, settings: Settings, *, python: str = sys.executable) -> None:
        self.settings = settings
        self.python = python
        #: The pid of the newest server process (for operators and tests).
        self.pid: int | None = None

    async def __call__(self, portal: Any, *, task_status: trio.TaskStatus[Any]) -> None:
        parent, child = socket.socketpair()
        try:
            process = await trio.lowlevel.open_process(
                # Not ``-m trio_mud.serverproc``: the package imports this
                # module first, and runpy would warn about running it twice.
                [self.python, "-c", _ENTRY, "--fd", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Its own session: Ctrl-C in the operator's terminal reaches the
                # portal only, which then stops the server process in order.
                start_new_session=True,
            )
        finally:
            child.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(parent))
        stderr_tail: deque[str] = deque(maxlen=20)
        self.pid = process.pid
        log.info("server process %d started", process.pid)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_relay_stderr, process, stderr_tail)
                assert process.stdin is not None
                await process.stdin.send_all(settings_to_json(self.settings).encode() + b"\n")
                await process.stdin.aclose()
                await self._serve(process, stream, portal, stderr_tail, task_status)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
                with trio.move_on_after(self.settings.shutdown_grace):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            log.info("server process %d exited (%s)", process.pid, process.returncode)

    async def _serve(
        self,
        process: trio.Process,
        stream: trio.SocketStream,
        portal: Any,
        stderr_tail: deque[str],
        task_status: trio.TaskStatus[Any],
    ) -> None:
        reader = FrameReader()
        queued: deque[LinkMessage] = deque()

        async def read_more() -> bool:
            """Read once, queueing the messages; False when the link is closed."""
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""  # reset: the process died
            if not data:
                return False
            for item in reader.feed(data):
                if isinstance(item, Undecodable):
                    # A bug on the server's side; the link goes on.
                    log.error("server process sent a frame we cannot read: %s", item.reason)
                else:
                    queued.append(item)
            return True

        async def next_message() -> LinkMessage | None:
            while not queued:
                if not await read_more():
                    return None
            return queued.popleft()

        def failure(what: str) -> ServerStartError:
            return ServerStartError(f"{what}: {_last_error(stderr_tail, process.poll())}")

        with trio.move_on_after(self.settings.server_start_timeout) as starting:
            hello = await next_message()
        if starting.cancelled_caught:
            raise ServerStartError("the server process did not start in time")
        if not isinstance(hello, Hello):
            await process.wait()  # let its last words reach the tail
            raise failure("the server process failed to start")
        if hello.version != LINK_VERSION:
            raise ServerStartError(
                f"the new code speaks link version {hello.version}, this portal "
                f"{LINK_VERSION}: restart the whole server to load it"
            )
        link = await portal.attach()
        await stream.send_all(encode(Snapshot(tuple(link.snapshot))))
        started = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_forward, link, stream)
            while queued or await read_more():
                batch = list(queued)
                queued.clear()
                for message in batch:
                    kind = type(message)
                    if kind is DataOut or kind is Done or kind is Broadcast:
                        link.send_nowait(message)  # the bulk of what comes
                    elif isinstance(message, Connect | DataIn | Pause | Resume | Snapshot | Hello):
                        log.warning("server process sent %s; ignored", describe(message))
                    else:
                        link.send_nowait(message)
                        if isinstance(message, Loaded) and not started:
                            started = True
                            task_status.started()
            nursery.cancel_scope.cancel()
        if not started:
            await process.wait()
            raise failure("the server process failed while loading")


_ERROR_LINE = re.compile(r"^[\s|]*((?:\w+\.)*\w*(?:Error|Exception|Exit)\b.*)$")


def _last_error(lines: deque[str], status: int | None) -> str:
    """The ``SomeError: message`` line a dying Python process printed last."""
    for line in reversed(lines):
        match = _ERROR_LINE.match(line)
        if match:
            return match.group(1).strip()
    return f"it exited with status {status}"


async def _forward(link: PortalLink, stream: trio.SocketStream) -> None:
    """The portal's messages for the handler, onto the socket, many per write.

    A message that cannot be encoded is that session's error only: the
    portal hears it as done (nothing waits on it), the player is told.
    """
    try:
        async for first in link.inbound:
            # Let the rest of a burst arrive first: one write then carries it.
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch = [first, *queued_nowait(link.inbound, _LINK_BATCH)]
            data, failed = encode_many(batch)
            for message, exc in failed:
                log.error("cannot send %s to the server: %s", describe(message), exc)
                sessid = getattr(message, "sessid", 0)
                txid = getattr(message, "txid", 0)
                if isinstance(message, DataIn):
                    link.send_nowait(DataOut(sessid, "text", (UNREADABLE_INPUT,), {}, txid))
                if txid:
                    link.send_nowait(Done(txid, sessid))
            if data:
                await _write(stream, data)
        await stream.send_eof()  # retired: the child finishes and exits
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


#: Most messages one write on the link carries.
_LINK_BATCH = 512


async def _write(stream: trio.SocketStream, data: bytes) -> None:
    """Write ``data`` on the link: at once as far as the socket takes it (the
    common case, with no trip through the scheduler), then wait for the rest.

    Raises:
        trio.BrokenResourceError: the other side is gone.
    """
    try:
        sent = os.write(stream.socket.fileno(), data)
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"the link broke: {exc}") from exc
    if sent < len(data):
        await stream.send_all(data[sent:])


async def _relay_stderr(process: trio.Process, tail: deque[str]) -> None:
    """The child's log records into ours (and the last few lines kept for errors).

    Records come as JSON lines (:mod:`trio_mud.logs`) and go through the
    portal's handlers; anything else it prints (a crash's traceback) is
    logged as it is, a line at a time.
    """
    assert process.stderr is not None
    buffer = b""
    async for data in process.stderr:
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            record = record_from_line(line)
            if record is None:
                record = logging.makeLogRecord(
                    {"name": "trio_mud.serverproc", "levelno": logging.WARNING,
                     "levelname": "WARNING", "msg": line, "server_pid": process.pid}
                )  # fmt: skip
            tail.append(record.getMessage())
            if record.exc_text:
                tail.extend(record.exc_text.splitlines())
            logging.getLogger(record.name).handle(record)


# -- the child's side -------------------------------------------------------------------


class RemotePortal:
    """The portal as a server process sees it: frames over a socket."""

    def __init__(self, stream: trio.SocketStream, settings: Settings) -> None:
        self.stream = stream
        self._out_send, self._out_recv = trio.open_memory_channel[FromHandler | Hello](_OUTBOX)
        self._in_send, self._in_recv = trio.open_memory_channel[ToHandler](
            settings.inbound_queue_size
        )
        self._snapshot: Snapshot | None = None
        self._got_snapshot = trio.Event()
        #: Set once everything queued for the portal has been written.
        self.drained = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read frames from the portal and write ours until the link closes."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            task_status.started()
            await self._reader()

    async def attach(self) -> PortalLink:
        """The link to the portal, once its snapshot has arrived."""
        self.send_nowait(Hello(os.getpid()))
        await self._got_snapshot.wait()
        assert self._snapshot is not None
        return PortalLink(self._in_recv, list(self._snapshot.sessions), self.send_nowait)

    def send_nowait(self, message: FromHandler | Hello) -> None:
        """Queue ``message`` for the portal; never blocks."""
        try:
            self._out_send.send_nowait(message)
        except trio.WouldBlock:
            log.error("the portal stopped reading; closing the link")
            self._out_send.close()
        except trio.ClosedResourceError:
            pass

    async def close(self) -> None:
        """Send what is queued, then close the link."""
        self._out_send.close()

    async def _reader(self) -> None:
        reader = FrameReader()
        async with self._in_send:
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self._got_snapshot.set()  # nothing more will come
                    return
                for message in reader.feed(data):
                    if isinstance(message, Undecodable):
                        self._unreadable(message)
                    elif isinstance(message, Snapshot):
                        self._snapshot = message
                        self._got_snapshot.set()
                    else:
                        await send_in_turn(self._in_send, message)

    def _unreadable(self, frame: Undecodable) -> None:
        """A frame from the portal this process cannot read: that message's error only.

        It is answered as done (so the portal holds nothing back for it) and
        its session, where known, is told; the server goes on.
        """
        log.error(
            "sessid %s: a message from the portal could not be read (%s); ignored",
            frame.sessid,
            frame.reason,
        )
        if frame.sessid is not None and frame.txid:
            self.send_nowait(DataOut(frame.sessid, "text", (UNREADABLE_INPUT,), {}, frame.txid))
        if frame.txid:
            self.send_nowait(Done(frame.txid, frame.sessid or 0))

    async def _writer(self) -> None:
        try:
            async for first in self._out_recv:
                # (The handler took everything queued for it before yielding,
                # so its burst is all here.)
                data, failed = encode_many([first, *queued_nowait(self._out_recv, _LINK_BATCH)])
                for message, exc in failed:
                    log.error("cannot send %s to the portal: %s", describe(message), exc)
                if data:
                    await _write(self.stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.drained.set()


async def child_main(settings: Settings, fd: int) -> None:
    """A server process's Trio main: connect the link, run the game's generation."""
    sock = socket.socket(fileno=fd)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    remote = RemotePortal(stream, settings)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(remote.run)
        await run_generation(settings, remote)
        await remote.close()
        with trio.move_on_after(settings.shutdown_grace):
            await remote.drained.wait()  # all it said has reached the portal
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    """``python -c 'from trio_mud.serverproc import main; main()' --fd N``: a server process."""
    parser = argparse.ArgumentParser(
        description="A trio_mud server process (started by the portal)."
    )
    parser.add_argument("--fd", type=int, required=True, help="the link socket's file descriptor")
    args = parser.parse_args(argv)
    settings = settings_from_json(sys.stdin.readline())
    pin_mmap_threshold()
    configure_server_process(settings.log_level)
    trio.run(child_main, settings, args.fd)


if __name__ == "__main__":
    main()

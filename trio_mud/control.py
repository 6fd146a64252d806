"""Who owns a data directory, and how to talk to it: a lock and a control socket.

A server takes ``<data-dir>/trio_mud.pid`` with an exclusive ``flock`` for as
long as it runs, and writes its pid there. A second server on the same
directory finds the lock held and stops with a message naming the first. A
crashed server's lock is released by the kernel with its process, so a new
server simply takes it over (and says so, naming the pid that held it).

The running server listens on ``<data-dir>/trio_mud.control``, a Unix socket
only its owner can open. ``python -m trio_mud status|reload|stop`` send it
one line and read the JSON line it answers (``status`` prints it):

``status``
    pid, start time and uptime, sessions (by protocol, logged in or at the
    connection screen), handler generations, the last reload.
``reload``
    a reload (the game's code, settings from the file, the TLS
    certificate); the answer comes when it is done, with its outcome.
``stop``
    a graceful shutdown, as SIGTERM.

Error handling:
    :class:`AlreadyRunning` when the lock is held; :class:`NotRunning` when
    no server owns the directory (the commands exit with status 3 then, as
    init scripts expect).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("trio_mud.control")

LOCK_NAME = "trio_mud.pid"
SOCKET_NAME = "trio_mud.control"

#: Longest request line the control socket reads.
_MAX_REQUEST = 4096


class AlreadyRunning(Exception):
    """Another server owns the data directory; the message names its pid."""


class NotRunning(Exception):
    """No server owns the data directory."""


class DataDirLock:
    """The exclusive lock on a data directory, held while a server runs.

    Resource handling:
        :meth:`acquire` opens and locks the pid file; :meth:`release` (or
        the process's end, even by a crash) lets it go. The file is never
        removed: removing a lock file races with the next server opening it.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock; the pid of a crashed server that held it before, if any.

        Raises:
            AlreadyRunning: a live server holds it.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            pid = _read_pid(self.path)
            raise AlreadyRunning(
                f"another trio_mud (pid {pid or '?'}) is serving the data directory "
                f"{self.path.parent}; stop it first (python -m trio_mud stop), or "
                "choose another with --data-dir"
            ) from None
        stale = _read_pid(self.path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return stale if stale != os.getpid() else None

    def release(self) -> None:
        """Let the lock go (the pid file is emptied, never removed)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing lets the lock go
            self._fd = None


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def owner(data_dir: Path) -> int | None:
    """The pid of the server holding ``data_dir``'s lock, or None when none
    holds it (-1: held, but the pid is not written yet)."""
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(path) or -1  # held: running
    finally:
        os.close(fd)
    return None


# -- the server's side --------------------------------------------------------------------

Command = Callable[[str], Awaitable[dict[str, Any]]]


async def serve_control(
    data_dir: Path,
    commands: dict[str, Command],
    *,
    task_status: trio.TaskStatus[Path | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer control requests on ``<data-dir>/trio_mud.control`` until cancelled.

    ``commands`` maps a request's first word to a function of the rest of
    the line that returns the JSON answer. Hold the data directory's lock
    first: the socket file of a crashed server is replaced.
    """
    path = data_dir / SOCKET_NAME
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)
        await sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        log.warning(
            "no control socket at %s (%s): status, reload and stop work by signal only",
            path,
            exc.strerror or exc,
        )
        task_status.started(None)
        await trio.sleep_forever()
    listener = trio.SocketListener(sock)
    try:
        task_status.started(path)

        async def answer(stream: trio.SocketStream) -> None:
            await _answer(stream, commands)

        await trio.serve_listeners(answer, [listener])
    finally:
        path.unlink(missing_ok=True)


async def _answer(stream: trio.abc.Stream, commands: dict[str, Command]) -> None:
    async with stream:
        request = b""
        with trio.move_on_after(5):
            while b"\n" not in request and len(request) < _MAX_REQUEST:
                chunk = await stream.receive_some(_MAX_REQUEST)
                if not chunk:
                    break
                request += chunk
        word, _, rest = request.split(b"\n", 1)[0].decode(errors="replace").partition(" ")
        command = commands.get(word.strip())
        if command is None:
            answer: dict[str, Any] = {"ok": False, "error": f"unknown request {word.strip()!r}"}
        else:
            try:
                answer = await command(rest.strip())
            except Exception as exc:
                log.exception("control request %r failed", word)
                answer = {"ok": False, "error": str(exc)}
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(json.dumps(answer).encode() + b"\n")


# -- the command line's side --------------------------------------------------------------


def request(data_dir: Path, line: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Send ``line`` to the server owning ``data_dir``; its answer.

    Raises:
        NotRunning: no server owns the directory.
        OSError: the server is running but its control socket cannot be used.
    """
    if owner(data_dir) is None:
        raise NotRunning(f"no trio_mud is running on the data directory {data_dir}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(data_dir / SOCKET_NAME))
        sock.sendall(line.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    result: dict[str, Any] = json.loads(answer)
    return result


def wait_stopped(data_dir: Path, timeout: float) -> bool:
    """Wait until no server owns ``data_dir`` (polling; this is the CLI); whether it stopped."""
    deadline = time.monotonic() + timeout
    while owner(data_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True

"""SSH connections: ``ssh -p PORT name@host`` logs straight into the game.

Each SSH connection runs like a telnet one: a supervised task owning a
:class:`~trio_mud.transports.connection.PortalSession` (``protocol_key``
``"ssh"``), the same queues to the handler, the same limits. The user name
and password the client gives are tried as the game's ``login`` (the input
GMCP's ``Char.Login.Credentials`` uses): the right password for an account
logs in, and anything else (an empty password, a name that is no account)
leaves the player at the connection screen, told why.

SSH clients send keystrokes, not lines: the server edits the line
(:mod:`trio_mud.protocols.lineedit`), echoes it, keeps a history, and hides
what is typed at a password prompt. Output that arrives while a line is
being typed is written above it. The PTY's size is the session's
``SCREENWIDTH``/``SCREENHEIGHT`` and follows window changes; its ``TERM``
picks the colour level. A client without a terminal (``ssh -T``) sends
whole lines and is echoed nothing.

Why asyncssh in trio-asyncio: asyncssh is the best-kept SSH library for
Python (current algorithms, OpenSSH's host key format, non-blocking by
design); trio-asyncio runs its asyncio code as tasks of this Trio run, so an
SSH connection needs no thread, is cancelled like any Trio task, and its
callbacks hand events straight to Trio. paramiko would need a thread per
connection and a blocking write path beside Trio's. The socket itself stays
Trio's: the portal's admitting listener accepts it, reads a PROXY header
when a trusted proxy sent one, and relays the bytes to asyncssh over a
socket pair.

Error handling:
    A client that fails to log in within ``ssh_login_timeout``, asks for
    anything but a shell (a command, a subsystem, port forwarding), or breaks
    the SSH protocol is closed (logged at most once in a while). A host key
    that cannot be read stops the start with :class:`SSHSetupError`.

Resource handling:
    The host key is made once in the data directory (``ssh_host_key`` names
    another file) and kept, so the fingerprint players accepted stays.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import trio
import trio_asyncio

from .. import markup
from .._version import __version__
from ..admission import open_listeners, peer_address
from ..messages import Broadcast, DataIn, DataOut, Disconnect, SessionUpdate
from ..protocols.lineedit import EndOfInput, Interrupt, Line, LineEditor
from ..protocols.mudtelnet import terminal_flags
from ..settings import Settings
from .connection import EVENTS_PER_CHECKPOINT, Connection, Flush, ListenerHost

log = logging.getLogger("trio_mud.ssh")

#: Where the generated host key is kept in the data directory.
GENERATED_HOST_KEY = "ssh_host_ed25519_key"


class SSHSetupError(Exception):
    """The SSH host key cannot be used; the message says why."""


def host_key(settings: Settings) -> asyncssh.SSHKey:
    """The server's host key: ``ssh_host_key``, or one made once in the data directory.

    Raises:
        SSHSetupError: the file cannot be read or is not a private key.

    Blocking (file access, key generation): call it in a worker thread.
    """
    path = settings.ssh_host_key
    if path is None:
        path = settings.data_dir / GENERATED_HOST_KEY
        if not path.exists():
            return _generate_host_key(path)
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise SSHSetupError(f"cannot use the SSH host key {path}: {exc}") from None


def _generate_host_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(key.export_private_key())
        os.replace(temporary, path)
    except OSError as exc:
        raise SSHSetupError(f"cannot write the SSH host key {path}: {exc}") from None
    log.warning(
        "made a new SSH host key in %s (%s); clients ask to trust it once",
        path,
        key.get_fingerprint(),
    )
    return key


# -- asyncssh's side: callbacks that hand events to Trio ------------------------------


class _Resize:
    __slots__ = ("height", "width")

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height


class _Closed:
    """The client closed the channel (or the connection went)."""


_CLOSED = _Closed()
_SshEvent = bytes | _Resize | _Closed

#: Reads from the client held at most before asyncssh stops reading more.
_MAX_HELD_READS = 32


class _Link:
    """What one SSH connection's callbacks learned, for its Trio task.

    asyncssh's callbacks run in this thread, inside Trio (trio-asyncio), so
    they wake the Trio task directly. Input is held in a short queue: when
    it is full, asyncssh stops reading the socket until the task catches up.
    """

    def __init__(self) -> None:
        self.username = ""
        self.password = ""
        self.term = ""
        self.size = (0, 0)
        self.has_terminal = False
        self.environment: dict[str, str] = {}
        self.channel: asyncssh.SSHServerChannel[bytes] | None = None
        self.shell = trio.Event()
        #: Set once the channel is closed, by either side.
        self.channel_closed = trio.Event()
        self.events: deque[_SshEvent] = deque()
        self._arrived = trio.Event()
        #: Set while the client's SSH window can take more output.
        self.writable = trio.Event()
        self.writable.set()
        #: The relay is waiting for the client's socket to take bytes: the
        #: client is behind, so no more output is made for it until it has
        #: caught up (asyncssh itself would buffer without limit).
        self.relay_waiting = False
        self._moved = trio.Event()
        #: A session channel was asked for (one per connection).
        self.session_taken = False

    def can_write(self) -> bool:
        """Whether more output may be made now (the window is open, the socket takes it)."""
        return self.writable.is_set() and not self.relay_waiting

    def moved(self) -> None:
        """Output went on (the relay sent some, or the window opened)."""
        self._moved.set()
        self._moved = trio.Event()

    async def progress(self) -> None:
        """Wait for :meth:`moved`."""
        await self._moved.wait()

    def push(self, event: _SshEvent) -> None:
        self.events.append(event)
        self._arrived.set()
        if len(self.events) >= _MAX_HELD_READS and self.channel is not None:
            self.channel.pause_reading()

    async def next_events(self) -> list[_SshEvent]:
        """Everything the client sent since the last call, waiting for something."""
        await self._arrived.wait()
        self._arrived = trio.Event()
        events = list(self.events)
        self.events.clear()
        if self.channel is not None and len(events) >= _MAX_HELD_READS:
            self.channel.resume_reading()
        return events


class _Server(asyncssh.SSHServer):
    """Any user name, by password: the game decides what it is worth."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    def begin_auth(self, username: str) -> bool:
        self._link.username = username
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        self._link.password = password
        return True

    def session_requested(self) -> asyncssh.SSHServerSession[bytes] | bool:
        if self._link.session_taken:
            return False  # one terminal per connection
        self._link.session_taken = True
        return _Session(self._link)


class _Session(asyncssh.SSHServerSession[bytes]):
    def __init__(self, link: _Link) -> None:
        self._link = link

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        assert isinstance(chan, asyncssh.SSHServerChannel)
        self._link.channel = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any
    ) -> bool:
        link = self._link
        link.has_terminal = True
        link.term = term_type
        link.size = term_size[:2]
        return True

    def shell_requested(self) -> bool:
        link = self._link
        if link.channel is not None:
            link.environment = {str(k): str(v) for k, v in link.channel.get_environment().items()}
        link.shell.set()
        return True

    def exec_requested(self, command: str) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._link.push(data)

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._link.push(_Resize(width, height))

    def break_received(self, msec: int) -> bool:
        self._link.push(b"\x03")  # as Ctrl-C
        return True

    def eof_received(self) -> bool:
        self._link.push(_CLOSED)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._link.push(_CLOSED)
        self._link.writable.set()
        self._link.relay_waiting = False  # nothing more will go
        self._link.moved()
        self._link.channel_closed.set()

    def pause_writing(self) -> None:
        self._link.writable = trio.Event()

    def resume_writing(self) -> None:
        self._link.writable.set()
        self._link.moved()


# -- the connection --------------------------------------------------------------------


class SSHConnection(Connection):
    """One player's SSH terminal: line editing, output above the line, prompts."""

    protocol_key = "ssh"
    portal: ListenerHost

    def __init__(self, portal: ListenerHost, session: Any, link: _Link) -> None:
        super().__init__(portal, session)
        self._link = link
        assert link.channel is not None
        self._channel = link.channel
        width, height = link.size
        flags = self.session.protocol_flags
        # Colour as the terminal type says; none without a terminal, or for "dumb".
        flags["ANSI"] = link.has_terminal and link.term.lower() not in ("", "dumb")
        if flags["ANSI"]:
            flags.update(terminal_flags(link.term))
        if link.environment.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
            flags.update(TRUECOLOR=True, XTERM256=True, ANSI=True)
        flags["UTF-8"] = True
        if link.has_terminal:
            flags["TERM"] = link.term
        if width and height:
            flags["SCREENWIDTH"] = {0: width}
            flags["SCREENHEIGHT"] = {0: height}
        flags["CLIENTNAME"] = _client_name(self._channel)
        self.editor = LineEditor(
            max_line=self.settings.max_char_limit,
            history_size=self.settings.ssh_history_size,
            columns=width or 80,
            echo=link.has_terminal,
        )
        self._encoding = flags.get("ENCODING", "utf-8")
        self._decoder = _decoder(self._encoding)
        #: Set when :meth:`run` is over (the socket's task waits for it).
        self.finished = trio.Event()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.finished.set()

    async def _run(self) -> None:
        with self._cancel_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                nursery.start_soon(self._announce)
                if self._link.password:
                    # The credentials go to the game as a login, after Connect
                    # (never logged: log lines name a message's command only).
                    await self._to_handler(
                        DataIn(
                            self.session.sessid,
                            "login",
                            (),
                            {"account": self._link.username, "password": self._link.password},
                        )
                    )
                    self._link.password = ""
                await self._reader()
                if not self._closing:
                    nursery.cancel_scope.cancel()  # the client left: nothing to write
        if self._stalled:
            self.abort(f"one write took over {self.settings.write_timeout:g} s: client stalled")

    async def _reader(self) -> None:
        while not self._closing:
            if not self._link.can_write():
                # The client takes no output: no more keys (and echoes) until
                # it does, within write_timeout.
                await self._wait_writable()
            events = await self._link.next_events()
            self.last_input = trio.current_time()
            for event in events:
                if isinstance(event, _Closed):
                    self.close_reason = "client closed the connection"
                    return
                if isinstance(event, _Resize):
                    await self._resize(event.width, event.height)
                    continue
                self.received += len(event)
                encoding = self.session.protocol_flags.get("ENCODING", "utf-8")
                if encoding != self._encoding:  # the player chose another (option ENCODING)
                    self._encoding, self._decoder = encoding, _decoder(encoding)
                keys = self._decoder.decode(event)
                found = self.editor.feed(keys)
                self._write_now(self.editor.echo())
                for number, edited in enumerate(found, 1):
                    if self.is_closing:
                        return
                    if isinstance(edited, Line):
                        await self._handle_text(edited.text)
                    elif isinstance(edited, EndOfInput):
                        self.close("Goodbye.")
                        return
                    elif isinstance(edited, Interrupt):
                        pass  # the line is dropped; nothing goes to the game
                    if number % EVENTS_PER_CHECKPOINT == 0:
                        await trio.lowlevel.checkpoint()

    async def _resize(self, width: int, height: int) -> None:
        if width > 0:
            self.editor.columns = width  # 0 means "unknown": keep what we had
        flags = {"SCREENWIDTH": {0: width}, "SCREENHEIGHT": {0: height}}
        self.session.protocol_flags.update(flags)
        if self._announced:
            await self.portal.to_handler(
                self, SessionUpdate(self.session.sessid, {"protocol_flags": flags})
            )

    # -- output -----------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            batch = await self._outbox.get_all()
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch += self._outbox.take_nowait()
            out: list[str] = []
            text: list[str] = []  # output waiting to go above the line
            for message in batch:
                if isinstance(message, Flush):
                    continue
                if isinstance(message, Disconnect):
                    if message.reason:
                        text.append(self._render(message.reason))
                    await self._write("".join(out) + self.editor.erase() + "".join(text))
                    self._channel.exit(0)
                    self._cancel_scope.cancel()
                    return
                if message.cmdname == "text":
                    if self.editor.hidden and not text and not self.editor.text:
                        # The game went on past its hidden prompt (the password
                        # was typed ahead): the prompt is stale.
                        out.append(self.editor.set_prompt("", hidden=False))
                    text.append(self._text(message))
                elif message.cmdname == "prompt":
                    out.append(self._above(text))
                    prompt, hidden = self._prompt(message)
                    out.append(self.editor.set_prompt(prompt, hidden=hidden))
            out.append(self._above(text))
            del batch, text
            data = "".join(out)
            del out
            if data:
                await self._write(data)

    def _above(self, text: list[str]) -> str:
        """``text`` written above the line being typed (then forgotten)."""
        if not text:
            return ""
        shown = self.editor.erase() + "".join(text) + self.editor.redraw()
        text.clear()
        return shown

    def _text(self, message: DataOut | Broadcast) -> str:
        if type(message) is Broadcast:
            key = ("ssh", *markup.render_key(self.session.protocol_flags))
            shared: str | None = message.rendered.get(key)
            if shared is None:
                shared = message.rendered[key] = self._render(_first(message))
            return shared
        return self._render(_first(message))

    def _render(self, text: str) -> str:
        """Marked-up ``text`` as a terminal shows it: colour, CR LF line ends."""
        rendered = markup.render_for(text, self.session.protocol_flags)
        if not rendered.endswith("\n"):
            rendered += "\n"
        return rendered.replace("\r\n", "\n").replace("\n", "\r\n")

    def _prompt(self, message: DataOut | Broadcast) -> tuple[str, bool]:
        rendered = markup.render_for(_first(message), self.session.protocol_flags)
        return rendered.replace("\n", " "), bool(message.kwargs.get("password"))

    def _encode(self, text: str) -> bytes:
        encoding = self.session.protocol_flags.get("ENCODING", "utf-8")
        try:
            return text.encode(encoding, errors="replace")
        except LookupError:
            return text.encode("utf-8", errors="replace")

    def _write_now(self, text: str) -> None:
        """Write ``text`` without waiting (an echo: a few bytes)."""
        if text and not self._closing:
            data = self._encode(text)
            self.sent += len(data)
            with contextlib.suppress(OSError, asyncssh.Error):
                self._channel.write(data)  # if it fails, the reader learns

    async def _write(self, text: str) -> None:
        """Write ``text``; while the client is behind, wait within ``write_timeout``."""
        data = self._encode(text)
        self.sent += len(data)
        try:
            self._channel.write(data)
        except (OSError, asyncssh.Error):
            self.close_reason = "client connection broke"
            self._cancel_scope.cancel()
            return
        if not self._link.can_write():
            await self._wait_writable()

    async def _wait_writable(self) -> None:
        """Wait until the client takes output again; past ``write_timeout``, drop it."""
        with self.write_deadline():
            while not self._link.can_write():
                await self._link.progress()


def _first(message: DataOut | Broadcast) -> str:
    return str(message.args[0]) if message.args else ""


def _decoder(encoding: str) -> codecs.IncrementalDecoder:
    try:
        return codecs.getincrementaldecoder(encoding)(errors="replace")
    except LookupError:
        return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _client_name(channel: asyncssh.SSHServerChannel[bytes]) -> str:
    """The client's software from its version line (``OpenSSH_9.2p1``), or ``ssh``."""
    version = str(channel.get_extra_info("client_version") or "")
    software = version.split("-", 2)[2] if version.count("-") >= 2 else ""
    return software.split(" ")[0][:64] or "ssh"


# -- listening --------------------------------------------------------------------------


async def serve_ssh(
    portal: ListenerHost,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for SSH clients on every interface at each of ``ssh_ports``.

    Raises:
        SSHSetupError: the host key cannot be used (before listening).
    """
    settings = portal.settings
    key = await trio.to_thread.run_sync(host_key, settings)
    listeners: list[trio.SocketListener] = []
    for interface in settings.telnet_interfaces:
        for port in settings.ssh_ports:
            listeners += await open_listeners("SSH", port, interface, option="--ssh-port")
    addresses = [listener.socket.getsockname()[:2] for listener in listeners]
    if logging.getLogger("asyncssh").level == logging.NOTSET:
        # asyncssh logs every connection at INFO; this module logs what matters.
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept_loop, portal, portal.admitting(listener), key, nursery)
            portal.ssh_addresses = addresses
            for host, port in addresses:
                log.info(
                    "SSH listening on %s port %d (host key %s)", host, port, key.get_fingerprint()
                )
            task_status.started(addresses)
    finally:
        for listener in listeners:
            listener.socket.close()


async def _accept_loop(
    portal: ListenerHost,
    listener: trio.abc.Listener[trio.SocketStream],
    key: asyncssh.SSHKey,
    nursery: trio.Nursery,
) -> None:
    while True:
        stream = await listener.accept()
        nursery.start_soon(_serve_socket, portal, stream, key)


async def _serve_socket(
    portal: ListenerHost, stream: trio.SocketStream, key: asyncssh.SSHKey
) -> None:
    """One admitted socket: SSH over it, then the player's session; closed after."""
    address = peer = peer_address(stream)
    transport: trio.abc.Stream = stream
    try:
        unwrapped = await portal.behind_proxy(stream, address)
        if unwrapped is None:
            return
        transport, address = unwrapped
        try:
            ours, theirs = socket.socketpair()
        except OSError as exc:  # out of file descriptors: each SSH client takes three
            portal.log_limited(
                logging.WARNING, "ssh socketpair", "SSH from %s refused: %s", address, exc
            )
            return
        link = _Link()
        relay_end = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        async with relay_end, trio.open_nursery() as relay:
            relay.start_soon(_pump_in, transport, relay_end)
            relay.start_soon(
                _pump_out,
                relay_end,
                transport,
                link,
                portal.settings.write_timeout,
                relay.cancel_scope,
            )
            await _run_ssh(portal, theirs, key, address, link)  # closes its end when done
            # What asyncssh wrote last (the goodbye, the channel's close) is
            # still on its way out: the relay ends once it is all sent.
            relay.cancel_scope.deadline = trio.current_time() + _DRAIN_TIMEOUT
    except Exception:
        log.exception("SSH connection from %s failed", address)
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(transport)
        portal.release_socket(peer)


#: Seconds the last bytes of a closed SSH connection may take to be sent.
_DRAIN_TIMEOUT = 5.0


async def _pump_in(client: trio.abc.Stream, relay_end: trio.SocketStream) -> None:
    """The client's bytes to asyncssh; the client's EOF as an EOF."""
    try:
        while chunk := await client.receive_some(65536):
            await relay_end.send_all(chunk)
        await relay_end.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # asyncssh is done; _pump_out ends the relay


async def _pump_out(
    relay_end: trio.SocketStream,
    client: trio.abc.Stream,
    link: _Link,
    write_timeout: float,
    done: trio.CancelScope,
) -> None:
    """asyncssh's bytes to the client, to the last; then the relay ends.

    A client that takes nothing for ``write_timeout`` is cut off (the relay
    ends, so asyncssh and the session see the connection go).
    """
    try:
        while chunk := await relay_end.receive_some(65536):
            link.relay_waiting = True
            with trio.move_on_after(write_timeout) as waiting:
                await client.send_all(chunk)
            link.relay_waiting = False
            link.moved()
            if waiting.cancelled_caught:
                log.warning("SSH client stalled: nothing taken for %g s", write_timeout)
                break
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    link.relay_waiting = False
    link.moved()
    done.cancel()


async def _run_ssh(
    portal: ListenerHost, sock: socket.socket, key: asyncssh.SSHKey, address: str, link: _Link
) -> None:
    settings = portal.settings
    connection: asyncssh.SSHServerConnection | None = None
    why: object = f"no login within {settings.ssh_login_timeout:g} s"
    try:
        with trio.move_on_after(settings.ssh_login_timeout):
            try:
                connection = await trio_asyncio.aio_as_trio(asyncssh.run_server)(
                    sock,
                    server_factory=_server_factory(link),
                    server_host_keys=[key],
                    server_version=f"trio_mud_{__version__}",
                    encoding=None,
                    line_editor=False,  # the game edits lines itself (lineedit)
                    login_timeout=settings.ssh_login_timeout,
                    agent_forwarding=False,
                    x11_forwarding=False,
                    allow_scp=False,
                    keepalive_interval=settings.telnet_keepalive or 0,
                )
                await link.shell.wait()
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                why = exc
        if connection is None or not link.shell.is_set():
            portal.log_limited(
                logging.INFO, f"ssh {address}", "SSH from %s ended before a shell: %s", address, why
            )
            return
        # The session runs among the portal's connections (so a shutdown ends
        # it before the handler stops); this task keeps the socket until then.
        conn = SSHConnection(portal, portal.new_session("ssh", address), link)
        portal.start_connection(conn)
        await conn.finished.wait()
        # The channel was sent its exit status and closed: the client closes
        # its side and hangs up by itself (OpenSSH drops whatever it has not
        # shown yet when the server disconnects first).
        with trio.move_on_after(_DRAIN_TIMEOUT):
            await link.channel_closed.wait()
    finally:
        if connection is not None:
            connection.close()
            with trio.move_on_after(1.0, shield=True):
                await trio_asyncio.aio_as_trio(connection.wait_closed)()
        sock.close()


def _server_factory(link: _Link) -> Callable[[], asyncssh.SSHServer]:
    return lambda: _Server(link)

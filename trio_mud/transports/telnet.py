"""Telnet connections: the MUD telnet protocols over a TCP stream.

A :class:`TelnetConnection` is one task, its reader (bytes ->
:class:`MudTelnet` events -> checked input for the handler), under one
cancel scope. Its output (the outbox -> rendered, encoded, maybe compressed
bytes) is written by the portal's :class:`~.connection.WritePump`, or by a
drain task while a write waits for the client. The portal's accept loop runs
one per admitted socket.

Error handling:
    A client that breaks a telnet limit is sent the reason and closed; a
    stalled client (one write over ``write_timeout``) is dropped.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial
from typing import Any

import trio

from .. import markup
from ..messages import Broadcast, DataOut, Disconnect, SessionUpdate
from ..protocols.mudtelnet import (
    BadInput,
    FlagsChanged,
    MSSPRequest,
    MudEvent,
    MudTelnet,
    OOBInput,
    gmcp_package,
)
from ..protocols.telnet import Opt, TelnetProtocol, TelnetProtocolError, TextLine
from .connection import (
    EVENTS_PER_CHECKPOINT,
    FLUSH,
    Connection,
    ConnectionHost,
    Flush,
    PortalSession,
    PrefixedStream,
)

log = logging.getLogger("trio_mud.portal")


class TelnetConnection(Connection):
    """A telnet connection: MudTelnet over a TCP stream.

    One task reads; the portal's :class:`WritePump` writes (on a plain socket
    at once; a write that must wait, and every write over TLS, in a *drain*
    task that lasts as long as there is output to wait on). An idle
    connection is one task waiting for its socket to become readable.
    """

    __slots__ = (
        "_drain",
        "_drained",
        "_fd",
        "_final",
        "_finished",
        "_flush_pending",
        "last_output",
        "protocol",
        "stream",
    )

    def __init__(
        self, portal: ConnectionHost, stream: trio.abc.Stream, session: PortalSession
    ) -> None:
        super().__init__(portal, session)
        self.stream = stream
        #: The socket's descriptor, for reads and writes without Trio's stream
        #: layers; None over TLS, whose bytes only the SSL stream can carry.
        self._fd = (
            stream.socket.fileno()
            if isinstance(stream, trio.SocketStream | PrefixedStream)
            else None
        )
        self.protocol = MudTelnet(
            max_partial_line=self.settings.max_partial_line,
            max_subnegotiation=self.settings.max_subnegotiation,
            max_inflated=self.settings.max_inflated,
            mccp=self.settings.mccp,
            max_json_depth=self.settings.max_json_depth,
            max_gmcp_supports=self.settings.max_gmcp_supports,
        )
        #: When output was last written (for ``telnet_keepalive``).
        self.last_output = self.last_input
        #: The pump has been asked to flush this connection.
        self._flush_pending = False
        #: The drain's scope while a write waits for the client, else None.
        self._drain: trio.CancelScope | None = None
        self._drained: trio.Event | None = None
        #: The last words (after a Disconnect) have been taken for writing.
        self._final = False
        #: Nothing more is written: the connection was dropped, or run() is
        #: over and the socket closed or about to be.
        self._finished = False

    async def run(self) -> None:
        """Read until the client leaves or the connection closes.

        The handler hears of the session once negotiation has settled, or
        after ``negotiation_timeout`` at most: a client that answers nothing
        (a raw TCP client, say) still gets the game, just without extras.

        The reading is done here rather than in a method of its own, and an
        idle connection waits right here for its socket: every coroutine
        frame a waiting connection holds is memory that thousands of them
        hold.
        """
        fd = self._fd
        deadline = trio.current_time() + self.settings.negotiation_timeout
        data: bytes | None
        try:
            with self._cancel_scope:
                self.protocol.start()
                self.send_nowait(FLUSH)  # our opening questions
                reading = True
                if isinstance(self.stream, PrefixedStream):
                    prefix = self.stream.take_prefix()  # read past a PROXY header
                    reading = not prefix or await self._take_in(prefix)
                while reading and not self._closing:
                    if self._announced and fd is not None:
                        await trio.lowlevel.wait_readable(fd)
                        data = self._read_now(fd)
                        if data is None:
                            continue
                    elif self._announced:
                        data = await self._receive()
                    elif self.protocol.settled or trio.current_time() >= deadline:
                        await self._announce()
                        continue
                    else:
                        data = None
                        with trio.move_on_at(deadline):
                            data = await self._receive()
                        if data is None:
                            continue  # the negotiation window is over
                    if not data:
                        self.close_reason = "client closed the connection"
                        break
                    reading = await self._take_in(data)
                if self._closing:
                    # Wait for the last words to be written: the write that
                    # takes them cancels this scope (as does an abort).
                    await trio.sleep_forever()
        finally:
            self._finished = True
            if self._drain is not None:
                self._drain.cancel()  # the client left, or was dropped
                assert self._drained is not None
                with trio.CancelScope(shield=True):
                    await self._drained.wait()

    def abort(self, reason: str) -> None:
        super().abort(reason)
        self._finished = True  # nothing more is written
        if self._drain is not None:
            self._drain.cancel()

    def _read_now(self, fd: int) -> bytes | None:
        """What the socket has: b"" when the client is gone, None when
        nothing after all (a readable socket may have nothing to read)."""
        try:
            return os.read(fd, self.settings.max_read_size)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    async def _receive(self) -> bytes:
        """The next bytes from the client; b"" when it is gone."""
        fd = self._fd
        try:
            if fd is None:
                return bytes(await self.stream.receive_some(self.settings.max_read_size))
            while True:
                await trio.lowlevel.wait_readable(fd)
                data = self._read_now(fd)
                if data is not None:
                    return data
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _take_in(self, data: bytes) -> bool:
        """Handle bytes read from the client; False when the reader must stop."""
        self.last_input = trio.current_time()
        self.received += len(data)
        try:
            events = self.protocol.receive_data(data)
        except TelnetProtocolError as exc:
            log.warning("sessid %d: telnet protocol error: %s", self.session.sessid, exc)
            self.close(exc.reply)
            return False
        self.send_nowait(FLUSH)  # negotiation replies
        for number, event in enumerate(events, 1):
            if self.is_closing:
                return False
            await self._handle_event(event)
            if number % EVENTS_PER_CHECKPOINT == 0:
                # A read can hold thousands of lines: let others run.
                await trio.lowlevel.checkpoint()
        return True

    async def _handle_event(self, event: MudEvent) -> None:
        if isinstance(event, TextLine):
            await self._handle_line(event.data)
        elif isinstance(event, FlagsChanged):
            self.session.protocol_flags.update(event.flags)
            if self._announced:
                await self.portal.to_handler(
                    self, SessionUpdate(self.session.sessid, {"protocol_flags": event.flags})
                )
        elif isinstance(event, OOBInput):
            await self._handle_oob(event.cmdname, event.args, event.kwargs)
        elif isinstance(event, BadInput):
            self.tell_bad_input(event.reason)
        elif isinstance(event, MSSPRequest):
            self.protocol.send_mssp(self.portal.mssp_variables())
            self.send_nowait(FLUSH)
        # Settled needs nothing here: the reader looks at protocol.settled.

    async def _handle_line(self, data: bytes) -> None:
        encoding = self.session.protocol_flags.get("ENCODING", "utf-8")
        try:
            text = data.decode(encoding, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        await self._handle_text(text)

    def traffic(self) -> tuple[int, int, int, int]:
        return (
            self.received,
            self.sent,
            self.protocol.telnet.plain_received,
            self.protocol.plain_sent,
        )

    # -- writing -----------------------------------------------------------------------

    def _output_queued(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.portal.write_pump.schedule(self)

    def tick(self, now: float) -> None:
        """The portal's sweeper: ``idle_timeout``, and ``telnet_keepalive``."""
        super().tick(now)
        keepalive = self.settings.telnet_keepalive
        if keepalive and not self._closing and now - self.last_output >= keepalive:
            self.protocol.send_keepalive()
            self.last_output = now
            self.send_nowait(FLUSH)

    def flush(self) -> None:
        """Render everything queued and write it, without waiting; what does
        not fit the socket's buffer goes to a drain task."""
        self._flush_pending = False
        if self._finished or self._drain is not None:
            return  # gone, or the drain takes the queue when it is done
        data = self._write_now(self._take_output())
        if data:
            self._start_drain(data)
        elif self._final:
            self._cancel_scope.cancel()  # the last words are out

    def _take_output(self) -> bytes:
        """Everything queued, rendered as the bytes to send (after a
        Disconnect, its reason and the protocol's last bytes)."""
        batch = self._outbox.take_nowait()
        # Broadcast text, the bulk of a busy room, is encoded once per kind
        # of client and joined.
        key: tuple[Any, ...] | None = None
        shared: list[bytes] = []
        for message in batch:
            if type(message) is Broadcast and message.cmdname == "text":
                if key is None:
                    key = self._render_key()
                shared.append(self._shared_text(message, key))
                continue
            if shared:
                self.protocol.send_encoded(b"".join(shared))
                shared.clear()
            if isinstance(message, Disconnect):
                if message.reason:
                    self._render_text(message.reason)
                self._final = True
                return self.protocol.data_to_send() + self.protocol.close()
            if not isinstance(message, Flush):
                self._render(message)
        if shared:
            self.protocol.send_encoded(b"".join(shared))
        return self.protocol.data_to_send()

    def _write_now(self, data: bytes) -> bytes:
        """Write what the socket takes now; the rest (all of it over TLS)."""
        if not data or self._fd is None:
            return data
        self.last_output = trio.current_time()
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._broken()
            return b""
        self.sent += sent
        return data[sent:]

    def _broken(self) -> None:
        self.close_reason = "client connection broke"
        self._closing = self._finished = True
        self._cancel_scope.cancel()

    def _start_drain(self, data: bytes) -> None:
        self._drain = trio.CancelScope()
        self._drained = trio.Event()
        self.portal.write_pump.start_drain(partial(self._run_drain, data))

    async def _run_drain(self, data: bytes) -> None:
        """Write ``data`` and then whatever is queued meanwhile, each write
        within ``write_timeout`` (a stalled client is dropped); end when all
        is written (after the last words, end the connection too)."""
        scope = self._drain
        assert scope is not None and self._drained is not None
        deadline = math.inf
        try:
            with scope:
                while data:
                    deadline = scope.deadline = trio.current_time() + self.settings.write_timeout
                    try:
                        await self.stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._broken()
                        return
                    scope.deadline = deadline = math.inf
                    self.sent += len(data)
                    self.last_output = trio.current_time()
                    if self._final:
                        break
                    data = self._take_output()
                if self._final:
                    # The last words are out (perhaps there were none left).
                    self._cancel_scope.cancel()
            if scope.cancelled_caught and trio.current_time() >= deadline:
                self.abort(f"one write took over {self.settings.write_timeout:g} s: client stalled")
        except Exception:
            # Rendering is the game's output meeting this client: a bug there
            # ends this connection, never the pump that runs every drain.
            log.exception("sessid %d: connection failed while writing", self.session.sessid)
            self.abort("internal error")
        finally:
            self._drain = None
            self._drained.set()

    # -- output rendering --------------------------------------------------------------

    def _render_key(self) -> tuple[Any, ...]:
        """How this client is shown text: what shared renderings are keyed by."""
        flags = self.session.protocol_flags
        return ("telnet", *markup.render_key(flags), flags.get("ENCODING", "utf-8"))

    def _render(self, message: DataOut | Broadcast) -> None:
        """Queue ``message`` in the protocol, in this client's form."""
        cmdname, args, kwargs = message.cmdname, message.args, message.kwargs
        if cmdname == "text":
            self._render_text(str(args[0]) if args else "")
        elif cmdname == "prompt":
            flags = self.session.protocol_flags
            self.protocol.send_prompt(
                markup.render_for(str(args[0]) if args else "", flags),
                flags.get("ENCODING", "utf-8"),
                password=bool(kwargs.get("password")),
            )
        elif cmdname == "msdp":
            self.protocol.send_msdp(kwargs)
        else:
            payload: Any = kwargs or (args[0] if len(args) == 1 else list(args) or None)
            if self.protocol.telnet.local_enabled(Opt.GMCP):
                self.protocol.send_gmcp(gmcp_package(cmdname), payload)
            elif "." not in cmdname:
                self.protocol.send_msdp({cmdname.upper(): payload})

    def _render_text(self, text: str) -> None:
        self.protocol.send_encoded(self._encode_text(text))

    def _encode_text(self, text: str) -> bytes:
        """``text`` rendered for this client, as the bytes telnet sends."""
        flags = self.session.protocol_flags
        rendered = markup.render_for(text, flags)
        if not rendered.endswith(("\n", "\r")):
            rendered += "\n"
        return TelnetProtocol.encode_text(rendered, flags.get("ENCODING", "utf-8"))

    def _shared_text(self, message: Broadcast, key: tuple[Any, ...]) -> bytes:
        """A broadcast's text for clients shown it as ``key``: encoded once, reused."""
        data: bytes | None = message.rendered.get(key)
        if data is None:
            data = message.rendered[key] = self._encode_text(
                str(message.args[0]) if message.args else ""
            )
        return data


async def refuse_telnet(stream: trio.SocketStream, refusal: str) -> None:
    """A refused telnet client is told why, in one line."""
    await stream.send_all(TelnetProtocol.encode_text(refusal + "\n"))

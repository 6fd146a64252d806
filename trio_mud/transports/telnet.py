"""Telnet connections: the MUD telnet protocols over a TCP stream.

A :class:`TelnetConnection` runs a reader (bytes -> :class:`MudTelnet`
events -> checked input for the handler) and a single writer (the outbox ->
rendered, encoded, maybe compressed bytes), in one nursery under one cancel
scope. The portal's accept loop runs one per admitted socket.

Error handling:
    A client that breaks a telnet limit is sent the reason and closed; a
    stalled client (one write over ``write_timeout``) is dropped.
"""

from __future__ import annotations

import logging
import os
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
    Settled,
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
    """A telnet connection: MudTelnet over a TCP stream."""

    def __init__(
        self, portal: ConnectionHost, stream: trio.abc.Stream, session: PortalSession
    ) -> None:
        super().__init__(portal, session)
        self.stream = stream
        #: The socket's descriptor, for writes that need no wait (see _write);
        #: None over TLS, whose bytes only the SSL stream can write.
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

    async def run(self) -> None:
        with self._cancel_scope:
            async with trio.open_nursery() as nursery:
                self.protocol.start()
                nursery.start_soon(self._writer)
                self.send_nowait(FLUSH)
                nursery.start_soon(self._announce)
                await self._reader()
                if not self._closing:
                    # The client hung up: nothing left to write.
                    nursery.cancel_scope.cancel()
        if self._stalled:
            self.abort(f"one write took over {self.settings.write_timeout:g} s: client stalled")

    async def _reader(self) -> None:
        while not self._closing:
            try:
                data = await self.stream.receive_some(self.settings.max_read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.last_input = trio.current_time()
            if not data:
                self.close_reason = "client closed the connection"
                return
            self.received += len(data)
            try:
                events = self.protocol.receive_data(bytes(data))
            except TelnetProtocolError as exc:
                log.warning("sessid %d: telnet protocol error: %s", self.session.sessid, exc)
                self.close(exc.reply)
                return
            self.send_nowait(FLUSH)  # negotiation replies
            for number, event in enumerate(events, 1):
                if self.is_closing:
                    return
                await self._handle_event(event)
                if number % EVENTS_PER_CHECKPOINT == 0:
                    # A read can hold thousands of lines: let others run.
                    await trio.lowlevel.checkpoint()

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
        elif isinstance(event, Settled):
            self._settled.set()
        elif isinstance(event, MSSPRequest):
            self.protocol.send_mssp(self.portal.mssp_variables())
            self.send_nowait(FLUSH)

    async def _handle_line(self, data: bytes) -> None:
        encoding = self.session.protocol_flags.get("ENCODING", "utf-8")
        try:
            text = data.decode(encoding, errors="replace")
        except LookupError:
            text = data.decode("utf-8", errors="replace")
        await self._handle_text(text)

    async def _writer(self) -> None:
        keepalive = self.settings.telnet_keepalive
        while True:
            if keepalive:
                with trio.move_on_after(keepalive) as quiet:
                    batch = await self._outbox.get_all()
                if quiet.cancelled_caught:
                    self.protocol.send_keepalive()
                    await self._write(self.protocol.data_to_send())
                    continue
            else:
                batch = await self._outbox.get_all()
            # Let whatever else is ready run once (the rest of a burst of
            # output may be on its way): then one write carries it all.
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch += self._outbox.take_nowait()
            # Everything queued goes out in one write. Broadcast text, the bulk
            # of a busy room, is encoded once per kind of client and joined.
            key = self._render_key()
            shared: list[bytes] = []
            for message in batch:
                if type(message) is Broadcast and message.cmdname == "text":
                    shared.append(self._shared_text(message, key))
                    continue
                if shared:
                    self.protocol.send_encoded(b"".join(shared))
                    shared.clear()
                if isinstance(message, Disconnect):
                    if message.reason:
                        self._render_text(message.reason)
                    await self._write(self.protocol.data_to_send() + self.protocol.close())
                    self._cancel_scope.cancel()
                    return
                if not isinstance(message, Flush):
                    self._render(message)
            if shared:
                self.protocol.send_encoded(b"".join(shared))
            del batch, shared  # nothing of it is kept while the writer waits
            data = self.protocol.data_to_send()
            if data:
                await self._write(data)
            del data

    def traffic(self) -> tuple[int, int, int, int]:
        return (
            self.received,
            self.sent,
            self.protocol.telnet.plain_received,
            self.protocol.plain_sent,
        )

    async def _write(self, data: bytes) -> None:
        """Send ``data``; within ``write_timeout``, or the connection is dropped.

        Most writes fit the socket's buffer: they are made at once, without a
        wait (the socket is non-blocking). Only the rest of a write that did
        not fit waits, within :meth:`write_deadline` (a stalled client is
        dropped whole).
        """
        self.sent += len(data)
        if self._fd is not None:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.close_reason = "client connection broke"
                self._cancel_scope.cancel()
                return
            if sent == len(data):
                return
            data = data[sent:]
        with self.write_deadline():
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.close_reason = "client connection broke"
                self._cancel_scope.cancel()

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

"""AJAX long polling: the web page's way in when no WebSocket can open.

Evennia's protocol (``webclient/ajax``): the page POSTs to ``/webclientdata``
on the web port, form-encoded, with ``mode`` one of

- ``init``: a new session; the answer names its ``csessid``;
- ``input``: ``data`` is ``[cmdname, [args], {kwargs}]``, as over Evennia's
  WebSocket format (typed text passes the same checks as anywhere else);
- ``receive``: waits up to ``ajax_poll_timeout`` for output, answers
  ``{"messages": [[cmdname, [args], {kwargs}], ...]}``;
- ``keepalive``: says the page is still there;
- ``close``: ends the session.

An :class:`AjaxSession` is a connection like any other (its own supervised
task among the portal's connections, the same queues to the handler, the same
reloads and restarts); its writer keeps output frames for the next poll. A
poll that waits holds no lock and no handler task. A page that stops polling
for ``ajax_grace`` seconds is gone; the frames kept for one are bounded
(``ajax_max_queued``), and so are request bodies (``ajax_max_body``).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import trio

from ..messages import Broadcast, DataOut, Disconnect
from ..protocols.wsformats import EVENNIA, BadFrame, ClientOOB, ClientText, decode_frame
from .connection import Connection, ListenerHost, PortalSession
from .websocket import WEB_FLAGS, evennia_frame

log = logging.getLogger("trio_mud.ajax")


class AjaxSession(Connection):
    """One page polling over AJAX."""

    protocol_key = "ajax"
    portal: ListenerHost

    def __init__(self, portal: ListenerHost, session: PortalSession) -> None:
        super().__init__(portal, session)
        self.csessid = secrets.token_urlsafe(24)
        self.session.protocol_flags.update(WEB_FLAGS)
        self.session.protocol_flags["CLIENTNAME"] = "ajax"
        self._frames: list[str] = []
        self._has_frames = trio.Event()
        self._ended = False
        self.last_seen = trio.current_time()

    async def run(self) -> None:
        registry = self.portal.ajax_sessions
        registry[self.csessid] = self
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._announce)
                    await self._watch()
                    nursery.cancel_scope.cancel()
        finally:
            registry.pop(self.csessid, None)

    async def _watch(self) -> None:
        """Ends the session once its goodbye was collected, or the page is gone."""
        grace = self.settings.ajax_grace
        while True:
            await trio.sleep(min(1.0, grace / 4))
            if self._ended and not self._frames:
                return
            if trio.current_time() - self.last_seen > grace:
                self.close_reason = "the page stopped polling"
                return

    async def _writer(self) -> None:
        while True:
            for message in await self._outbox.get_all():
                if isinstance(message, Disconnect):
                    if message.reason:
                        self._keep(
                            evennia_frame(DataOut(self.session.sessid, "text", (message.reason,)))
                        )
                    self._ended = True
                elif isinstance(message, DataOut | Broadcast):
                    self._keep(evennia_frame(message))
            if len(self._frames) > self.settings.ajax_max_queued:
                self.portal.count_slow_client()
                self.abort(
                    f"over {self.settings.ajax_max_queued} messages kept: the page is not polling"
                )
                return

    def _keep(self, frame: str) -> None:
        self._frames.append(frame)
        self._has_frames.set()

    # -- what the page asks -----------------------------------------------------------

    async def receive(self) -> str:
        """The output kept for the page (waiting up to ``ajax_poll_timeout``), as JSON."""
        self.last_seen = trio.current_time()
        if not self._frames and not self._ended:
            with trio.move_on_after(self.settings.ajax_poll_timeout):
                await self._has_frames.wait()
        frames, self._frames = self._frames, []
        self._has_frames = trio.Event()
        self.last_seen = trio.current_time()
        return '{"messages":[' + ",".join(frames) + "]}"

    async def input(self, data: str) -> str | None:
        """Input from the page; None, or why it was refused."""
        self.last_seen = trio.current_time()
        try:
            inputs = decode_frame(EVENNIA, data, max_json_depth=self.settings.max_json_depth)
        except BadFrame as exc:
            return str(exc)
        for item in inputs:
            if isinstance(item, ClientText):
                await self._handle_text(item.text)
            elif isinstance(item, ClientOOB):
                await self._handle_oob(item.cmdname, item.args, item.kwargs)
        return None

    def end(self) -> None:
        """The page said goodbye."""
        self.close_reason = "the page closed the session"
        self._cancel_scope.cancel()


async def handle(host: ListenerHost, fields: dict[str, str], address: str) -> tuple[int, str]:
    """One ``/webclientdata`` request: (HTTP status, JSON body)."""
    mode = fields.get("mode", "")
    if mode == "init":
        conn = AjaxSession(host, host.new_session("ajax", address))
        host.start_connection(conn)
        return 200, json.dumps({"csessid": conn.csessid})
    session: Any = host.ajax_sessions.get(fields.get("csessid", ""))
    if not isinstance(session, AjaxSession) or (session.is_closing and mode != "receive"):
        return 404, json.dumps({"error": "no such session; start a new one (mode=init)"})
    if mode == "receive":
        return 200, await session.receive()
    if mode == "input":
        error = await session.input(fields.get("data", ""))
        if error is not None:
            return 400, json.dumps({"error": f"Your client sent a bad message: {error}"})
        return 200, json.dumps({"ok": True})
    if mode == "keepalive":
        session.last_seen = trio.current_time()
        return 200, json.dumps({"ok": True})
    if mode == "close":
        session.end()
        return 200, json.dumps({"ok": True})
    return 400, json.dumps({"error": f"unknown mode {mode[:20]!r}"})

"""Letting sockets in: admission at accept time, for every listener.

Every socket costs a file descriptor from the moment it is accepted, long
before a WebSocket handshake or an HTTP request is over. So every listener
(telnet, WebSocket, the web page) admits at ``accept()``: the portal's
:meth:`~trio_mud.nursery_portal.Portal.admit` decides (the connection cap and
the per-address rate), and an admitted socket counts against the cap until
it is closed. Running out of descriptors pauses accepting, with one log line
however often it happens (:class:`RateLimitedLog`), instead of the ten a
second that ``trio.serve_listeners`` would write.

Resource handling:
    :class:`AdmittingListener` owns the listener it wraps. Each stream it
    returns holds a place until whoever runs it gives the place back (the
    portal's ``release_socket``), once, after closing it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

#: accept() errors that mean "out of resources, try again shortly".
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})

#: How long accepting pauses after running out of descriptors.
_CAPACITY_PAUSE = 0.1


class RateLimitedLog:
    """Logs a recurring line at most once per ``interval`` seconds per key.

    The next line after a quiet spell says how many were left out, so that
    an operator sees the scale of a flood without the flood in the log.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged lately; whether it was."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) > 10_000:  # many keys (addresses): forget the old ones
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            message += " (%d more like this in the last %.0f s)"
            args = (*args, skipped, self.interval)
        self.logger.log(level, message, *args)
        return True


class AdmittingListener(trio.abc.Listener[trio.SocketStream]):
    """A TCP listener that admits (or refuses) each socket as it is accepted.

    An admitted socket has taken a place; whoever runs it must give the
    place back with ``release()`` once it is closed (exactly once).

    Args:
        inner: the listener to take sockets from (closed with this one).
        admit: ``admit(address)`` returns None to admit (the place is then
            taken), or a refusal text.
        refuse: what to do with a refused stream before it is closed (send
            the refusal text, say); it is given at most a second.
        log: where running out of descriptors is reported.
    """

    def __init__(
        self,
        inner: trio.SocketListener,
        *,
        admit: Callable[[str], str | None],
        refuse: Callable[[trio.SocketStream, str], Awaitable[None]] | None = None,
        log: RateLimitedLog,
    ) -> None:
        self.inner = inner
        self._admit = admit
        self._refuse = refuse
        self._log = log

    @property
    def socket(self) -> trio.socket.SocketType:
        """The listening socket (for its address)."""
        return self.inner.socket

    async def accept(self) -> trio.SocketStream:
        while True:
            try:
                stream = await self.inner.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                self._log.log(
                    logging.ERROR,
                    "accept-capacity",
                    "accept() failed (%s): out of file descriptors or memory; "
                    "pausing new connections %.1f s at a time",
                    errno.errorcode.get(exc.errno or 0, "?"),
                    _CAPACITY_PAUSE,
                )
                await trio.sleep(_CAPACITY_PAUSE)
                continue
            refusal = self._admit(peer_address(stream))
            if refusal is None:
                return stream
            if self._refuse is not None:
                with (
                    trio.move_on_after(1.0),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await self._refuse(stream, refusal)
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ListenError(Exception):
    """A listener could not be opened; the message says why and what to change."""


async def open_listeners(
    what: str, port: int, host: str, *, option: str
) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners``, failing with one line an operator can act on.

    Raises:
        ListenError: the port is in use, the address is not this machine's,
            or the port needs privileges; ``option`` names the command-line
            option that changes it.
    """
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = f"the port is in use (another server?); choose another with {option}"
        elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            why = "that is not an address of this machine; check --interface"
        elif exc.errno == errno.EACCES:
            why = f"ports below 1024 need privileges; choose another with {option}"
        else:
            why = f"{exc.strerror or exc}"
        raise ListenError(f"cannot listen for {what} on {host} port {port}: {why}") from None


def peer_address(stream: trio.SocketStream) -> str:
    """The remote IP address of ``stream``, or ``"?"`` if it is already gone."""
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressSet:
    """Addresses and networks (``203.0.113.7``, ``198.51.100.0/24``,
    ``2001:db8::/32``), and whether an address is among them.

    Single addresses are found in a set; networks are tried one by one (a
    game bans few). An IPv4 address written as IPv6 (``::ffff:1.2.3.4``)
    matches as IPv4. Entries that are not addresses are ignored.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._addresses: set[IPAddress] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            try:
                network = ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                continue
            if network.num_addresses == 1:
                self._addresses.add(network.network_address)
            else:
                self._networks.append(network)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not (self._addresses or self._networks):
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip in self._addresses or any(ip in network for network in self._networks)

    def __len__(self) -> int:
        return len(self._addresses) + len(self._networks)


class Tally(dict[Any, int]):
    """How many of each key are open now (sockets by address, say).

    A key whose count falls to zero is dropped, so the tally holds only what
    is open and cannot grow with every address ever seen.
    """

    def add(self, key: Any) -> int:
        """Count one more ``key``; how many there were before."""
        before = self.get(key, 0)
        self[key] = before + 1
        return before

    def remove(self, key: Any) -> None:
        """Count one ``key`` fewer (nothing happens if none is counted)."""
        left = self.get(key, 0) - 1
        if left > 0:
            self[key] = left
        else:
            self.pop(key, None)

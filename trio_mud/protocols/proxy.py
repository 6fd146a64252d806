"""The PROXY protocol (HAProxy's, versions 1 and 2), sans-I/O.

A proxy in front of the game (HAProxy, nginx's stream module, a cloud load
balancer) opens each connection with a header naming the client it speaks
for; the portal reads it, only from the addresses in ``upstream_ips``, so
that bans, rate limits and logs see the player's address, not the proxy's.

- v1: one text line, ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n`` (or
  ``TCP6``, or ``UNKNOWN``), at most 107 bytes.
- v2: a 12-byte signature, a version/command byte, a family byte, a 2-byte
  length, then the addresses (and TLVs, skipped). Command LOCAL (a health
  check) carries no client: the connection keeps the proxy's address.

Error handling:
    :func:`parse_header` raises :class:`ProxyHeaderError` for bytes that are
    not a header, or one over its size; it returns None while the header is
    still incomplete. Nothing else escapes it for any input.
"""

from __future__ import annotations

import ipaddress
import struct

from attrs import frozen

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107
#: Largest v2 header accepted (addresses and TLVs), in bytes.
V2_MAX = 16 + 1024


class ProxyHeaderError(Exception):
    """Bytes that are not a PROXY header; the message says how."""


@frozen
class ProxyHeader:
    """A parsed header: the client's address (None: keep the peer's) and its length."""

    source: str | None
    length: int


def parse_header(data: bytes) -> ProxyHeader | None:
    """The PROXY header at the start of ``data``; None if more bytes are needed.

    Raises:
        ProxyHeaderError: ``data`` does not start with a valid header.
    """
    if data[:12] == V2_SIGNATURE[: len(data[:12])] and len(data) < 16:
        return None  # could still be v2
    if data.startswith(V2_SIGNATURE):
        return _v2(data)
    if data.startswith(b"PROXY "[: len(data)]) and b"\n" not in data:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"no end to a v1 header within {V1_MAX} bytes")
        return None
    if data.startswith(b"PROXY "):
        return _v1(data)
    raise ProxyHeaderError("the connection does not start with a PROXY header")


def _v1(data: bytes) -> ProxyHeader:
    end = data.find(b"\r\n")
    if end < 0 or end + 2 > V1_MAX:
        raise ProxyHeaderError("a v1 header must end with CR LF within 107 bytes")
    parts = data[:end].decode("ascii", errors="replace").split(" ")
    if parts[1:2] == ["UNKNOWN"]:
        return ProxyHeader(None, end + 2)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("a v1 header is PROXY TCP4|TCP6 src dst sport dport")
    source = _address(parts[2], 4 if parts[1] == "TCP4" else 6)
    for port in parts[4:6]:
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ProxyHeaderError(f"not a port: {port[:8]!r}")
    return ProxyHeader(source, end + 2)


def _v2(data: bytes) -> ProxyHeader | None:
    version_command, family, length = data[12], data[13], struct.unpack(">H", data[14:16])[0]
    if version_command >> 4 != 2:
        raise ProxyHeaderError("a v2 header of another version")
    if 16 + length > V2_MAX:
        raise ProxyHeaderError(f"a v2 header over {V2_MAX} bytes")
    if len(data) < 16 + length:
        return None
    command = version_command & 0x0F
    if command == 0:  # LOCAL: the proxy itself (a health check)
        return ProxyHeader(None, 16 + length)
    if command != 1:
        raise ProxyHeaderError("a v2 header with an unknown command")
    body = data[16 : 16 + length]
    if family >> 4 == 1 and len(body) >= 12:  # AF_INET
        return ProxyHeader(str(ipaddress.IPv4Address(body[:4])), 16 + length)
    if family >> 4 == 2 and len(body) >= 36:  # AF_INET6
        return ProxyHeader(str(ipaddress.IPv6Address(body[:16])), 16 + length)
    if family >> 4 == 0:  # AF_UNSPEC
        return ProxyHeader(None, 16 + length)
    raise ProxyHeaderError("a v2 header with an address family it does not fit")


def _address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"not an IP address: {text[:40]!r}") from None
    if address.version != version:
        raise ProxyHeaderError(f"{text[:40]!r} is not an IPv{version} address")
    return str(address)


def forwarded_for(header: str) -> str | None:
    """The client's address in an ``X-Forwarded-For`` (the last, which the
    trusted proxy added), or None when it is not an IP address."""
    last = header.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


def trusted(address: str, upstream: tuple[str, ...]) -> bool:
    """Whether ``address`` is one of ``upstream`` (addresses or networks, CIDR)."""
    if not upstream:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for item in upstream:
        try:
            if ip in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False

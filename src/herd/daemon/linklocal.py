"""The claim port takes datagrams from this link only, by the rule of IPv6 neighbour discovery (RFC 4861): a
link-local source (fe80::/10) and hop limit 255. A router lowers the hop limit of what it forwards and forwards
no link-local source, so such a packet was sent on this link, whatever else in it is spoofed. Its senders say
255 (`send_on_link`): the claimer's multicast CLAIMs and RELEASEs (herd.daemon.claiming) and the nodes' answers.
What fails the rule is dropped before it is parsed and counted as `not-link-local` or `hop-limit` (a claim from
a herdd older than the rule, multicast with hop limit 1, is one of the latter).

asyncio's datagram transport reads with recvfrom, which says nothing of the hop limit, so the claim port has a
transport of its own that reads with recvmsg (IPV6_RECVHOPLIMIT). `admit_on_link` and `hop_limit` are pure."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import struct
from typing import Any

from herd.daemon.wire import Drop

log = logging.getLogger("herdd")

HOP_LIMIT = 255
LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")
READS_PER_WAKEUP = 64  # then back to the event loop: a flood on the claim port must not hold up the heartbeats
MAX_READ = 65535
_ANCILLARY = socket.CMSG_SPACE(struct.calcsize("@i"))  # room for one IPV6_HOPLIMIT (an int)


def admit_on_link(host: str, hop_limit: int | None) -> None:
    """Raise Drop unless a datagram from `host` (an IPv6 address, maybe with a %scope) that arrived with
    `hop_limit` (None: the kernel did not say) was sent on this link."""
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        raise Drop("not-link-local") from None
    if address not in LINK_LOCAL:
        raise Drop("not-link-local")
    if hop_limit != HOP_LIMIT:
        raise Drop("hop-limit")


def hop_limit(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The hop limit in recvmsg's ancillary data, or None if it is not there."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(data) >= struct.calcsize("@i"):
            value: int = struct.unpack_from("@i", data)[0]
            return value
    return None


def send_on_link(sock: socket.socket) -> None:
    """What sock sends, unicast or multicast, leaves with hop limit 255, as `admit_on_link` wants."""
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, HOP_LIMIT)


def claim_socket(port: int) -> socket.socket:
    """The claim port's socket: IPv6 only, every address, told each datagram's hop limit, answering with 255."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        send_on_link(sock)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class OnLinkTransport(asyncio.DatagramTransport):
    """A datagram transport that hands its protocol only what `admit_on_link` takes, and counts the rest in
    `dropped` by reason. Answers that cannot be sent at once are not queued: the claimer says its claim again."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.DatagramProtocol,
                 dropped: collections.Counter[str]) -> None:
        super().__init__({"socket": sock, "sockname": sock.getsockname()})
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._dropped = dropped
        self._closing = False

    def read_ready(self) -> None:
        """Read what is queued (at most READS_PER_WAKEUP datagrams; the event loop calls again for more)."""
        for _ in range(READS_PER_WAKEUP):
            if self._closing:
                return
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(MAX_READ, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for something sent before
                self._protocol.error_received(exc)
                continue
            limit = hop_limit(ancdata)
            try:
                admit_on_link(addr[0], limit)
            except Drop as drop:
                if not self._dropped[drop.reason]:  # the first of each kind is said, the rest counted
                    log.warning("claim port: dropped a datagram from %s (scope %s) with hop limit %s: %s "
                                "(taken only from fe80::/10 with hop limit %d)", addr[0], addr[3], limit,
                                drop.reason, HOP_LIMIT)
                self._dropped[drop.reason] += 1
                continue
            self._protocol.datagram_received(data, addr)

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:  # BlockingIOError too: not queued (see the class)
            self._protocol.error_received(exc)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol


def listen(protocol: asyncio.DatagramProtocol, port: int, dropped: collections.Counter[str]) -> OnLinkTransport:
    """Open the claim port on the running event loop for `protocol` (its connection_made is called)."""
    loop = asyncio.get_running_loop()
    sock = claim_socket(port)
    transport = OnLinkTransport(loop, sock, protocol, dropped)
    loop.add_reader(sock.fileno(), transport.read_ready)
    protocol.connection_made(transport)
    return transport

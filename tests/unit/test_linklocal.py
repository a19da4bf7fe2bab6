"""The claim port's rule (neighbour discovery's): a datagram is taken from a link-local source with hop limit 255
only; the rest is dropped before it is parsed and counted. Its sockets say 255 when they send. No root: the
kernel's hop limit is read over loopback, the transport's choices with a socket that is not one."""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from herd.daemon import linklocal
from herd.daemon.linklocal import HOP_LIMIT, READS_PER_WAKEUP, OnLinkTransport, admit_on_link, hop_limit
from herd.daemon.wire import REASONS, Drop


def reason(host: str, limit: int | None) -> str | None:
    try:
        admit_on_link(host, limit)
    except Drop as drop:
        assert drop.reason in REASONS
        return drop.reason
    return None


def test_only_a_link_local_source_with_hop_limit_255_is_taken() -> None:
    for host in ("fe80::5054:ff:fe00:99", "fe80::1%eth0", "febf:ffff::1"):  # all of fe80::/10
        assert reason(host, 255) is None, host
    for host in ("fec0::1", "fd00:68::66", "2001:db8::1", "::1", "::", "ff02::1", "::ffff:192.168.50.11",
                 "192.168.50.11", "", "fe80::zz"):
        assert reason(host, 255) == "not-link-local", host
    for limit in (254, 64, 1, 0, None):  # crossed a router, a sender that does not say 255, or not told
        assert reason("fe80::1", limit) == "hop-limit", limit


def hops(value: int) -> tuple[int, int, bytes]:
    return socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", value)


def test_the_hop_limit_is_read_from_the_ancillary_data() -> None:
    assert hop_limit([hops(255)]) == 255
    assert hop_limit([(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, b"\0" * 20), hops(7)]) == 7
    assert hop_limit([]) is None
    assert hop_limit([(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, b"\xff")]) is None  # cut short (MSG_CTRUNC)
    assert hop_limit([(socket.SOL_SOCKET, socket.IPV6_HOPLIMIT, struct.pack("@i", 255))]) is None


def test_the_claim_socket_is_told_the_hop_limit_and_sends_with_255() -> None:
    sock = linklocal.claim_socket(0)
    with sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT) == 1
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == HOP_LIMIT
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == HOP_LIMIT
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        # What the kernel says of a datagram's hop limit is what hop_limit reads (over loopback, no root).
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 7)
            sender.sendto(b"x", ("::1", sock.getsockname()[1]))
        sock.setblocking(True)
        sock.settimeout(5)
        data, ancdata, _, addr = sock.recvmsg(100, socket.CMSG_SPACE(4))
        assert data == b"x" and hop_limit(ancdata) == 7 and addr[0] == "::1"


def test_send_on_link_makes_a_claimers_socket_send_with_255() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == 1  # the kernel's default
        linklocal.send_on_link(sock)
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == HOP_LIMIT
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == HOP_LIMIT


class Heard(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple[Any, ...]]] = []

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.datagrams.append((data, addr))


class Queued:
    """Stands in for the claim socket: recvmsg hands out what is queued, then would block."""

    def __init__(self, datagrams: list[tuple[bytes, list[tuple[int, int, bytes]], tuple[Any, ...]]]) -> None:
        self.datagrams = collections.deque(datagrams)

    def getsockname(self) -> tuple[Any, ...]:
        return ("::", 694, 0, 0)

    def recvmsg(self, size: int, ancsize: int) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[Any, ...]]:
        if not self.datagrams:
            raise BlockingIOError
        data, ancdata, addr = self.datagrams.popleft()
        return data, ancdata, 0, addr


@pytest.fixture
def idle_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_the_transport_hands_on_what_is_on_link_and_counts_the_rest(
        idle_loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    box = ("fe80::5054:ff:fe00:99", 40000, 0, 2)
    sock = Queued([(b"claim", [hops(255)], box),
                   (b"routed", [hops(64)], box),
                   (b"from afar", [hops(255)], ("2001:db8::1", 40000, 0, 0)),
                   (b"untold", [], box),
                   (b"routed again", [hops(254)], box),
                   (b"claim again", [hops(255)], box)])
    heard, dropped = Heard(), collections.Counter[str]()
    transport = OnLinkTransport(idle_loop, sock, heard, dropped)  # type: ignore[arg-type]
    transport.read_ready()
    assert heard.datagrams == [(b"claim", box), (b"claim again", box)]
    assert dropped == {"hop-limit": 3, "not-link-local": 1}
    said = [r.getMessage() for r in caplog.records if "claim port: dropped" in r.getMessage()]
    assert len(said) == 2  # the first of each reason, not every one


def test_a_flood_is_read_a_bounded_batch_at_a_time(idle_loop: asyncio.AbstractEventLoop) -> None:
    box = ("fe80::1", 40000, 0, 2)
    sock = Queued([(b"%d" % i, [hops(255)], box) for i in range(READS_PER_WAKEUP * 2 + 5)])
    heard = Heard()
    transport = OnLinkTransport(idle_loop, sock, heard, collections.Counter())  # type: ignore[arg-type]
    transport.read_ready()
    assert len(heard.datagrams) == READS_PER_WAKEUP  # then back to the event loop, which calls again
    transport.read_ready()
    transport.read_ready()
    assert len(heard.datagrams) == READS_PER_WAKEUP * 2 + 5


def test_listen_opens_the_port_on_the_idle_loop_and_close_shuts_it() -> None:
    async def main() -> None:
        heard, dropped = Heard(), collections.Counter[str]()
        transport = linklocal.listen(heard, 0, dropped)
        port = transport.get_extra_info("sockname")[1]
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            linklocal.send_on_link(sender)
            sender.sendto(b"from loopback", ("::1", port))
        for _ in range(200):
            if dropped:
                break
            await asyncio.sleep(0.01)
        assert dropped == {"not-link-local": 1} and heard.datagrams == []  # ::1 is not on any link
        transport.close()
        assert transport.is_closing()
        transport.close()  # twice is harmless

    asyncio.run(main())

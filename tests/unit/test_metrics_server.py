"""The metrics endpoint's server on loopback: answers, and costs herdd a bounded number of descriptors whatever
clients do (too many at once are closed at once, an idle one after the timeout, strangers unanswered)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import Counter

from herd.daemon.metricsserver import MetricsServer, allowed

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def test_allowed_sources() -> None:
    lan = [ipaddress.ip_network("192.168.50.0/24"), ipaddress.ip_network("fd00::/64")]
    assert allowed("192.168.50.7", lan)
    assert allowed("::ffff:192.168.50.7", lan)  # an IPv4 client on a dual-stack socket
    assert allowed("fd00::5", lan)
    assert allowed("fd00::5%eth0", lan)
    assert not allowed("192.168.51.7", lan)
    assert not allowed("127.0.0.1", lan)
    assert not allowed("not an address", lan)


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closed `sock` (EOF or reset) within `within` seconds."""
    loop = asyncio.get_running_loop()
    try:
        data = await asyncio.wait_for(loop.sock_recv(sock, 1), within)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return data == b""


async def _started(**kwargs: object) -> tuple[MetricsServer, Counter[str], int]:
    """A server on loopback (port chosen by the kernel), the reasons it refused connections for, its port."""
    refused: Counter[str] = Counter()
    networks = kwargs.pop("networks", LOOPBACK)
    server = MetricsServer(lambda: "herd_up 1\n", networks, lambda reason: refused.update([reason]),  # type: ignore[arg-type]
                           **kwargs)  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0)
    assert server.server is not None
    return server, refused, server.server.sockets[0].getsockname()[1]


def _idle(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def test_answers_and_404() -> None:
    async def main() -> None:
        server, _, port = await _started()
        answer = await _get(port)
        assert answer.startswith(b"HTTP/1.0 200 OK") and answer.endswith(b"herd_up 1\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /secret HTTP/1.0\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.0 404")
        server.close()

    asyncio.run(main())


def test_more_clients_than_the_cap_are_closed_at_once_and_served_again_after() -> None:
    async def main() -> None:
        server, refused, port = await _started(max_clients=4, timeout=1.0)
        held = [_idle(port) for _ in range(4)]
        await asyncio.sleep(0.2)
        assert server.active == 4
        extra = [_idle(port) for _ in range(20)]
        for sock in extra:
            assert await _closed_by_server(sock, 1.0)
        assert refused["metrics_busy"] == 20 and server.active == 4
        # The idle ones go after the timeout, and the endpoint answers again.
        for sock in held:
            assert await _closed_by_server(sock, 3.0)
        assert server.active == 0
        assert (await _get(port)).endswith(b"herd_up 1\n")
        for sock in held + extra:
            sock.close()
        server.close()

    asyncio.run(main())


def test_a_client_outside_the_allowed_networks_gets_nothing() -> None:
    async def main() -> None:
        server, refused, port = await _started(networks=[ipaddress.ip_network("192.168.50.0/24")])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        try:
            data = await reader.read()
        except ConnectionError:
            data = b""
        assert data == b"" and refused["metrics_source"] == 1 and server.active == 0
        server.close()

    asyncio.run(main())


def test_an_oversized_request_head_is_cut_off() -> None:
    async def main() -> None:
        server, _, port = await _started()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\n" + b"X-Junk: " + b"a" * 100_000)
        try:
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionError:
            data = b""
        assert b"herd_up" not in data and server.active == 0
        server.close()

    asyncio.run(main())

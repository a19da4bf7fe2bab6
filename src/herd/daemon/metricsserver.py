"""The Prometheus endpoint's server. Anyone on the LAN can reach its port, so whatever a client does it costs herdd
a bounded number of file descriptors and bytes: at most `max_clients` connections are served at once (more are
closed as soon as they are accepted), each has `timeout` seconds to send its request and read the answer, a
request head may be at most LIMIT bytes, and only addresses in the allowed networks (the spec's subnet by default)
are answered; the server listens on the node's address, so the node itself comes from there too. Without that, a
thousand idle connections held open from the LAN used up herdd's descriptors: its health checks, commands and
state writes failed with EMFILE, and every real server went to weight 0."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_CLIENTS = 16  # Prometheus scrapes a node once every few seconds; a person with curl adds one
TIMEOUT = 2.0  # seconds a client has to send its request and read the answer
LIMIT = 8192  # bytes of request head: "GET /metrics HTTP/1.1" and a few headers
# The listen queue, and how many connections asyncio accepts in one go before their handlers run (and close the
# ones over the cap): with the cap, the most descriptors a flood can hold at a time.
BACKLOG = 32


def allowed(peer: str, networks: Sequence[Network]) -> bool:
    """Whether a connection from `peer` (an address as the socket gives it) may be answered."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class MetricsServer:
    def __init__(self, render: Callable[[], str], networks: Sequence[Network], refused: Callable[[str], None],
                 max_clients: int = MAX_CLIENTS, timeout: float = TIMEOUT) -> None:
        """render: the exposition text, made when a client asks; refused(reason) counts a connection turned
        away ("metrics_busy", "metrics_source")."""
        self.render = render
        self.networks = tuple(networks)
        self.refused = refused
        self.max_clients = max_clients
        self.timeout = timeout
        self.active = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, host=host, port=port, limit=LIMIT,
                                                 backlog=BACKLOG)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        reason = None
        if not (isinstance(peer, tuple) and allowed(str(peer[0]), self.networks)):
            reason = "metrics_source"
        elif self.active >= self.max_clients:
            reason = "metrics_busy"
        if reason is not None:
            self.refused(reason)
            writer.transport.abort()  # the descriptor goes now, not after a FIN handshake
            return
        self.active += 1
        try:
            await asyncio.wait_for(self._answer(reader, writer), self.timeout)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            writer.transport.abort()
        finally:
            self.active -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
        if path in (b"/metrics", b"/"):
            body = self.render().encode()
            head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        else:
            body, head = b"not found\n", b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
        writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

"""A web node's NFS client follows the replicated docroot's service address to the node that serves it now.

When the address moves, the client's TCP connection still points at the old server, which is dead or cut off;
the client finds out only at its next TCP retransmission, and those back off exponentially (about 12 s late
after a 10 s outage). So once another nfs node says it serves and holds the address, the stale connection is
cut (`ss -K`, the kernel's socket destroy): the client reconnects at once and reclaims its open files. Pure
part: `Follow`; the side effect: `cut_connections`."""

from __future__ import annotations

import subprocess

from herd.daemon import drbd
from herd.daemon.membership import Peer
from herd.spec import Node

NFS_PORT = 2049


def server(peers: dict[str, Peer], nfs_nodes: tuple[Node, ...]) -> tuple[str, drbd.Report] | None:
    """The nfs node heard saying it serves the replicated docroot, and its report."""
    for node in nfs_nodes:
        peer = peers[node.name]
        report = drbd.Report.from_json(peer.health.get("drbd"))
        if peer.alive and report is not None and report.serving:
            return node.name, report
    return None


def ready_server(peers: dict[str, Peer], nfs_nodes: tuple[Node, ...]) -> str | None:
    """The nfs node that says it serves and is done (NFS up, the address held), if any is heard."""
    found = server(peers, nfs_nodes)
    return found[0] if found is not None and found[1].ready else None


class Follow:
    """Says when to cut the client's connection: a server is ready that was not a moment ago (another node, or
    the same after a time nobody was), and this node had known one before (at start-up there is none to cut)."""

    def __init__(self) -> None:
        self.previous: str | None = None
        self.known = False

    def moved(self, ready: str | None) -> bool:
        cut = ready is not None and ready != self.previous and self.known
        self.previous = ready
        self.known = self.known or ready is not None
        return cut


def cut_connections(address: str, port: int = NFS_PORT) -> str | None:
    """Destroy the TCP connections to address:port (the NFS client's are the kernel's own); an error or None."""
    r = subprocess.run(["ss", "-K", "dst", address, "dport", "=", str(port)], capture_output=True, text=True,
                       timeout=10)
    return None if r.returncode == 0 else (r.stderr.strip() or f"ss exited {r.returncode}")

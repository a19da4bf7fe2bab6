"""DRBD's fence-peer handler on a replicating nfs node: may this node count its unreachable peer as outdated?
Only herdd knows (it serves by the cluster's quorum, herd.daemon.storage); this asks it. DRBD runs it when a
standby promotes during a failover, so it starts in a fraction of a second: no shiv bootstrap and no rich, the
package imported straight from herdd's zipapp (overlay/nfs/usr/local/sbin/herd-fence-peer). `herdctl fence-peer`
is the same for people."""

from __future__ import annotations

import sys
from pathlib import Path

from herd.ctlsocket import SOCKET, CtlError, request

# drbd.conf(5), DRBD 8.4: 5 = the peer is unreachable and may be counted as outdated; anything else = it may not.
FENCE_OUTDATED, FENCE_REFUSED = 5, 1


def fence_peer(socket: Path = SOCKET) -> int:
    try:
        fence = request(socket, {"cmd": "fence-peer"}, timeout=10).get("fence") is True
    except CtlError as exc:
        print(f"herd fence-peer: {exc}", file=sys.stderr)
        return FENCE_REFUSED
    print("herd fence-peer: " + ("this node serves by the quorum: the peer counts as outdated" if fence
                                 else "this node does not serve: the peer is not outdated"))
    return FENCE_OUTDATED if fence else FENCE_REFUSED


def main(argv: list[str]) -> int:
    """herd-fence-peer [--socket PATH]"""
    if argv[:1] == ["--socket"] and len(argv) == 2:
        return fence_peer(Path(argv[1]))
    if argv:
        print("usage: herd-fence-peer [--socket PATH]", file=sys.stderr)
        return FENCE_REFUSED
    return fence_peer()

"""Who holds the VIP: the director election. Pure: the membership view and the clock in, effects out.

Among the alive directors, the one with the highest spec priority (ties: the name) that sees a quorum — a
strict majority of all the spec's nodes, itself included — holds the VIP. Holding is a lease: the holder lets
go as soon as it has not heard from a quorum for `deadtime - 2 x interval`, which is before any standby can
decide it is dead (after `deadtime`), so a partition never leaves two holders. A standby takes over only when
no alive director says it holds the VIP. No preemption by default: a recovered higher-priority director
leaves the VIP where it is unless the spec says `preempt = true`. A node that just started waits one
deadtime to learn who holds before it may take over, and so does one that regains a quorum after a partition.
Should two hold at once all the same (both came up cut off), the lower-ranked lets go and the other sends its
gratuitous ARPs again once it sees that, since the loser's may have drawn the LAN's traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from herd.daemon.membership import Peer
from herd.spec import Node, Role, Spec


@dataclass(frozen=True)
class AcquireVip:
    pass


@dataclass(frozen=True)
class ReleaseVip:
    reason: str


@dataclass(frozen=True)
class AnnounceVip:
    """Send the gratuitous ARPs again: a rival claimant has let go, and its ARPs may have taken the VIP's
    traffic (the loser of a conflict sent some when it took the VIP)."""

    rival: str


Effect = AcquireVip | ReleaseVip | AnnounceVip


def rank(node: Node) -> tuple[int, str]:
    # Higher priority first; between equals the name decides, the same way on every node.
    return (node.priority, node.name)


class Election:
    def __init__(self, spec: Spec, me: str, now: float, preempt: bool = False) -> None:
        self.spec = spec
        node = spec.node_named(me)
        if node is None:
            raise KeyError(me)
        self.me: Node = node
        self.started = now
        self.quorum = len(spec.nodes) // 2 + 1
        m = spec.membership
        self.deadtime = m.deadtime_ms / 1000
        self.lease = max(m.deadtime_ms - 2 * m.interval_ms, m.interval_ms) / 1000
        self.preempt = preempt
        self.holding = False
        self.quorum_since: float | None = None  # since when this node has seen a quorum without a break
        self.rivals: set[str] = set()  # other directors claiming the VIP while this one holds it

    def _seen(self, peers: dict[str, Peer], now: float, window: float) -> set[str]:
        return {name for name, p in peers.items()
                if name == self.me.name or (p.alive and p.last_seen is not None and now - p.last_seen <= window)}

    def holder(self, peers: dict[str, Peer]) -> str | None:
        """Who holds the VIP as this node sees it (the best-ranked claimant, should there be two)."""
        claimants = [p.node for name, p in peers.items()
                     if (self.holding if name == self.me.name else p.alive and p.holds_vip)]
        return max(claimants, key=rank).name if claimants else None

    def tick(self, now: float, peers: dict[str, Peer], settling: bool = False) -> list[Effect]:
        """`settling`: this node is just back from a pause of its own (Membership.settling); the silence it
        sees may be heartbeats it has not read yet, so nothing is taken or let go until it has."""
        if self.me.role != Role.DIRECTOR or settling:
            return []
        if len(self._seen(peers, now, self.deadtime)) < self.quorum:
            self.quorum_since = None
        elif self.quorum_since is None:
            self.quorum_since = now
        if self.holding:
            reason = self._reason_to_release(now, peers)
            if reason:
                self.holding = False
                return [ReleaseVip(reason)]
            rivals = {name for name, p in peers.items() if name != self.me.name and p.alive and p.holds_vip
                      and p.node.role == Role.DIRECTOR}
            gone, self.rivals = self.rivals - rivals, rivals
            return [AnnounceVip(min(gone))] if gone else []
        if self._may_take(now, peers):
            self.holding, self.rivals = True, set()
            return [AcquireVip()]
        return []

    def _reason_to_release(self, now: float, peers: dict[str, Peer]) -> str | None:
        if len(self._seen(peers, now, self.lease)) < self.quorum:
            return "lost quorum"
        others = [p.node for name, p in peers.items() if name != self.me.name and p.alive
                  and p.node.role == Role.DIRECTOR]
        if any(peers[n.name].holds_vip and rank(n) > rank(self.me) for n in others):
            return f"{max((n for n in others if peers[n.name].holds_vip), key=rank).name} holds it too"
        if self.preempt:
            better = [n for n in others if rank(n) > rank(self.me)]
            if better:
                return f"preempted by {max(better, key=rank).name}"
        return None

    def _may_take(self, now: float, peers: dict[str, Peer]) -> bool:
        # Just started, or back from a partition: first listen for a deadtime, so that the holder on the
        # other side (heard later than the rest, maybe) is known before anything is taken.
        if now - self.started < self.deadtime or self.quorum_since is None:
            return False
        if now - self.quorum_since < self.deadtime:
            return False
        seen = self._seen(peers, now, self.deadtime)
        alive_directors = [peers[n].node for n in seen if peers[n].node.role == Role.DIRECTOR]
        if any(peers[d.name].holds_vip for d in alive_directors if d.name != self.me.name):
            return False
        return max(alive_directors, key=rank).name == self.me.name

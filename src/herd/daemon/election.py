"""Who holds the VIP: the director election. Pure: the membership view and the clock in, effects out.

Among the alive directors that see a quorum — a strict majority of all the spec's nodes, themselves included,
heard from within the lease — the one with the highest spec priority (ties: the name) holds the VIP. Every
director says in its heartbeats whether it sees a quorum, so one that is heard by all but hears nobody (its
inbound path broken) is passed over instead of blocking the others forever.

Holding is a lease: the holder lets go as soon as it has not heard from a quorum for `deadtime - 2 x
interval`, which is before any standby can decide it is dead (after `deadtime`), so a partition never leaves
two holders; and it needs a quorum for a whole deadtime before taking it again, so it does not flap while
the old heartbeats age out. A holder whose own ticks stopped for longer than the lease (a stalled process
or VM) lets go when it resumes, and does not claim the VIP in the heartbeats it sends before that, since a
standby may have taken over meanwhile. A standby takes over only when no alive director says it holds the
VIP. No preemption by default: a recovered higher-priority director leaves the VIP where it is unless the
spec says `preempt = true`. A node that just started waits one deadtime to learn who holds before it may
take over.

Should two hold at once all the same (both came up cut off), the lower-ranked lets go and the other sends its
gratuitous ARPs again once it sees that, since the loser's may have drawn the LAN's traffic. A lower-ranked
rival that goes on claiming for a deadtime cannot be hearing this node (it would have let go): then this
node yields, since it is the one that hears both, and the rival keeps the VIP alone.
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
        self.quorate = False  # heard from a quorum within the lease, at the last tick
        self.quorum_since: float | None = None  # since when this node has seen a quorum without a break
        self.last_tick: float | None = None
        self.rivals: set[str] = set()  # other directors claiming the VIP while this one holds it
        self.rival_since: dict[str, float] = {}  # lower-ranked rivals: since when each has been claiming

    def _seen(self, peers: dict[str, Peer], now: float, window: float) -> set[str]:
        return {name for name, p in peers.items()
                if name == self.me.name or (p.alive and p.last_seen is not None and now - p.last_seen <= window)}

    def holder(self, peers: dict[str, Peer]) -> str | None:
        """Who holds the VIP as this node sees it (the best-ranked claimant, should there be two)."""
        claimants = [p.node for name, p in peers.items()
                     if (self.holding if name == self.me.name else p.alive and p.holds_vip)]
        return max(claimants, key=rank).name if claimants else None

    def claims(self, now: float) -> bool:
        """Whether this node's heartbeat may say it holds the VIP: not if it has not ticked for longer than
        the lease (it is about to let go, see tick)."""
        return self.holding and (self.last_tick is None or now - self.last_tick <= self.lease)

    def tick(self, now: float, peers: dict[str, Peer], settling: bool = False) -> list[Effect]:
        """`settling`: this node is just back from a pause of its own (Membership.settling); the silence it
        sees may be heartbeats it has not read yet, so nothing is taken or let go on quorum until it has."""
        if self.me.role != Role.DIRECTOR:
            return []
        paused = None if self.last_tick is None else now - self.last_tick
        self.last_tick = now
        if paused is not None and paused > self.lease:
            # A standby may have decided this node was dead and taken over while it was not running.
            self.quorum_since = None
            if self.holding:
                self.holding, self.rival_since = False, {}
                return [ReleaseVip(f"paused for {paused * 1000:.0f} ms, longer than the lease")]
        if settling:
            return []
        self.quorate = len(self._seen(peers, now, self.lease)) >= self.quorum
        if not self.quorate:
            self.quorum_since = None
        elif self.quorum_since is None:
            self.quorum_since = now
        if self.holding:
            reason = self._reason_to_release(now, peers)
            if reason:
                self.holding, self.rival_since = False, {}
                return [ReleaseVip(reason)]
            rivals = {name for name, p in peers.items() if name != self.me.name and p.alive and p.holds_vip
                      and p.node.role == Role.DIRECTOR}
            gone, self.rivals = self.rivals - rivals, rivals
            return [AnnounceVip(min(gone))] if gone else []
        if self._may_take(now, peers):
            self.holding, self.rivals, self.rival_since = True, set(), {}
            return [AcquireVip()]
        return []

    def _reason_to_release(self, now: float, peers: dict[str, Peer]) -> str | None:
        if not self.quorate:
            return "lost quorum"
        others = [p.node for name, p in peers.items() if name != self.me.name and p.alive
                  and p.node.role == Role.DIRECTOR]
        if any(peers[n.name].holds_vip and rank(n) > rank(self.me) for n in others):
            return f"{max((n for n in others if peers[n.name].holds_vip), key=rank).name} holds it too"
        lower = {n.name for n in others if peers[n.name].holds_vip}
        self.rival_since = {name: self.rival_since.get(name, now) for name in lower}
        deaf = sorted(name for name, since in self.rival_since.items() if now - since >= self.deadtime)
        if deaf:
            return f"{deaf[0]} has claimed it too for {self.deadtime * 1000:.0f} ms: it cannot hear this node"
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
        # A director that says it hears no quorum cannot take it: the next best does, rather than nobody.
        candidates = [d for d in alive_directors if d.name == self.me.name or peers[d.name].quorate]
        return max(candidates, key=rank).name == self.me.name

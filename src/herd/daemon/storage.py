"""Who serves the replicated docroot: the DRBD primary of two nfs nodes. Pure: the membership view, this
node's DRBD report and the clock in, effects out (herd.daemon.storagelink carries them out).

The node that serves is DRBD primary, has the filesystem mounted, runs the NFS server and holds the NFS service
address. The rules, in the spirit of the director election:

- Serving is a lease: a server that has not heard from a quorum (a strict majority of the spec's nodes) for
  `deadtime - 2 x interval` stops serving at once, dropping the address before it cuts DRBD's link, so no
  write it takes after that can be acknowledged to anyone. Its changes since are "unacknowledged": once the
  other side serves, this node throws them away when it reconnects (`victim`), and only then.
- A server whose own ticks stopped for longer than the lease (a stalled process or VM) stops serving the same
  way at its first tick after, before it reads what was queued meanwhile (the heartbeats of a quorum that may
  since have let the other node take over): it cannot know that its lease held. Until that tick, and while it
  settles after any pause of its own, it lets no fence-peer handler count the peer as outdated, and the
  heartbeats it sends before that tick do not say it serves (`claims`).
- A server that hears of a term newer than its own (from the other node or from anyone passing it on) steps
  down the same way: only the other node starts terms while this one serves, so the other took over and holds
  the newest data. This is checked before this node starts a term of its own, which would hide it. Each nfs
  node's DRBD report says the term of its own disk (`term`), so a server that hears the other serve an older
  term too does not step down for it, first nfs node or not: the other steps down for the newer one.
- A standby serves when it sees a quorum (for a deadtime, as after a start or a partition), its disk is
  UpToDate and the other node does not serve: at first start (both disks blank) the first nfs node in spec
  order creates the disk; with both up to date and connected, the first nfs node serves; otherwise the one
  with the good disk does.
- Terms say whose data is newest. Each serving period has a term, one more than any the node knows of; a
  server that goes on without its peer in sync starts a new one; a standby in sync with the server shares the
  server's term. Every node, whatever its role, passes on the highest term it has heard (`storage_term` in its
  heartbeats), so the cluster remembers a server's term after the server is gone.
- A standby takes over from a silent peer only `deadtime + grace` after it was last heard (the grace, two
  heartbeat intervals, is the margin by which a partitioned server's lease runs out first), only once no node
  it hears still hears the peer (every node says whom it hears, `hears` in its heartbeats: a peer silent to this
  node alone is cut off from it, not gone, and may serve on with the others' quorum), only if its own term is
  the highest its quorum knows of (nobody served without it since), its disk was in sync with the peer when the
  peer was last heard (or it was the server itself), and the peer did not say it was serving without it.
  Anything else could lose acknowledged writes, so it waits for the peer instead (as Galera's rules do).
- DRBD notices a dead link only after its ping timeout; a standby that would take over but for DRBD still
  seeing the peer cuts the link itself if the peer's host does not answer ARP (`CutLink`).
- A standby that hears the server say it is cut off from us marks its own disk Outdated (DRBD then refuses to
  promote it too); DRBD's fence-peer handler asks herdd (`may_fence`) before treating the peer as outdated,
  and herdd answers from the lease at that moment, not from its last tick.

DRBD's own split-brain policies are all "disconnect": it never throws data away by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herd.daemon.drbd import Report
from herd.daemon.membership import Peer
from herd.spec import Node, Role, Spec

GRACE_BEATS = 2       # heartbeat intervals past the deadtime before a standby takes over from a silent server
RETRY_AFTER = 5.0     # seconds after a failed attempt to serve
REPEAT_AFTER = 5.0    # seconds before the same housekeeping effect (reconnect, outdate, step down) again


@dataclass(frozen=True)
class Initialize:
    """First start of the pair: force this blank disk primary (DRBD then syncs it to the peer), make the
    filesystem, and serve."""

    reason: str


@dataclass(frozen=True)
class Promote:
    reason: str


@dataclass(frozen=True)
class Demote:
    reason: str
    disconnect: bool = False  # cut DRBD's link too (after the address is gone): this node lost quorum


@dataclass(frozen=True)
class Connect:
    discard_mine: bool = False  # resolve a split brain by dropping this node's unacknowledged changes


@dataclass(frozen=True)
class Outdate:
    reason: str


@dataclass(frozen=True)
class CutLink:
    """Cut DRBD's link to the silent peer if its host does not answer ARP either (storagelink asks the LAN)."""

    peer: str
    address: str


Effect = Initialize | Promote | Demote | Connect | Outdate | CutLink


class Storage:
    def __init__(self, spec: Spec, me: str, now: float, victim: bool = False, term: int = 0) -> None:
        servers = spec.nodes_of(Role.NFS)
        names = [n.name for n in servers]
        if len(servers) != 2 or me not in names:
            raise ValueError(f"replicated storage needs two nfs nodes, {me} one of them; got {names}")
        self.me: Node = servers[names.index(me)]
        self.peer: Node = servers[1 - names.index(me)]
        self.first = names[0] == me  # breaks ties: creates the disk, serves when both are up to date
        self.quorum = len(spec.nodes) // 2 + 1
        m = spec.membership
        self.deadtime = m.deadtime_ms / 1000
        self.lease = max(m.deadtime_ms - 2 * m.interval_ms, m.interval_ms) / 1000
        self.grace = GRACE_BEATS * m.interval_ms / 1000
        self.slack = 3 * m.interval_ms / 1000  # how far apart "in sync" and "last heard" may be sampled
        self.started = now
        self.serving = False
        self.victim = victim  # stopped serving for lost quorum; our changes since are unacknowledged
        self.quorum_since: float | None = None
        self.in_sync_at: float | None = None  # the last time this disk held every acknowledged write (in sync, serving)
        self.term = term  # the term of the data on this disk (kept on disk by the caller)
        self.alone = False  # serving without the peer in sync: a term of its own was started for it
        self.retry_at = 0.0
        self.waiting = "starting"  # why this node does not serve, for herdctl
        self._repeat: dict[Effect, float] = {}  # housekeeping effect -> when it may be given again
        self.peers_seen: dict[str, Peer] = {}  # the view of the current tick
        self.last_tick: float | None = None

    def _seen(self, peers: dict[str, Peer], now: float, window: float) -> set[str]:
        return {name for name, p in peers.items()
                if name == self.me.name or (p.alive and p.last_seen is not None and now - p.last_seen <= window)}

    def peer_report(self, peers: dict[str, Peer]) -> Report | None:
        peer = peers[self.peer.name]
        return Report.from_json(peer.health.get("drbd")) if peer.last_seen is not None else None

    def peer_own_term(self, peer: Peer) -> int | None:
        """The term of the data on the peer's disk, as its DRBD report in its last heartbeat says (`term`; not
        its `storage_term`, the highest it knows of, which includes this node's own)."""
        raw = peer.health.get("drbd")
        term = raw.get("term") if isinstance(raw, dict) else None
        return term if isinstance(term, int) and not isinstance(term, bool) else None

    def known_term(self, peers: dict[str, Peer]) -> int:
        """The highest term this node or any alive node it hears has seen: what it passes on."""
        terms = [self.term] + [t for name, p in peers.items() if name != self.me.name and p.alive
                               and isinstance(t := p.health.get("storage_term"), int) and not isinstance(t, bool)]
        return max(terms)

    def tick(self, now: float, peers: dict[str, Peer], local: Report, settling: bool = False) -> list[Effect]:
        """`settling`: this node is just back from a pause of its own (Membership.settling); the quorum it sees
        may be heartbeats not read yet, so nothing is decided until it has."""
        paused = None if self.last_tick is None else now - self.last_tick
        self.last_tick = now
        if paused is not None and paused > self.lease:
            # The other node may have taken over while this one was not running (its lease cannot be vouched
            # for): step down now, before the heartbeats queued meanwhile make the quorum look unbroken.
            self.quorum_since = None
            if self.serving:
                return [self._step_down(f"paused for {paused * 1000:.0f} ms, longer than the lease")]
        if settling:
            return []
        self.peers_seen = peers
        peer, report = peers[self.peer.name], self.peer_report(peers)
        if local.in_sync:
            self.in_sync_at = now
            peer_term = peer.health.get("storage_term")
            if not self.serving and report is not None and report.serving:
                # In sync with the server: its data is ours too, and nothing of ours is left to drop. (Not merely
                # "in sync": DRBD can look connected for a moment after this node stepped down, before its own
                # timers notice the partition.)
                self.victim = False
                if isinstance(peer_term, int):
                    self.term = max(self.term, peer_term)
        if self.serving:
            self.in_sync_at = now
            newest = self.known_term(peers)
            if newest > self.term:
                # Read before this node starts a term of its own below, which would be higher still and hide it.
                return [self._step_down(f"a newer term ({newest}, this node's is {self.term}) was served without "
                                        "this node")]
            quorate = len(self._seen(peers, now, self.lease)) >= self.quorum  # else it steps down: no new term
            if not local.in_sync and local.primary and not self.alone and quorate:
                self.alone = True  # writes from now on are on this disk only: a new term says so
                self.term = self.known_term(peers) + 1
            elif local.in_sync:
                self.alone = False
        if len(self._seen(peers, now, self.deadtime)) < self.quorum:
            self.quorum_since = None
        elif self.quorum_since is None:
            self.quorum_since = now
        if self.serving:
            effects = self._serving(now, peers, local, peer, report)
        else:
            effects = self._standing_by(now, local, peer, report)
        return [e for e in effects if self._due(now, e)]

    def _due(self, now: float, effect: Effect) -> bool:
        """Reconnecting, outdating and stepping down are repeated while DRBD still shows the old state (the
        effect runs elsewhere, and may fail): not more often than every REPEAT_AFTER seconds."""
        if isinstance(effect, Initialize | Promote) or (isinstance(effect, Demote) and effect.disconnect):
            return True
        if self._repeat.get(effect, 0.0) > now:
            return False
        self._repeat[effect] = now + REPEAT_AFTER
        return True

    def _step_down(self, why: str) -> Demote:
        """Stop serving at once, for a lease that may have run out: everything this node writes from now on is
        unacknowledged, and DRBD's link is cut so that it is dropped when this node reconnects."""
        self.serving = False
        self.victim = True
        self.waiting = why
        return Demote(why, disconnect=True)

    def claims(self, now: float) -> bool:
        """Whether this node's heartbeats may say it serves: not once its own ticks stopped for longer than the
        lease (its next tick steps down for that, see tick). The heartbeat task may run before that tick after
        a pause, and the other node, which may have taken over meanwhile, must not hear it claim to serve."""
        return self.serving and (self.last_tick is None or now - self.last_tick <= self.lease)

    def heartbeat_report(self, report: dict[str, Any], now: float) -> dict[str, Any]:
        """This node's DRBD report (Report.to_json) as a heartbeat sent now is to say it: not serving (nor
        ready) if it is about to step down for a pause that its next tick has not seen yet."""
        if self.claims(now) or not report.get("serving"):
            return report
        return {**report, "serving": False, "ready": False}

    def failed(self, now: float) -> None:
        """Serving could not be set up (the effects' runner says so): stand by, try again later."""
        self.serving = False
        self.retry_at = now + RETRY_AFTER

    def may_fence(self, now: float, peers: dict[str, Peer], settling: bool = False) -> bool:
        """DRBD's fence-peer handler asks: may this node treat its unreachable peer as outdated (and so serve
        without it)? Only while it serves by these rules, its lease included: the handler may run between two
        ticks, just after the lease ran out, or just after a pause of this node's own that its next tick will
        step down for. Not while it settles after a pause (`settling`, as for tick): the quorum it sees then
        may be one that has since let the other node take over."""
        if settling or (self.last_tick is not None and now - self.last_tick > self.lease):
            return False
        return self.serving and len(self._seen(peers, now, self.lease)) >= self.quorum

    def _serving(self, now: float, peers: dict[str, Peer], local: Report, peer: Peer,
                 report: Report | None) -> list[Effect]:
        if len(self._seen(peers, now, self.lease)) < self.quorum:
            return [self._step_down("lost quorum")]
        if peer.alive and report is not None and report.serving and not self.first:
            theirs = self.peer_own_term(peer)
            if theirs is None or theirs >= self.term:
                self.serving = False
                return [Demote(f"{self.peer.name} serves too")]
            # Its term is older: it took no part in this one (it was paused, say), and it steps down for it
            # (a newer term than its own) once it reads this node's heartbeats. This node holds the newest data.
            self.waiting = f"{self.peer.name} serves an older term ({theirs}) too"
        if local.connection == "StandAlone" and peer.alive and report is not None:
            return [Connect()]
        return []

    def _wait(self, why: str) -> list[Effect]:
        self.waiting = why
        return []

    def _standing_by(self, now: float, local: Report, peer: Peer, report: Report | None) -> list[Effect]:
        name = self.peer.name
        if local.role == "Unconfigured" or local.disk in ("Diskless", "Unknown"):
            return self._wait(local.error or "the replicated disk is not set up")
        if peer.alive and report is not None and report.serving:
            if local.connection == "StandAlone":
                return [Connect(discard_mine=self.victim)]
            if report.primary and not report.connected and not local.connected and local.disk == "UpToDate":
                return [Outdate(f"{name} serves without this node")]
            return self._wait(f"{name} serves")
        if local.primary:  # left over from a failed attempt: step down before anything else
            return [Demote("primary but not serving")]
        if now < self.retry_at:
            return self._wait(self.waiting)
        if self.quorum_since is None:
            return self._wait("no quorum")
        if now - self.started < self.deadtime or now - self.quorum_since < self.deadtime:
            return self._wait("listening for a deadtime")
        if peer.alive:
            return self._peer_alive(local, report)
        return self._peer_silent(now, local, peer, report)

    def _peer_alive(self, local: Report, report: Report | None) -> list[Effect]:
        peers = self.peers_seen
        name = self.peer.name
        if report is None:
            return self._wait(f"waiting for {name}'s disk state")
        if local.connection == "StandAlone":  # cut by us, or a split brain DRBD would not resolve
            self.waiting = f"reconnecting to {name}"
            return [Connect()]
        if report.primary or local.peer_role == "Primary":  # DRBD knows before the next heartbeat does
            return self._wait(f"{name} is primary (starting or stopping)")
        if not local.connected:
            return self._wait(f"the replication link to {name} is down ({local.connection})")
        if local.fresh and report.fresh and local.disk == "Inconsistent" and report.disk == "Inconsistent":
            if self.first:
                return self._serve(Initialize("first start: both disks are blank"), local, peers)
            return self._wait(f"{name} creates the replicated disk")
        if local.disk != "UpToDate":
            progress = f", {local.sync:.1f} % synced" if local.sync is not None else ""
            return self._wait(f"this disk is {local.disk}{progress}")
        if report.disk == "UpToDate" and not self.first:
            return self._wait(f"{name} serves first (both disks are up to date)")
        return self._serve(Promote(f"{name} does not serve" + ("" if report.disk == "UpToDate" else
                                                             f" ({report.disk})")), local, peers)

    def _peer_silent(self, now: float, local: Report, peer: Peer, report: Report | None) -> list[Effect]:
        name = self.peer.name
        if local.disk != "UpToDate":
            return self._wait(f"{name} is down and this disk is {local.disk}: {name} may hold the newest data; "
                              "waiting for it")
        if local.connected:
            # DRBD sees a dead peer only after its ping timeout, seconds more under load. A host that no longer
            # answers ARP is powered off, hung or cut off (its link is dead anyway): the link is cut
            # here, as DRBD would. One that answers (herdd stopped, its kernel perhaps still serving) is waited
            # for: DRBD connected to a primary is the last word.
            self.waiting = f"DRBD still sees {name}"
            return [CutLink(name, str(self.peer.address))]
        since = peer.last_seen if peer.last_seen is not None else self.started
        if now - since < self.deadtime + self.grace:
            return self._wait(f"{name} is silent: giving it time to stop serving")
        witnesses = self.still_hearing(name)
        if witnesses:
            verb = "hears" if len(witnesses) == 1 else "hear"
            return self._wait(f"{name} is silent here but {', '.join(witnesses)} still {verb} it: the link "
                              f"between the nfs nodes is down, not {name}")
        if peer.last_seen is not None:
            if report is not None and report.primary and report.peer_disk != "UpToDate":
                return self._wait(f"{name} last served without this node: it may hold writes this disk lacks")
            if self.in_sync_at is None or self.in_sync_at < peer.last_seen - self.slack:
                return self._wait(f"this disk was not in sync with {name} when {name} was last heard")
        newest = self.known_term(self.peers_seen)
        if newest > self.term:
            return self._wait(f"{name} served term {newest} without this node (its disk holds term {self.term}): "
                              f"it may hold writes this disk lacks; waiting for it")
        return self._serve(Promote(f"{name} is down, silent {now - since:.1f} s"), local, self.peers_seen)

    def still_hearing(self, name: str) -> list[str]:
        """The other nodes this node hears that say they still hear `name` (their last heartbeat's `hears`)."""
        return sorted(other for other, p in self.peers_seen.items()
                      if other not in (self.me.name, name) and p.alive
                      and isinstance(hears := p.health.get("hears"), list) and name in hears)

    def _serve(self, effect: Initialize | Promote, local: Report, peers: dict[str, Peer]) -> list[Effect]:
        self.serving = True
        self.victim = False  # serving again: this disk is the one that counts
        self.alone = not local.in_sync
        self.term = self.known_term(peers) + 1
        return [effect]

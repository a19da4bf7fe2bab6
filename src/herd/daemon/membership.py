"""Who is alive: the membership state machine. Pure: authenticated messages and the clock go in, events and
a view come out; no sockets, no asyncio, no time.

A peer is alive from its first valid heartbeat until it has been silent for `deadtime`; then dead until the
next one. Drained is an operator's decision, replicated to every node in the heartbeats as a last-writer-wins
register per node (a version counter, ties broken by the origin's name), so any node can be asked and all
converge.

A node that was itself not running for a while (a stalled VM, a starved or suspended process) has heartbeats
still queued that it has not read: a tick that comes more than an interval late starts a settling time of two
intervals in which nobody is declared dead (and, through `settling`, the election and the storage lease decide
nothing), so what was queued is read first and only real silence counts.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from herd.daemon import bounds
from herd.daemon.wire import Message
from herd.spec import Node, Spec


class State(enum.StrEnum):
    ALIVE = "alive"
    DEAD = "dead"
    DRAINED = "drained"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PeerUp:
    name: str


@dataclass(frozen=True)
class PeerDown:
    name: str
    silent_for: float


@dataclass(frozen=True)
class Paused:
    """This node's ticks stopped for `seconds`: it settles before judging anyone."""

    seconds: float


@dataclass(frozen=True)
class DrainChanged:
    name: str
    drained: bool


Event = PeerUp | PeerDown | Paused | DrainChanged


@dataclass(frozen=True, order=True)
class Admin:
    """One node's operator state; the larger (version, origin) wins a merge."""

    version: int = 0
    origin: str = ""
    drained: bool = False


@dataclass
class Peer:
    node: Node
    alive: bool = False
    last_seen: float | None = None
    generation: int | None = None
    health: dict[str, Any] = field(default_factory=dict)
    holds_vip: bool = False  # what its last heartbeat said
    quorate: bool = True  # whether it hears a quorum, as its last heartbeat said (an older herdd does not say: yes)


class Membership:
    def __init__(self, spec: Spec, me: str, now: float) -> None:
        self.spec = spec
        self.me = me
        self.deadtime = spec.membership.deadtime_ms / 1000
        self.interval = spec.membership.interval_ms / 1000
        self.last_tick: float | None = None
        self.settle_until = 0.0
        self.peers = {n.name: Peer(n) for n in spec.nodes}
        self.peers[me].alive = True
        self.peers[me].last_seen = now
        self.admin: dict[str, Admin] = {n.name: Admin() for n in spec.nodes}
        self.refused: collections.Counter[str] = collections.Counter()  # entries out of bounds, by field

    # -- input -------------------------------------------------------------------------------------------
    def heard(self, msg: Message, now: float) -> list[Event]:
        """A verified, fresh heartbeat from a spec node."""
        peer = self.peers[msg.sender]
        events: list[Event] = []
        if not peer.alive:
            events.append(PeerUp(msg.sender))
        peer.alive = True
        peer.last_seen = now
        peer.generation = msg.generation
        health = msg.payload.get("health")
        if isinstance(health, dict):
            peer.health = health
        peer.holds_vip = msg.payload.get("vip") is True
        peer.quorate = msg.payload.get("quorum") is not False
        events += self.merge_admin(msg.payload.get("admin"))
        return events

    def settling(self, now: float) -> bool:
        """Just back from a pause of its own: no verdicts on silence yet (see the module's doc)."""
        return now < self.settle_until

    def tick(self, now: float) -> list[Event]:
        events: list[Event] = []
        if self.last_tick is not None and now - self.last_tick > self.interval:
            self.settle_until = now + 2 * self.interval
            events.append(Paused(now - self.last_tick))
        self.last_tick = now
        self.peers[self.me].last_seen = now
        if self.settling(now):
            return events
        for name, peer in self.peers.items():
            if name == self.me or not peer.alive or peer.last_seen is None:
                continue
            silent = now - peer.last_seen
            if silent > self.deadtime:
                peer.alive = False
                events.append(PeerDown(name, silent))
        return events

    def set_drained(self, name: str, drained: bool) -> list[Event]:
        if name not in self.admin:
            raise KeyError(name)
        current = self.admin[name]
        self.admin[name] = Admin(current.version + 1, self.me, drained)
        return [DrainChanged(name, drained)] if current.drained != drained else []

    def merge_admin(self, remote: Any) -> list[Event]:
        """Every node passes on every register it holds, so an entry is taken only within bounds (origin a
        spec node, version a bounded counter: herd.daemon.bounds); the rest are counted in `refused`."""
        if not isinstance(remote, dict):
            return []
        events: list[Event] = []
        for name, value in remote.items():
            if name not in self.admin or not (isinstance(value, list) and len(value) == 3):
                self.refused["admin"] += 1
                continue
            drained, version, origin = value
            mine = self.admin[name]
            if not (isinstance(drained, bool) and bounds.counter(version, mine.version)
                    and isinstance(origin, str) and origin in self.admin):
                self.refused["admin"] += 1
                continue
            theirs = Admin(version, origin, drained)
            if theirs > mine:
                self.admin[name] = theirs
                if theirs.drained != mine.drained:
                    events.append(DrainChanged(name, drained))
        return events

    # -- output ------------------------------------------------------------------------------------------
    def payload(self, health: dict[str, Any], holds_vip: bool = False, quorate: bool = True,
                seen: dict[str, int] | None = None) -> dict[str, Any]:
        """`seen`: the generation heard from each peer, which a peer that has just started takes as proof that
        this heartbeat is not one captured before (herd.daemon.wire)."""
        admin = {n: [a.drained, a.version, a.origin] for n, a in self.admin.items() if a.version}
        out = {"health": health, "admin": admin, "vip": holds_vip, "quorum": quorate}
        if seen is not None:
            out["seen"] = dict(sorted(seen.items()))
        return out

    @staticmethod
    def fitted(payload: dict[str, Any], fits: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], list[str]]:
        """The payload, or if it does not fit the wire (`fits`), without as few drain registers as it takes; and
        the names of the registers left out. The register is the only part of a heartbeat that every node
        passes on, so it is what may grow past the limit; a heartbeat without some of it is better than none
        (its sender would look dead). Undrained registers go first (a node that never heard of the drain they
        undo takes their node as undrained anyway), then drained ones; each lowest version first, then by name,
        so that the same ones are left out beat after beat."""
        admin = payload.get("admin")
        if not isinstance(admin, dict) or not admin or fits(payload):
            return payload, []
        order = sorted(admin, key=lambda n: (admin[n][0], admin[n][1], n))  # [drained, version, origin]
        for count in range(1, len(order)):
            trimmed = {**payload, "admin": {n: v for n, v in admin.items() if n not in order[:count]}}
            if fits(trimmed):
                return trimmed, order[:count]
        return {**payload, "admin": {}}, order  # over the limit even so: encode says by how much

    def state(self, name: str) -> State:
        peer = self.peers[name]
        if not peer.alive:
            return State.DEAD if peer.last_seen is not None else State.UNKNOWN
        return State.DRAINED if self.admin[name].drained else State.ALIVE

    def alive(self) -> set[str]:
        return {name for name, peer in self.peers.items() if peer.alive}

    def view(self, now: float) -> list[dict[str, Any]]:
        rows = []
        for name, peer in self.peers.items():
            seen = None if peer.last_seen is None else round((now - peer.last_seen) * 1000)
            rows.append({
                "name": name,
                "role": peer.node.role.value,
                "address": str(peer.node.address),
                "state": self.state(name).value,
                "last_seen_ms": seen,
                "health": peer.health,
            })
        return rows

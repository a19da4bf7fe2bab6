"""Claiming a free slot: how a box whose MAC is not in the spec becomes one of the spec's MAC-less nodes of
its role. Pure: messages and the clock in, effects out.

It is a lock taken by majority vote. The claimer asks every node for slot S (CLAIM, with a fresh round id);
a node grants S unless it has already granted S to another MAC, and remembers the grant on disk before
replying. With grants from a strict majority of the spec's nodes the slot is the claimer's: two claimers can
never both get one, because any two majorities share a node, and a node grants a slot to one MAC only. A
claimer that gets refused moves to the next slot; one that gets neither a majority nor a refusal in time
(two claimers split the votes) gives its grants back (RELEASE of that round only) and retries after a random
pause. A box that reboots or was reflashed asks again and gets the slot it had: it is granted to its MAC.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from herd.spec import Role, Spec

ROUND_TIMEOUT = 1.5
RESEND_EVERY = 0.3


# -- the granting side, on every identified node ---------------------------------------------------------

@dataclass
class Binding:
    mac: str
    round: str


class SlotTable:
    """Which MAC each slot was granted to. Its owner persists `bindings` after every change."""

    def __init__(self, spec: Spec, bindings: dict[str, Binding] | None = None) -> None:
        self.slots = {n.name: n for n in spec.nodes if n.mac is None}
        self.bindings: dict[str, Binding] = dict(bindings or {})

    def claim(self, slot: str, mac: str, round_id: str, role: str) -> tuple[bool, str | None, bool]:
        """(granted, holder's MAC if refused, changed: persist before replying)."""
        node = self.slots.get(slot)
        if node is None or node.role.value != role:
            return False, None, False
        held = self.bindings.get(slot)
        if held is not None and held.mac != mac:
            return False, held.mac, False
        changed = held is None or held.round != round_id
        self.bindings[slot] = Binding(mac, round_id)
        return True, None, changed

    def release(self, slot: str, mac: str, round_id: str) -> bool:
        held = self.bindings.get(slot)
        if held is not None and held.mac == mac and held.round == round_id:
            del self.bindings[slot]
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {slot: {"mac": b.mac, "round": b.round} for slot, b in sorted(self.bindings.items())}

    @staticmethod
    def from_json(data: Any) -> dict[str, Binding]:
        out: dict[str, Binding] = {}
        if isinstance(data, dict):
            for slot, value in data.items():
                mac, round_id = (value.get("mac"), value.get("round")) if isinstance(value, dict) else (None, None)
                if isinstance(mac, str) and isinstance(round_id, str):
                    out[slot] = Binding(mac, round_id)
        return out


# -- the claiming side --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendClaim:
    slot: str
    round: str


@dataclass(frozen=True)
class SendRelease:
    slot: str
    round: str


@dataclass(frozen=True)
class Claimed:
    slot: str


@dataclass(frozen=True)
class NoFreeSlot:
    role: str


Effect = SendClaim | SendRelease | Claimed | NoFreeSlot
# Rounds given back that a node which has just restarted may ask to hear again (PROVE): the last few are plenty,
# as a claimer gives one back at most every 0.2 s and a node answers in milliseconds.
RELEASES_KEPT = 16


@dataclass
class Claimer:
    spec: Spec
    role: Role
    mac: str
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.free = [n.name for n in self.spec.nodes_of(self.role) if n.mac is None]
        self.quorum = len(self.spec.nodes) // 2 + 1
        self.refused: set[str] = set()
        self.slot: str | None = None
        self.round = ""
        self.grants: set[str] = set()
        self.started = 0.0
        self.last_send = -1e9
        self.wait_until = 0.0
        self.done: str | None = None
        self.released: list[SendRelease] = []

    def _release(self, slot: str, round_id: str) -> SendRelease:
        release = SendRelease(slot, round_id)
        self.released = [*self.released[1 - RELEASES_KEPT:], release]
        return release

    def _next_round(self, now: float) -> list[Effect]:
        candidates = [s for s in self.free if s not in self.refused]
        if not candidates:
            # Everything refused: maybe holders released since. Start over after a pause.
            self.refused.clear()
            self.slot = None
            self.wait_until = now + 2 + self.rng.random() * 2
            return [NoFreeSlot(self.role.value)]
        self.slot = candidates[0]
        self.round = f"{self.rng.getrandbits(64):016x}"
        self.grants = set()
        self.started = now
        self.last_send = now
        return [SendClaim(self.slot, self.round)]

    def tick(self, now: float) -> list[Effect]:
        if self.done is not None or now < self.wait_until:
            return []
        if self.slot is None:
            return self._next_round(now)
        if now - self.started > ROUND_TIMEOUT:
            # Split vote or too few nodes answering: give the grants back, pause, try again.
            effects: list[Effect] = [self._release(self.slot, self.round)]
            self.slot = None
            self.wait_until = now + 0.2 + self.rng.random() * 1.0
            return effects
        if now - self.last_send >= RESEND_EVERY:
            self.last_send = now
            return [SendClaim(self.slot, self.round)]
        return []

    def on_reply(self, sender: str, slot: str, round_id: str, granted: bool, now: float) -> list[Effect]:
        if self.done is not None or slot != self.slot or round_id != self.round:
            return []
        if not granted:
            # Someone holds it for another box: that slot is not ours to win.
            effects: list[Effect] = [self._release(slot, round_id)]
            self.refused.add(slot)
            self.slot = None
            return effects + self._next_round(now)
        self.grants.add(sender)
        if len(self.grants) >= self.quorum:
            self.done = slot
            return [Claimed(slot)]
        return []

    def on_prove(self, of: object, slot: object, round_id: object) -> list[Effect]:
        """A node asks to hear a CLAIM or RELEASE again, echoing its generation (it had just started): the
        current round's claim, or a round given back lately; anything else is not this claimer's to repeat."""
        current = self.done is None and self.slot is not None and (slot, round_id) == (self.slot, self.round)
        if of == "claim" and current and self.slot is not None:
            return [SendClaim(self.slot, self.round)]
        if of == "release":
            return [r for r in self.released if (r.slot, r.round) == (slot, round_id)]
        return []

"""The election on every node of the example cluster at once, each with its own membership, over links that
fail one direction at a time, with the nodes' heartbeats and ticks at random (seeded) phases: one holder
after every failure, never two while the holder is merely cut off, and no flapping."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from herd.daemon.election import AcquireVip, AnnounceVip, Effect, Election, ReleaseVip
from herd.daemon.membership import Membership
from herd.daemon.wire import KIND_HEARTBEAT, Message
from herd.spec import load

SPEC = load(Path(__file__).resolve().parents[2] / "examples/cluster.toml")
NAMES = [n.name for n in SPEC.nodes]
INTERVAL = SPEC.membership.interval_ms / 1000
DEADTIME = SPEC.membership.deadtime_ms / 1000
STEP = 0.01
CUT = 10.0
END = 25.0

Lost = Callable[[str, str, float], bool]  # (sender, receiver, now): is this packet lost?


@dataclass
class Run:
    holders: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)  # every tick's holders
    effects: list[tuple[float, str, Effect]] = field(default_factory=list)
    claimed_after_resume: bool = False

    def holders_at(self, since: float) -> set[tuple[str, ...]]:
        return {h for t, h in self.holders if t >= since}

    def overlap(self, since: float = 0.0) -> float:
        return sum(STEP for t, h in self.holders if t >= since and len(h) > 1)

    def acquired(self, name: str, since: float) -> int:
        return sum(1 for t, n, e in self.effects if n == name and t >= since and isinstance(e, AcquireVip))


def simulate(seed: int, lost: Lost, stalled: tuple[str, float, float] | None = None) -> Run:
    """Heartbeats every interval and ticks every interval/4, each node at its own phase. `stalled`: (node,
    from, to): that node neither ticks nor sends, and what it is sent waits until it resumes."""
    rng = random.Random(seed)
    beat_phase = {n: rng.randrange(round(INTERVAL / STEP)) for n in NAMES}
    tick_phase = {n: rng.randrange(round(INTERVAL / 4 / STEP)) for n in NAMES}
    members = {n: Membership(SPEC, n, 0.0) for n in NAMES}
    elections = {n: Election(SPEC, n, 0.0) for n in NAMES}
    queued: dict[str, list[Message]] = {n: [] for n in NAMES}
    seq = dict.fromkeys(NAMES, 0)
    run = Run()
    for step in range(round(END / STEP)):
        now = round(step * STEP, 6)
        for n in NAMES:
            paused = stalled is not None and n == stalled[0] and stalled[1] <= now < stalled[2]
            if paused:
                continue
            for msg in queued[n]:
                members[n].heard(msg, now)
            queued[n].clear()
            if step % round(INTERVAL / STEP) == beat_phase[n]:
                seq[n] += 1
                claims = elections[n].claims(now)
                if stalled is not None and n == stalled[0] and now >= stalled[2] and claims:
                    run.claimed_after_resume = True
                msg = Message(KIND_HEARTBEAT, n, 1, seq[n],
                              members[n].payload({}, claims, elections[n].quorate))
                for dst in NAMES:
                    if dst != n and not lost(n, dst, now):
                        queued[dst].append(msg)
            if step % round(INTERVAL / 4 / STEP) == tick_phase[n]:
                members[n].tick(now)
                for effect in elections[n].tick(now, members[n].peers, members[n].settling(now)):
                    run.effects.append((now, n, effect))
        run.holders.append((now, tuple(sorted(n for n in NAMES if elections[n].holding))))
    return run


def never(sender: str, receiver: str, now: float) -> bool:
    return False


def cut_off(node: str) -> Lost:
    return lambda s, r, now: now >= CUT and node in (s, r)


def one_way(sender: str, receiver: str) -> Lost:
    return lambda s, r, now: now >= CUT and (s, r) == (sender, receiver)


def deaf(node: str) -> Lost:
    return lambda s, r, now: now >= CUT and r == node


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_healthy_cluster_elects_the_first_director_once(seed: int) -> None:
    run = simulate(seed, never)
    assert [(n, e) for _, n, e in run.effects] == [("dir1", AcquireVip())]
    assert run.holders_at(2 * DEADTIME) == {("dir1",)}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_holder_cut_off_lets_go_once_and_the_standby_takes_over_without_overlap(seed: int) -> None:
    run = simulate(seed, cut_off("dir1"))
    assert run.overlap() == 0
    assert run.acquired("dir1", CUT) == 0  # it let go once and did not take it back while old beats aged out
    assert run.holders_at(CUT + 2 * DEADTIME) == {("dir2",)}


@pytest.mark.parametrize("seed", SEEDS)
def test_one_way_loss_from_holder_to_standby_ends_with_one_holder(seed: int) -> None:
    # dir2 stops hearing dir1 and takes the VIP; dir1 still hears dir2 claiming it, and yields after a
    # deadtime, since dir2 plainly cannot hear it.
    run = simulate(seed, one_way("dir1", "dir2"))
    assert run.overlap() <= DEADTIME + 2 * INTERVAL
    assert run.holders_at(CUT + 4 * DEADTIME) == {("dir2",)}
    assert any(n == "dir1" and isinstance(e, ReleaseVip) and "cannot hear" in e.reason for _, n, e in run.effects)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_holder_that_hears_nobody_but_is_heard_by_all_is_passed_over(seed: int) -> None:
    run = simulate(seed, deaf("dir1"))
    assert run.overlap() == 0
    assert run.holders_at(CUT + 4 * DEADTIME) == {("dir2",)}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_holder_stalled_longer_than_a_deadtime_lets_go_when_it_resumes(seed: int) -> None:
    run = simulate(seed, never, stalled=("dir1", CUT, CUT + 3.0))
    resumed = CUT + 3.0
    assert not run.claimed_after_resume  # its first heartbeats do not make dir2 let go
    assert run.holders_at(resumed + INTERVAL) == {("dir2",)}
    released = [e for t, n, e in run.effects if n == "dir1" and t >= resumed]
    assert released and isinstance(released[0], ReleaseVip) and "paused" in released[0].reason
    # dir2, the holder from its takeover on, never had to let go or announce again.
    assert [type(e) for t, n, e in run.effects if n == "dir2"] == [AcquireVip]
    assert not any(isinstance(e, AnnounceVip) for _, _, e in run.effects)

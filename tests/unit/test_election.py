"""The director election on a fake clock: one holder, lease before takeover, no preemption unless asked,
no split brain after a partition heals."""

from __future__ import annotations

from pathlib import Path

from herd.daemon.election import AcquireVip, AnnounceVip, Election, ReleaseVip
from herd.daemon.membership import Peer
from herd.spec import Role, Spec, load

SPEC = load(Path(__file__).resolve().parents[2] / "examples/cluster.toml")
DEAD, INTERVAL = 1.0, 0.2


class World:
    """Peer tables for each director, as its membership would keep them, driven by hand."""

    def __init__(self, spec: Spec = SPEC) -> None:
        self.spec = spec
        self.views = {d.name: {n.name: Peer(n) for n in spec.nodes} for d in spec.nodes_of(Role.DIRECTOR)}
        for name, view in self.views.items():
            view[name].alive = True

    def hear(self, viewer: str, sender: str, now: float, holds_vip: bool = False) -> None:
        peer = self.views[viewer][sender]
        peer.alive, peer.last_seen, peer.holds_vip = True, now, holds_vip

    def age(self, now: float) -> None:
        for view in self.views.values():
            for peer in view.values():
                if peer.last_seen is not None and now - peer.last_seen > DEAD:
                    peer.alive = False


def run(world: World, elections: dict[str, Election], start: float, end: float,
        silent: frozenset[str] = frozenset(), cut: frozenset[str] = frozenset()) -> list[tuple[float, str, object]]:
    """Beat every 0.2 s, tick every 0.05 s. `silent` nodes are dead; `cut` directors hear nobody and are
    heard by nobody (a partition)."""
    log = []
    now = start
    step = 0
    while now < end:
        if step % 4 == 0:
            for viewer in world.views:
                if viewer in silent or viewer in cut:
                    continue
                for node in world.spec.nodes:
                    if node.name != viewer and node.name not in silent and node.name not in cut:
                        holds = elections[node.name].holding if node.name in elections else False
                        world.hear(viewer, node.name, now, holds)
        world.age(now)
        for name, election in elections.items():
            if name in silent:
                continue
            for effect in election.tick(now, world.views[name]):
                log.append((now, name, effect))
        holders = [n for n, e in elections.items() if e.holding and n not in silent]
        assert len(holders) <= 1, f"two holders at {now:.2f}: {holders}"
        now = round(now + 0.05, 6)
        step += 1
    return log


def fresh(preempt: bool = False) -> tuple[World, dict[str, Election]]:
    world = World()
    return world, {name: Election(SPEC, name, 0.0, preempt=preempt) for name in world.views}


def test_the_highest_priority_director_takes_the_vip_after_settling() -> None:
    world, elections = fresh()
    log = run(world, elections, 0.0, 3.0)
    assert [(name, e) for _, name, e in log] == [("dir1", AcquireVip())]
    assert log[0][0] >= DEAD  # not before it had listened for a deadtime
    assert elections["dir1"].holder(world.views["dir1"]) == "dir1"


def test_failover_and_no_preemption() -> None:
    world, elections = fresh()
    run(world, elections, 0.0, 3.0)
    log = run(world, elections, 3.0, 6.0, silent=frozenset({"dir1"}))
    took = [(t, n) for t, n, e in log if isinstance(e, AcquireVip)]
    assert [n for _, n in took] == ["dir2"]
    assert took[0][0] - 3.0 <= DEAD + INTERVAL + 0.05  # after the holder's last heartbeat at 2.8..3.0
    elections["dir1"] = Election(SPEC, "dir1", 6.0)  # dir1 restarts
    log = run(world, elections, 6.0, 12.0)
    assert not log, "the recovered higher-priority director must not take the VIP back"
    assert elections["dir2"].holding


def test_preemption_when_asked() -> None:
    world, elections = fresh(preempt=True)
    run(world, elections, 0.0, 3.0)
    run(world, elections, 3.0, 6.0, silent=frozenset({"dir1"}))
    assert elections["dir2"].holding
    elections["dir1"] = Election(SPEC, "dir1", 6.0, preempt=True)
    log = run(world, elections, 6.0, 10.0)
    assert [(n, type(e).__name__) for _, n, e in log] == [("dir2", "ReleaseVip"), ("dir1", "AcquireVip")]
    assert "preempted by dir1" in str(log[0][2])


def test_a_partitioned_holder_lets_go_before_the_standby_takes_over() -> None:
    world, elections = fresh()
    run(world, elections, 0.0, 3.0)
    log = run(world, elections, 3.0, 6.0, cut=frozenset({"dir1"}))  # run() asserts never two holders
    released = next(t for t, n, e in log if n == "dir1" and isinstance(e, ReleaseVip))
    taken = next(t for t, n, e in log if n == "dir2" and isinstance(e, AcquireVip))
    assert released < taken
    assert "lost quorum" in next(str(e) for _, n, e in log if n == "dir1")
    # Healed: dir1 hears the others again, learns that dir2 holds, and stays standby.
    log = run(world, elections, 6.0, 10.0)
    assert not any(isinstance(e, AcquireVip) for _, _, e in log)
    assert elections["dir2"].holding and not elections["dir1"].holding


def test_two_holders_resolve_to_the_better_one() -> None:
    world, elections = fresh()
    elections["dir1"].holding = elections["dir2"].holding = True  # e.g. both came up isolated
    world.hear("dir2", "dir1", 0.0, holds_vip=True)
    for node in SPEC.nodes:
        world.hear("dir2", node.name, 0.0, holds_vip=node.name == "dir1")
    effects = elections["dir2"].tick(0.1, world.views["dir2"])
    assert effects == [ReleaseVip("dir1 holds it too")]


def test_without_quorum_nobody_takes() -> None:
    world, elections = fresh()
    log = run(world, elections, 0.0, 5.0, silent=frozenset({"web1", "web2", "nfs1"}))  # 3 of 6 left
    assert not log


def test_non_directors_never_hold() -> None:
    election = Election(SPEC, "web1", 0.0)
    world = World()
    assert election.tick(5.0, world.views["dir1"]) == []


def test_the_winner_of_a_conflict_announces_the_vip_again_once_the_rival_lets_go() -> None:
    # dir2 took the VIP while cut off (its gratuitous ARPs pointed the LAN at it); when the two hear each other
    # again dir2 lets go, and dir1 sends its own again so that the LAN's ARP caches point back at it.
    world, elections = fresh()
    run(world, elections, 0.0, 3.0)
    elections["dir2"].holding = True
    log = run(world, elections, 3.0, 4.0)
    assert [(n, type(e).__name__) for _, n, e in log] == [("dir2", "ReleaseVip"), ("dir1", "AnnounceVip")]
    assert log[1][2] == AnnounceVip("dir2")
    assert not run(world, elections, 4.0, 6.0)  # once only


def test_a_holder_back_from_a_short_pause_keeps_the_vip_once_it_has_read_what_was_queued() -> None:
    world, elections = fresh()
    run(world, elections, 0.0, 3.0)
    dir1 = elections["dir1"]
    dir1.tick(3.0, world.views["dir1"])
    # Its ticks stopped for 0.5 s, less than the lease: no standby can have taken over (that takes a deadtime
    # of silence), and everyone looks silent only because their heartbeats are still queued.
    assert dir1.claims(3.5)
    assert dir1.tick(3.5, world.views["dir1"], settling=True) == [] and dir1.holding
    for node in SPEC.nodes:  # the queued heartbeats, read
        world.hear("dir1", node.name, 3.55)
    assert dir1.tick(3.9, world.views["dir1"]) == [] and dir1.holding
    # Had nobody been heard, the lease ends at the first tick after settling.
    assert dir1.tick(3.95, world.views["dir1"], settling=True) == []
    assert dir1.tick(4.5, world.views["dir1"]) == [ReleaseVip("lost quorum")]


def test_a_holder_back_from_a_pause_longer_than_the_lease_lets_go_at_once() -> None:
    world, elections = fresh()
    run(world, elections, 0.0, 3.0)
    dir1 = elections["dir1"]
    dir1.tick(3.0, world.views["dir1"])
    # Stalled for 2 s: the others saw it silent for longer than a deadtime, and dir2 may hold the VIP now.
    # Before its first tick it must not claim the VIP in a heartbeat (dir2 would let go to it).
    assert not dir1.claims(5.0)
    assert dir1.tick(5.0, world.views["dir1"], settling=True) == [
        ReleaseVip("paused for 2000 ms, longer than the lease")]
    # It takes it again only after a deadtime of quorum, as after a partition.
    for t in (5.2, 5.4, 5.6, 5.8):
        for node in SPEC.nodes:
            world.hear("dir1", node.name, t)
        assert dir1.tick(t, world.views["dir1"]) == []

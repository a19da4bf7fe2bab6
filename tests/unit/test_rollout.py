"""The rolling upgrade's order and stop rules, on a fake clock: a simulated cluster carries out the Rollout's
actions the way nodes do (a reboot takes a while, a bad release boots, fails its check and falls back)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import pytest

from herd.rollout.machine import PreflightError, Rollout, Status, Timing
from herd.rollout.order import Kind, Step, order, preflight, warnings
from herd.rollout.view import Action, ClusterView, HandVip, NodeView, Reboot, SetWeight, Stage, SwitchNfs
from herd.spec import Role

OLD, NEW = "2026.11.0", "2026.12.0"
EXAMPLE = {"dir1": Role.DIRECTOR, "dir2": Role.DIRECTOR, "web1": Role.WEB, "web2": Role.WEB, "nfs1": Role.NFS,
           "db1": Role.DB}
TWO_OF_EACH = {**EXAMPLE, "nfs2": Role.NFS, "db2": Role.DB}
BOOT_S, CHECK_S, FALLBACK_S = 60, 20, 90  # a reboot's outage, then the role check; a bad slot's way back


@dataclass
class Sim:
    """Nodes as the rollout sees them, moved on by its actions and by time."""
    roles: dict[str, Role]
    bad: set[str] = field(default_factory=set)  # nodes where the new release fails its check
    now: float = 0.0
    nodes: dict[str, NodeView] = field(default_factory=dict)
    holder: str = "dir1"
    primary: str = "nfs1"
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, node, what) for the asserts
    pending: list[tuple[float, str, str]] = field(default_factory=list)  # (when, node, what) still to happen
    boots: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for name, role in self.roles.items():
            self.nodes[name] = NodeView(name, role, True, OLD, boot=f"b{next(self.boots)}", check=True,
                                        weight=1 if role == Role.WEB else None)

    def view(self) -> ClusterView:
        dbs = [n for n in self.nodes.values() if n.role == Role.DB]
        synced = tuple(n.name for n in dbs) if all(n.alive and n.check for n in dbs) else ()
        nfs = [n for n in self.nodes.values() if n.role == Role.NFS]
        return ClusterView(tuple(self.nodes.values()), self.holder if self.nodes[self.holder].alive else None,
                           self.primary, synced, all(n.alive for n in nfs))

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            match a:
                case Stage(node, release):
                    self.pending.append((self.now + 30, node, f"staged {release}"))
                case SetWeight(node, weight):
                    self.set(node, weight=weight)
                    self.events.append((self.now, node, f"weight {weight}"))
                case Reboot(node):
                    self.events.append((self.now, node, "reboot"))
                    self.set(node, alive=False, check=False, weight=0 if self.roles[node] == Role.WEB else None)
                    self.pending.append((self.now + BOOT_S, node, "booted"))
                case SwitchNfs(to):
                    self.events.append((self.now, to, "nfs primary"))
                    self.primary = to
                case HandVip(to):
                    self.events.append((self.now, to, "vip"))
                    self.holder = to

    def set(self, name: str, **changes: object) -> None:
        self.nodes[name] = replace(self.nodes[name], **changes)  # type: ignore[arg-type]

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds
        due = [p for p in self.pending if p[0] <= self.now]
        self.pending = [p for p in self.pending if p[0] > self.now]
        for _, node, what in due:
            n = self.nodes[node]
            if what.startswith("staged"):
                self.set(node, staged=what.split()[1])
            elif what == "booted":  # into the staged slot
                self.set(node, alive=True, release=n.staged, boot=f"b{next(self.boots)}")
                self.pending.append((self.now + CHECK_S, node, "checked"))
            elif what == "checked" and node in self.bad:
                self.pending.append((self.now + FALLBACK_S, node, "fell back"))
            elif what == "checked":
                self.set(node, check=True, weight=n.weight if n.role == Role.WEB else None)
            elif what == "fell back":  # boot counting ran out: the old slot again
                self.set(node, release=OLD, staged="", check=True, boot=f"b{next(self.boots)}")
                self.events.append((self.now, node, "fell back"))


def run(sim: Sim, rollout: Rollout, limit: float = 20000) -> Rollout:
    while rollout.status in (Status.STAGING, Status.ROLLING) and sim.now < limit:
        sim.apply(rollout.advance(sim.now, sim.view()))
        sim.tick()
    return rollout


def reboots(sim: Sim) -> list[str]:
    return [node for _, node, what in sim.events if what == "reboot"]


def test_the_order_follows_each_roles_redundancy() -> None:
    view = Sim(TWO_OF_EACH).view()
    assert [str(s) for s in order(view)] == [
        "drain web1", "reboot web1", "undrain web1", "soak web1",  # the canary
        "drain web2", "reboot web2", "undrain web2",
        "reboot nfs2", "switch-nfs nfs2", "reboot nfs1",  # the standby, a switchover, the old server
        "reboot db1", "reboot db2",
        "reboot dir2", "hand-vip dir2", "reboot dir1"]
    example = order(Sim(EXAMPLE).view())
    assert [str(s) for s in example[-2:]] == ["reboot nfs1", "reboot db1"]  # lone nodes last
    assert warnings(Sim(EXAMPLE).view()) == [
        "nfs1 is the only nfs node: the docroot is out of service while it reboots (its data is kept); it goes last",
        "db1 is the only db node: the database is out of service while it reboots (its data is kept); it goes last"]
    assert warnings(Sim(TWO_OF_EACH).view()) == []


def test_preflight_names_everything_missing() -> None:
    sim = Sim(TWO_OF_EACH)
    assert preflight(sim.view()) == []
    sim.set("dir2", alive=False, check=False)
    sim.set("db2", check=False)  # down, or not Synced
    sim.set("nfs2", alive=False)
    with pytest.raises(PreflightError) as info:
        Rollout.start(sim.view(), NEW, 0)
    assert info.value.problems == ["dir2 is not alive", "nfs2 is not alive", "db2 does not pass its role check",
                                   "Galera is not at full size and Synced: db1, db2 not",
                                   "DRBD is not UpToDate on both nfs nodes"]


def test_a_good_release_reaches_every_node_one_at_a_time() -> None:
    sim = Sim(TWO_OF_EACH)
    rollout = run(sim, Rollout.start(sim.view(), NEW, 0))
    assert rollout.status == Status.DONE, rollout.reason
    assert all(n.release == NEW and n.check and n.alive for n in sim.nodes.values())
    assert reboots(sim) == [s.node for s in order(Sim(TWO_OF_EACH).view()) if s.kind == Kind.REBOOT]
    # Never two nodes down at once, and no reboot before every node had staged the release.
    first_reboot = min(t for t, _, what in sim.events if what == "reboot")
    assert first_reboot >= 30
    times = [t for t, _, what in sim.events if what == "reboot"]
    assert all(b - a >= BOOT_S + CHECK_S for a, b in itertools.pairwise(times))
    # The canary soaked before web2 was touched; weights back to 1; the VIP and the NFS service moved.
    canary_back = next(t for t, node, what in sim.events if (node, what) == ("web1", "weight 1"))
    web2_out = next(t for t, node, what in sim.events if (node, what) == ("web2", "weight 0"))
    assert web2_out - canary_back >= Timing().soak
    assert sim.nodes["web1"].weight == sim.nodes["web2"].weight == 1
    assert (sim.holder, sim.primary) == ("dir2", "nfs2")


def test_a_release_that_fails_on_the_canary_stops_everything_and_leaves_no_drain() -> None:
    sim = Sim(TWO_OF_EACH, bad={"web1"})
    rollout = run(sim, Rollout.start(sim.view(), NEW, 0))
    assert rollout.status == Status.FAILED
    assert rollout.reason == (f"web1 came back on {OLD}: {NEW} failed there (it did not boot or did not pass its "
                              "role check) and the node returned to its old slot (step 2 of 15: reboot web1)")
    assert reboots(sim) == ["web1"]  # no other node touched
    assert sim.nodes["web1"].weight == 1  # back in rotation, on the old release
    assert all(n.release == OLD for n in sim.nodes.values())
    assert rollout.advance(sim.now + 1000, sim.view()) == []  # stopped for good: never retried in a loop


def test_a_node_that_never_passes_its_check_stops_the_rollout_at_the_deadline() -> None:
    sim = Sim(EXAMPLE, bad={"web1"})
    timing = Timing(reboot=100)  # shorter than the node's way back (BOOT_S + CHECK_S + FALLBACK_S)
    rollout = run(sim, Rollout.start(sim.view(), NEW, 0, timing))
    assert rollout.status == Status.FAILED
    assert rollout.reason == "reboot web1 did not finish within 100 s (step 2 of 12: reboot web1)"
    assert reboots(sim) == ["web1"]


def test_an_abort_touches_nothing_further_and_puts_the_drained_node_back() -> None:
    sim = Sim(EXAMPLE)
    rollout = Rollout.start(sim.view(), NEW, 0)
    while not reboots(sim):
        sim.apply(rollout.advance(sim.now, sim.view()))
        sim.tick()
    for _ in range(BOOT_S + CHECK_S + 5):
        sim.tick()
    sim.apply(rollout.abort(sim.view()))
    assert rollout.status == Status.ABORTED and rollout.reason.startswith("aborted by the operator (step 2 of 12")
    assert sim.nodes["web1"].weight == 1
    assert rollout.advance(sim.now, sim.view()) == [] and reboots(sim) == ["web1"]


def test_a_director_taking_over_goes_on_from_the_recorded_state() -> None:
    sim = Sim(TWO_OF_EACH)
    first = Rollout.start(sim.view(), NEW, 0)
    while "nfs2" not in reboots(sim):
        sim.apply(first.advance(sim.now, sim.view()))
        sim.tick()
    second = Rollout.from_json(first.to_json())  # the other director, from what the first wrote down
    assert second == first
    run(sim, second)
    assert second.status == Status.DONE
    assert reboots(sim).count("nfs2") == 1  # the reboot under way was not asked for again


def test_nodes_already_on_the_release_are_not_rebooted_again() -> None:
    sim = Sim(EXAMPLE)
    for name in ("web1", "dir2"):
        sim.set(name, release=NEW)
    rollout = run(sim, Rollout.start(sim.view(), NEW, 0))
    assert rollout.status == Status.DONE
    assert "web1" not in reboots(sim) and "dir2" not in reboots(sim)
    assert {n.release for n in sim.nodes.values()} == {NEW}


def test_a_node_lost_while_staging_stops_the_rollout_before_any_reboot() -> None:
    sim = Sim(EXAMPLE)
    rollout = Rollout.start(sim.view(), NEW, 0)
    sim.apply(rollout.advance(0, sim.view()))
    sim.set("db1", alive=False)
    assert rollout.advance(1, sim.view()) == [] and rollout.status == Status.FAILED
    assert rollout.reason == "db1 went away while the release was staged (staging the release on every node)"
    assert reboots(sim) == []


def test_steps_print_as_the_operator_reads_them() -> None:
    assert str(Step(Kind.HAND_VIP, "dir2")) == "hand-vip dir2"

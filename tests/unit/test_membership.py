"""The membership state machine on a fake clock (plain floats): up/down, no flapping, drains replicated as
last-writer-wins registers, and a simulated six-node cluster talking through a lossy fake link."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from herd.daemon.bounds import AHEAD, COUNTER_LIMIT
from herd.daemon.membership import Admin, DrainChanged, Event, Membership, Paused, PeerDown, PeerUp, State
from herd.daemon.wire import KIND_HEARTBEAT, Message, ReplayGuard, decode, encode
from herd.spec import Spec, load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/cluster.toml"
SPEC = load(EXAMPLE)
NAMES = [n.name for n in SPEC.nodes]
DEADTIME = SPEC.membership.deadtime_ms / 1000
INTERVAL = SPEC.membership.interval_ms / 1000
TICK = 0.05
T0 = 1000.0


def test_example_timings() -> None:
    assert (DEADTIME, INTERVAL) == (1.0, 0.2)
    assert NAMES == ["dir1", "dir2", "web1", "web2", "nfs1", "db1"]


def beat(sender: str, seq: int = 1, payload: dict[str, Any] | None = None, generation: int = 1) -> Message:
    return Message(KIND_HEARTBEAT, sender, generation, seq, payload or {})


def states(m: Membership) -> dict[str, str]:
    return {name: m.state(name).value for name in NAMES}


# -- up and down ---------------------------------------------------------------------------------------------

def test_initial_state() -> None:
    m = Membership(SPEC, "dir1", T0)
    assert m.deadtime == DEADTIME
    assert m.state("dir1") is State.ALIVE
    assert all(m.state(n) is State.UNKNOWN for n in NAMES if n != "dir1")
    assert m.alive() == {"dir1"}
    assert m.tick(T0 + 100) == []  # unknown peers never "die", self never does


def test_heard_brings_a_peer_up_once() -> None:
    m = Membership(SPEC, "dir1", T0)
    assert m.heard(beat("web1", 1), T0 + 0.1) == [PeerUp("web1")]
    assert m.state("web1") is State.ALIVE
    assert m.heard(beat("web1", 2), T0 + 0.3) == []
    assert m.alive() == {"dir1", "web1"}
    assert m.peers["web1"].last_seen == T0 + 0.3
    assert m.peers["web1"].generation == 1


def test_dead_after_deadtime_and_back() -> None:
    m = Membership(SPEC, "dir1", T0)
    last = T0 + 0.5
    m.heard(beat("web1"), last)
    assert m.tick(last + DEADTIME - 0.01) == []
    assert m.state("web1") is State.ALIVE
    assert m.tick(last + DEADTIME) == []  # silent for exactly deadtime: not yet
    events = m.tick(last + DEADTIME + 0.01)
    assert len(events) == 1 and isinstance(events[0], PeerDown) and events[0].name == "web1"
    assert events[0].silent_for == pytest.approx(DEADTIME + 0.01)
    assert m.state("web1") is State.DEAD
    assert m.alive() == {"dir1"}
    assert [e for e in m.tick(last + DEADTIME + 5) if not isinstance(e, Paused)] == []  # reported once
    assert m.heard(beat("web1", 2), last + 7) == [PeerUp("web1")]
    assert m.state("web1") is State.ALIVE


def test_heartbeats_with_up_to_four_consecutive_losses_never_flap() -> None:
    """Beats every 0.2 s, ticks every 0.05 s, messages delivered before the tick of the same instant (as the
    event loop does); any pattern of at most 4 lost beats in a row keeps the peer alive (5 x 0.2 = deadtime)."""
    rng = random.Random(7)
    m = Membership(SPEC, "dir1", 0.0)
    m.heard(beat("web1"), 0.0)
    losses_in_a_row = 0
    longest = 0
    events: list[Event] = []
    for step in range(1, 4000):
        now = step * TICK
        if step % 4 == 0:  # a heartbeat is due
            lose = losses_in_a_row < 4 and rng.random() < 0.6
            if lose:
                losses_in_a_row += 1
                longest = max(longest, losses_in_a_row)
            else:
                losses_in_a_row = 0
                events += m.heard(beat("web1", step), now)
        events += m.tick(now)
    assert longest == 4  # the pattern did include the worst case
    assert events == []
    assert m.state("web1") is State.ALIVE


def test_five_lost_heartbeats_is_a_death() -> None:
    m = Membership(SPEC, "dir1", 0.0)
    m.heard(beat("web1"), 0.0)
    events: list[Event] = []
    for step in range(1, 25):  # beats due at 0.2 … 1.0 all lost, the one at 1.2 arrives
        now = step * TICK
        events += m.tick(now)
        if step == 24:
            events += m.heard(beat("web1", 2), now)
    assert [type(e) for e in events] == [PeerDown, PeerUp]


def test_after_a_pause_of_its_own_a_node_reads_what_is_queued_before_judging() -> None:
    """The node's ticks stop for 2.7 s (its VM was not scheduled): the peers' heartbeats of that time are
    still queued. It declares nobody dead until it has settled; the peers whose beats it then reads stay
    alive, the one that really went silent is dead."""
    m = Membership(SPEC, "dir1", T0)
    for name in NAMES[1:]:
        m.heard(beat(name), T0)
    assert m.tick(T0) == []
    back = T0 + 2.7
    events = m.tick(back)
    assert events == [Paused(pytest.approx(2.7))]
    assert m.settling(back) and m.alive() == set(NAMES)
    for seq, name in enumerate(NAMES[1:-1], start=2):  # the queue drains, one datagram per loop turn
        m.heard(beat(name, seq), back + 0.01 * seq)
        assert m.tick(back + 0.01 * seq) == []
    events = []
    now = back + 0.01 * len(NAMES)
    while m.settling(now):  # ticks on time again
        events += m.tick(now)
        now += TICK
    events += m.tick(now)
    assert now - back <= 2 * INTERVAL + TICK
    assert [(type(e), e.name) for e in events] == [(PeerDown, NAMES[-1])]  # type: ignore[union-attr]
    assert m.alive() == set(NAMES) - {NAMES[-1]}


def test_a_long_pause_still_ends_in_verdicts() -> None:
    m = Membership(SPEC, "dir1", T0)
    for seq, name in enumerate(NAMES[1:], start=1):
        m.heard(beat(name, seq), T0)
    m.tick(T0)
    assert m.tick(T0 + 10) == [Paused(pytest.approx(10))]  # suspended, say: nothing queued from that long ago
    events = [e for step in range(1, 10) for e in m.tick(T0 + 10 + step * TICK)]
    assert {e.name for e in events if isinstance(e, PeerDown)} == set(NAMES) - {"dir1"}
    assert states(m) == {n: ("alive" if n == "dir1" else "dead") for n in NAMES}
    for name in NAMES[1:]:
        assert m.heard(beat(name, 100), T0 + 10.5) == [PeerUp(name)]
    assert m.alive() == set(NAMES)
    assert m.tick(T0 + 10.55) == []


def test_health_is_kept_from_the_latest_heartbeat() -> None:
    m = Membership(SPEC, "dir1", T0)
    m.heard(beat("web1", 1, {"health": {"load1": 0.5}}), T0)
    assert m.peers["web1"].health == {"load1": 0.5}
    m.heard(beat("web1", 2, {"health": "not a dict"}), T0 + 0.2)
    assert m.peers["web1"].health == {"load1": 0.5}
    m.heard(beat("web1", 3, {"health": {"load1": 1.5}}), T0 + 0.4)
    assert m.peers["web1"].health == {"load1": 1.5}


# -- view ----------------------------------------------------------------------------------------------------

def test_view_rows() -> None:
    m = Membership(SPEC, "dir1", T0)
    m.heard(beat("web1", 1, {"health": {"mem_pct": 12.0}}), T0 + 1.0)
    rows = m.view(T0 + 1.25)
    assert [r["name"] for r in rows] == NAMES
    for row in rows:
        assert set(row) == {"name", "role", "address", "state", "last_seen_ms", "health"}
    by_name = {r["name"]: r for r in rows}
    assert by_name["web1"] == {"name": "web1", "role": "web", "address": "192.168.50.21", "state": "alive",
                               "last_seen_ms": 250, "health": {"mem_pct": 12.0}}
    assert by_name["dir1"]["state"] == "alive" and by_name["dir1"]["role"] == "director"
    assert by_name["dir1"]["last_seen_ms"] == 1250  # since construction; tick() refreshes it
    m.tick(T0 + 1.25)
    assert {r["name"]: r for r in m.view(T0 + 1.25)}["dir1"]["last_seen_ms"] == 0
    assert by_name["db1"] == {"name": "db1", "role": "db", "address": "192.168.50.41", "state": "unknown",
                              "last_seen_ms": None, "health": {}}


# -- drain ---------------------------------------------------------------------------------------------------

def test_drain_states() -> None:
    m = Membership(SPEC, "dir1", T0)
    m.heard(beat("web1"), T0)
    assert m.set_drained("web1", True) == [DrainChanged("web1", True)]
    assert m.state("web1") is State.DRAINED
    assert m.alive() == {"dir1", "web1"}  # drained is still alive
    assert m.set_drained("web1", True) == []  # no change, no event
    m.tick(T0 + DEADTIME + 0.1)
    assert m.state("web1") is State.DEAD  # dead wins over drained
    m.heard(beat("web1", 2), T0 + 2)
    assert m.state("web1") is State.DRAINED  # and the drain survives the death
    assert m.set_drained("web1", False) == [DrainChanged("web1", False)]
    assert m.state("web1") is State.ALIVE


def test_drain_self_and_unknown() -> None:
    m = Membership(SPEC, "dir1", T0)
    m.set_drained("dir1", True)
    assert m.state("dir1") is State.DRAINED
    m.set_drained("db1", True)
    assert m.state("db1") is State.UNKNOWN  # never heard of: unknown wins over drained


def test_set_drained_of_an_unknown_node_raises() -> None:
    m = Membership(SPEC, "dir1", T0)
    with pytest.raises(KeyError):
        m.set_drained("nope", True)


def test_payload_carries_admin() -> None:
    m = Membership(SPEC, "dir1", T0)
    assert m.payload({"load1": 1.0}, quorate=False) == {"health": {"load1": 1.0}, "admin": {}, "vip": False,
                                                        "quorum": False}
    assert m.payload({}, holds_vip=True)["vip"] is True
    m.set_drained("web1", True)
    m.set_drained("web2", True)
    m.set_drained("web2", False)
    assert m.payload({})["admin"] == {"web1": [True, 1, "dir1"], "web2": [False, 2, "dir1"]}


def test_a_peer_says_whether_it_hears_a_quorum_and_one_that_does_not_say_is_taken_to() -> None:
    m = Membership(SPEC, "dir1", T0)
    m.heard(Message(KIND_HEARTBEAT, "dir2", 1, 1, {"quorum": False}), T0)
    assert not m.peers["dir2"].quorate
    m.heard(Message(KIND_HEARTBEAT, "dir2", 1, 2, {"vip": False}), T0)  # an older herdd
    assert m.peers["dir2"].quorate


def test_another_node_adopts_a_drain() -> None:
    a = Membership(SPEC, "dir1", T0)
    b = Membership(SPEC, "web2", T0)
    a.set_drained("web1", True)
    events = b.heard(beat("dir1", 1, a.payload({})), T0 + 0.1)
    assert events == [PeerUp("dir1"), DrainChanged("web1", True)]
    assert b.admin["web1"] == a.admin["web1"]
    assert b.heard(beat("dir1", 2, a.payload({})), T0 + 0.3) == []  # the same version again: nothing new
    # and b can undrain it, which a adopts in turn
    b.set_drained("web1", False)
    assert a.heard(beat("web2", 1, b.payload({})), T0 + 0.4) == [PeerUp("web2"), DrainChanged("web1", False)]
    assert a.admin["web1"].drained is False


def exchange(*nodes: Membership, order: list[int]) -> None:
    """Each node in `order` sends its payload to every other node."""
    for i in order:
        sender = nodes[i]
        for receiver in nodes:
            if receiver is not sender:
                receiver.merge_admin(sender.payload({})["admin"])


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize(("a_drains", "b_drains"), [(True, False), (False, True), (True, True)])
def test_concurrent_drains_converge(first: int, a_drains: bool, b_drains: bool) -> None:
    a = Membership(SPEC, "dir1", T0)
    b = Membership(SPEC, "dir2", T0)
    a.set_drained("web1", a_drains)
    b.set_drained("web1", b_drains)
    a.set_drained("web2", True)
    b.set_drained("web2", True)
    b.set_drained("web2", False)  # b's is newer (version 2)
    exchange(a, b, order=[first, 1 - first])
    assert a.admin == b.admin
    for m in (a, b):
        m.heard(beat("web1"), T0)
        m.heard(beat("web2"), T0)
    assert [a.state("web1"), a.state("web2")] == [b.state("web1"), b.state("web2")]
    # the tie on version is broken by origin name: dir2 > dir1
    assert a.admin["web1"].drained is b_drains and a.admin["web1"].origin == "dir2"
    assert a.admin["web2"].drained is False and a.admin["web2"].version == 2


def test_many_concurrent_drains_converge_in_any_order() -> None:
    rng = random.Random(11)
    for _ in range(20):
        nodes = [Membership(SPEC, name, T0) for name in NAMES]
        for node in nodes:
            for _ in range(rng.randrange(0, 4)):
                node.set_drained(rng.choice(NAMES), rng.random() < 0.5)
        order = list(range(len(nodes)))
        rng.shuffle(order)
        exchange(*nodes, order=order + order)  # two rounds: everyone hears everyone's merged state
        assert all(node.admin == nodes[0].admin for node in nodes)
        # and merging is order-insensitive: a fresh node hearing them all in another order agrees
        for perm in itertools.islice(itertools.permutations(range(len(nodes))), 5):
            fresh = Membership(SPEC, "db1", T0)
            for i in perm:
                fresh.merge_admin(nodes[i].payload({})["admin"])
            assert fresh.admin == nodes[0].admin


def test_older_versions_do_not_override_newer() -> None:
    m = Membership(SPEC, "dir1", T0)
    assert m.merge_admin({"web1": [True, 5, "dir2"]}) == [DrainChanged("web1", True)]
    assert m.merge_admin({"web1": [False, 4, "web2"]}) == []
    assert m.merge_admin({"web1": [False, 5, "dir1"]}) == []  # same version, smaller origin
    assert m.state("web1") is State.UNKNOWN and m.admin["web1"].drained is True
    assert m.merge_admin({"web1": [False, 5, "web1"]}) == [DrainChanged("web1", False)]
    assert m.merge_admin({"web1": [True, 6, "db1"]}) == [DrainChanged("web1", True)]
    assert m.admin["web1"].version == 6
    # a local change after a merge outranks what was merged
    m.set_drained("web1", False)
    assert (m.admin["web1"].version, m.admin["web1"].origin) == (7, "dir1")


@pytest.mark.parametrize("admin", [
    None, 3, "web1", [["web1", True, 1, "x"]],
    {"nope": [True, 1, "x"]},
    {"web1": "drained"},
    {"web1": [True, 1]},
    {"web1": [True, 1, "x", "extra"]},
    {"web1": ["yes", 1, "x"]},
    {"web1": [1, 1, "x"]},
    {"web1": [True, "1", "x"]},
    {"web1": [True, 1.5, "x"]},
    {"web1": [True, None, "x"]},
    {"web1": [True, 1, 7]},
    {"web1": [True, 1, None]},
    {"web1": [True, 1, ["x"]]},
    {"web1": {"drained": True, "version": 1, "origin": "x"}},
])
def test_malformed_admin_is_ignored(admin: Any) -> None:
    m = Membership(SPEC, "dir1", T0)
    payload = {"admin": admin} if admin is not None else {}
    assert m.heard(beat("web2", 1, payload), T0) == [PeerUp("web2")]
    assert all(a.version == 0 and not a.drained for a in m.admin.values())
    assert m.merge_admin(admin) == []


def test_malformed_entries_do_not_stop_good_ones() -> None:
    m = Membership(SPEC, "dir1", T0)
    events = m.merge_admin({"nope": [True, 1, "x"], "web1": [True, "1", "x"], "web2": [True, 1, "dir2"]})
    assert events == [DrainChanged("web2", True)]



@pytest.mark.parametrize("entry", [
    [True, 1, "x" * 1000],  # re-broadcast by every node, a long origin would grow every heartbeat
    [True, 1, "dir3"],       # not a spec node
    [True, 1, ""],
    [True, 2**53, "dir2"],
    [True, 10**400, "dir2"],
    [True, -1, "dir2"],
    [True, True, "dir2"],
    [True, AHEAD + 1, "dir2"],  # far ahead of anything known (0 here)
    [True, COUNTER_LIMIT - 1, "dir2"],
])
def test_a_drain_register_out_of_bounds_is_refused_counted_and_not_passed_on(entry: list[Any]) -> None:
    m = Membership(SPEC, "dir1", T0)
    assert m.heard(beat("web2", 1, {"admin": {"web1": entry}}), T0) == [PeerUp("web2")]
    assert m.admin["web1"] == Admin() and m.state("web1") is State.UNKNOWN
    assert m.payload({})["admin"] == {} and m.refused["admin"] == 1


def test_a_version_climbs_at_most_ahead_per_message() -> None:
    m = Membership(SPEC, "dir1", T0)
    assert m.merge_admin({"web1": [True, AHEAD, "dir2"]}) == [DrainChanged("web1", True)]
    assert m.merge_admin({"web1": [False, 2 * AHEAD + 1, "dir2"]}) == []
    assert m.merge_admin({"web1": [False, 2 * AHEAD, "dir2"]}) == [DrainChanged("web1", False)]
    assert m.admin["web1"] == Admin(2 * AHEAD, "dir2", False) and m.refused["admin"] == 1
    m.set_drained("web1", True)  # the next change is within bounds for every node that took the last one
    other = Membership(SPEC, "web2", T0)
    other.merge_admin({"web1": [True, AHEAD, "dir2"]})
    other.merge_admin({"web1": [False, 2 * AHEAD, "dir2"]})
    assert other.merge_admin(m.payload({})["admin"]) == [DrainChanged("web1", True)]


def test_a_heartbeat_too_big_leaves_out_undrained_registers_first_then_the_lowest_versions() -> None:
    m = Membership(SPEC, "dir1", T0)
    for name, times in (("web1", 3), ("web2", 1), ("nfs1", 2), ("db1", 1), ("dir2", 4)):
        for i in range(times):
            m.set_drained(name, i % 2 == 0)  # web1: drained (3), web2: drained (1), nfs1: undrained (2) ...
    payload = m.payload({"load1": 1.0})
    admin = dict(payload["admin"])
    assert {n: (a[0], a[1]) for n, a in admin.items()} == {
        "web1": (True, 3), "web2": (True, 1), "nfs1": (False, 2), "db1": (True, 1), "dir2": (False, 4)}
    order = ["nfs1", "dir2", "db1", "web2", "web1"]
    for budget in range(len(order) + 1):
        out, left_out = Membership.fitted(payload, lambda p, n=budget: len(p["admin"]) <= len(order) - n)
        assert left_out == order[:budget]
        assert out["admin"] == {n: a for n, a in admin.items() if n not in left_out}
        assert {k: v for k, v in out.items() if k != "admin"} == {k: v for k, v in payload.items() if k != "admin"}
    assert payload["admin"] == admin  # not changed in place
    assert Membership.fitted(payload, lambda p: True) == (payload, [])
    out, left_out = Membership.fitted(payload, lambda p: False)  # nothing helps: every register left out
    assert out["admin"] == {} and left_out == order
    empty = Membership(SPEC, "dir1", T0).payload({})
    assert Membership.fitted(empty, lambda p: False) == (empty, [])

# -- a simulated cluster -------------------------------------------------------------------------------------

KEY = b"cluster key"


@dataclass
class Node:
    membership: Membership
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    generation: int = 1
    seq: int = 0
    down_at: dict[str, float] = field(default_factory=dict)
    up: set[str] = field(default_factory=set)


@dataclass
class Link:
    """Datagrams in flight: (deliver_at, sender, receiver, bytes), with a rule for which to drop."""

    latency: float = 0.001
    queue: list[tuple[float, str, str, bytes]] = field(default_factory=list)
    dropped: int = 0

    def send(self, now: float, sender: str, receiver: str, data: bytes) -> None:
        self.queue.append((now + self.latency, sender, receiver, data))

    def due(self, now: float) -> list[tuple[str, str, bytes]]:
        ready = [(s, r, d) for t, s, r, d in self.queue if t <= now]
        self.queue = [item for item in self.queue if item[0] > now]
        return ready


class Cluster:
    def __init__(self, spec: Spec, drop: Any = None) -> None:
        self.spec = spec
        self.now = 0.0
        self.nodes = {n.name: Node(Membership(spec, n.name, 0.0)) for n in spec.nodes}
        self.link = Link()
        self.stopped: set[str] = set()
        self.last_sent: dict[str, float] = {}
        self.drop = drop or (lambda sender, receiver, now: False)

    def send_heartbeats(self) -> None:
        for name, node in self.nodes.items():
            if name in self.stopped:
                continue
            node.seq += 1
            data = encode(Message(KIND_HEARTBEAT, name, node.generation, node.seq, node.membership.payload({})),
                          self.spec.name, KEY)
            self.last_sent[name] = self.now
            for other in self.nodes:
                if other == name:
                    continue
                if self.drop(name, other, self.now):
                    self.link.dropped += 1
                else:
                    self.link.send(self.now, name, other, data)

    def deliver(self) -> None:
        for _sender, receiver, data in self.link.due(self.now):
            node = self.nodes[receiver]
            msg = decode(data, self.spec.name, KEY)  # nothing here is forged or replayed: Drop fails the test
            node.guard.check(msg)
            node.guard.accept(msg)
            self.record(receiver, node.membership.heard(msg, self.now))

    def tick(self) -> None:
        for name, node in self.nodes.items():
            if name not in self.stopped:
                self.record(name, node.membership.tick(self.now))

    def record(self, name: str, events: list[Event]) -> None:
        node = self.nodes[name]
        for event in events:
            if isinstance(event, PeerDown):
                node.down_at.setdefault(event.name, self.now)
            elif isinstance(event, PeerUp):
                node.up.add(event.name)

    def run(self, seconds: float) -> None:
        """Ticks every 0.05 s; heartbeats every fourth tick (0.2 s)."""
        steps = round(seconds / TICK)
        start = round(self.now / TICK)
        for step in range(start + 1, start + steps + 1):
            self.now = step * TICK
            self.deliver()
            if step % round(INTERVAL / TICK) == 0:
                self.send_heartbeats()
            self.tick()


def test_six_nodes_all_see_all_alive() -> None:
    cluster = Cluster(SPEC)
    cluster.run(2.0)
    for name, node in cluster.nodes.items():
        assert states(node.membership) == dict.fromkeys(NAMES, "alive"), name
        assert node.up == set(NAMES) - {name}
        assert node.down_at == {}


def test_a_killed_node_is_seen_dead_by_everyone_in_time() -> None:
    cluster = Cluster(SPEC)
    cluster.run(2.0)
    cluster.stopped.add("web2")
    last_beat = cluster.last_sent["web2"]
    cluster.run(3.0)
    for name, node in cluster.nodes.items():
        if name == "web2":
            continue
        assert node.membership.state("web2") is State.DEAD, name
        detected = node.down_at["web2"] - last_beat
        assert DEADTIME < detected <= DEADTIME + INTERVAL + TICK, (name, detected)
        assert set(node.down_at) == {"web2"}  # nobody else flapped
        assert node.membership.alive() == set(NAMES) - {"web2"}


def test_a_rebooted_node_comes_back_with_a_new_generation() -> None:
    cluster = Cluster(SPEC)
    cluster.run(1.0)
    cluster.stopped.add("db1")
    cluster.run(2.0)
    assert all(node.membership.state("db1") is State.DEAD for name, node in cluster.nodes.items() if name != "db1")
    # a reboot: fresh membership and replay guard, seq restarts at 1, the generation is higher
    cluster.nodes["db1"] = Node(Membership(SPEC, "db1", cluster.now), generation=2)
    cluster.stopped.discard("db1")
    cluster.run(1.0)
    for name, node in cluster.nodes.items():
        assert states(node.membership) == dict.fromkeys(NAMES, "alive"), name
        if name != "db1":
            assert node.guard.generation_of("db1") == 2


def test_lossy_link_without_long_gaps_never_flaps() -> None:
    """Every link loses up to 4 heartbeats in a row, independently: nobody is ever declared dead."""
    rng = random.Random(3)
    streak: dict[tuple[str, str], int] = {}
    longest = [0]

    def drop(sender: str, receiver: str, now: float) -> bool:
        key = (sender, receiver)
        lose = streak.get(key, 0) < 4 and rng.random() < 0.4
        streak[key] = streak.get(key, 0) + 1 if lose else 0
        longest[0] = max(longest[0], streak[key])
        return lose

    cluster = Cluster(SPEC, drop)
    cluster.run(30.0)
    assert cluster.link.dropped > 1000
    assert longest[0] == 4
    for name, node in cluster.nodes.items():
        assert node.down_at == {}, name
        assert states(node.membership) == dict.fromkeys(NAMES, "alive")


def test_partition_heals() -> None:
    """dir1 cannot hear web1 (one direction only) for 2 s: only dir1 marks web1 dead, then it comes back."""
    def drop(sender: str, receiver: str, now: float) -> bool:
        return sender == "web1" and receiver == "dir1" and 2.0 < now < 4.0

    cluster = Cluster(SPEC, drop)
    cluster.run(6.0)
    for name, node in cluster.nodes.items():
        assert set(node.down_at) == ({"web1"} if name == "dir1" else set()), name
        assert states(node.membership) == dict.fromkeys(NAMES, "alive")


def test_a_drain_spreads_through_the_cluster() -> None:
    cluster = Cluster(SPEC)
    cluster.run(1.0)
    cluster.nodes["dir2"].membership.set_drained("web1", True)
    cluster.run(0.5)
    for name, node in cluster.nodes.items():
        assert node.membership.state("web1") is State.DRAINED, name

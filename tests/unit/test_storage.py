"""Who serves the replicated docroot, on a fake clock: two nfs nodes' storage machines over a small model of
DRBD (protocol C, StandAlone on split brain, fence-peer asking herdd) and of a LAN that can be cut. A client
writes through whoever serves and keeps what was acknowledged; every scenario checks that no two nodes serve at
once and that no acknowledged write is lost."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from herd.daemon.drbd import Report
from herd.daemon.membership import Peer
from herd.daemon.storage import GRACE_BEATS, Connect, CutLink, Demote, Initialize, Outdate, Promote, Storage
from herd.spec import Spec, parse

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples/cluster.toml").read_text()
DEAD, BEAT, TICK = 1.0, 0.2, 0.05
GRACE = GRACE_BEATS * BEAT
NODES = ("dir1", "web1", "nfs1", "nfs2")


def two_nfs_spec() -> Spec:
    """dir1, web1, nfs1, nfs2 (a quorum is 3)."""
    head, _, _ = EXAMPLE.partition("[[node]]")
    head = head.replace('[nfs]\n', '[nfs]\naddress = "192.168.50.30"\ndisk = "/dev/vdb"\n', 1)
    nodes = "".join(f'[[node]]\nname = "{n}"\nrole = "{r}"\naddress = "192.168.50.{a}"\n\n'
                    for n, r, a in (("dir1", "director", 11), ("web1", "web", 21), ("nfs1", "nfs", 31),
                                    ("nfs2", "nfs", 32)))
    return parse(head + nodes + '[access]\nssh_keys = []\n')


SPEC = two_nfs_spec()


class Box:
    """One nfs node and its DRBD: which writes its disk holds, its role, disk state and link."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.herdd = True  # False: herdd stopped, the kernel (DRBD, nfsd, the address) runs on
        self.writes: set[int | str] = set()
        self.role = "Secondary"
        self.disk = "Inconsistent"
        self.fresh = True
        self.standalone = False
        self.discard_next = False
        self.peer_outdated = False  # DRBD's metadata flag, set when the fence-peer handler says yes
        self.victim = False  # what herdd keeps in its state directory
        self.term = 0        # likewise
        self.machine: Storage | None = None

    def boot(self, now: float) -> None:
        self.up = True
        self.role = "Secondary"
        self.standalone = False
        if self.disk in ("UpToDate", "Consistent"):
            # DRBD attaches a consistent disk as UpToDate alone only if it knows its peer is outdated.
            self.disk = "UpToDate" if self.peer_outdated else "Consistent"
        self.machine = Storage(SPEC, self.name, now, victim=self.victim, term=self.term)


class Lab:
    def __init__(self) -> None:
        self.now = 0.0
        self.boxes = {n: Box(n) for n in ("nfs1", "nfs2")}
        self.views = {n: {node.name: Peer(node) for node in SPEC.nodes} for n in self.boxes}
        self.cut: set[frozenset[str]] = set()  # pairs that cannot reach each other
        self.acked: set[int] = set()
        self.counter = itertools.count()
        self.log: list[tuple[float, str, object]] = []
        self.linked = False  # the link worked at the last look
        self.seen_linked = {n: False for n in self.boxes}  # what each side's DRBD thought at the last look
        self.broken: set[str] = set()  # "drbd": the replication link is down while heartbeats flow
        self.relay = {"dir1": 0, "web1": 0}  # the highest storage term the other nodes have heard of
        self.relay_seen: dict[str, dict[str, float]] = {r: {} for r in self.relay}  # whom they heard, when
        self.drbd_notice = 0.0  # seconds DRBD takes to see its link dead (its ping timeout)
        self.paused: set[str] = set()  # whole VMs stopped: nothing runs there, nothing reaches them
        self.announced: str | None = None  # who took the service address last: the LAN's ARP caches point there
        self.settle_until = {n: 0.0 for n in self.boxes}  # Membership.settling, after a pause of its own
        self.down_since: float | None = None
        for box in self.boxes.values():
            box.boot(0.0)

    # -- the network ---------------------------------------------------------------------------------------
    def reach(self, a: str, b: str) -> bool:
        up = all(self.boxes[n].up and n not in self.paused for n in (a, b) if n in self.boxes)
        return up and frozenset((a, b)) not in self.cut

    def isolate(self, name: str) -> None:
        self.cut |= {frozenset((name, other)) for other in NODES if other != name}

    def heal(self) -> None:
        self.cut = set()

    def pause(self, name: str) -> None:
        self.paused.add(name)

    def resume(self, name: str) -> None:
        """The VM runs again: its herdd reads the heartbeats queued meanwhile while it settles."""
        self.paused.discard(name)
        self.settle_until[name] = self.now + 2 * BEAT

    def settling(self, name: str) -> bool:
        return self.now < self.settle_until[name]

    def running(self, box: Box) -> bool:
        return box.up and box.herdd and box.machine is not None and box.name not in self.paused

    # -- DRBD ------------------------------------------------------------------------------------------------
    def wire(self) -> bool:
        """Whether DRBD's link really works."""
        a, b = self.boxes["nfs1"], self.boxes["nfs2"]
        return self.reach("nfs1", "nfs2") and not a.standalone and not b.standalone and "drbd" not in self.broken

    def other(self, box: Box) -> Box:
        return self.boxes["nfs2" if box.name == "nfs1" else "nfs1"]

    def drbd_link(self, box: Box) -> bool:
        """Whether box's DRBD thinks it is connected: a dead link only `drbd_notice` seconds after it died,
        unless the peer closed it itself and its packets still arrive."""
        if self.wire():
            self.down_since = None
            return True
        if self.down_since is None:
            self.down_since = self.now
        if box.standalone or (self.other(box).standalone and self.reach("nfs1", "nfs2")):
            return False
        return self.seen_linked[box.name] and self.now - self.down_since < self.drbd_notice

    def report(self, box: Box) -> Report:
        other = self.other(box)
        linked = self.drbd_link(box)
        connection = "StandAlone" if box.standalone else ("Connected" if linked else "WFConnection")
        assert box.machine is not None
        return Report(role=box.role, connection=connection, disk=box.disk,
                      peer_disk=other.disk if linked else "DUnknown", peer_role=other.role if linked else "Unknown",
                      fresh=box.fresh, serving=box.machine.serving)

    def settle_drbd(self) -> None:
        """What DRBD does when the link comes up (sync, or split brain) and when it goes down (fence-peer)."""
        a, b = self.boxes["nfs1"], self.boxes["nfs2"]
        linked = self.wire()
        if linked and not self.linked:
            for box, other in ((a, b), (b, a)):
                if box.discard_next and other.disk == "UpToDate":
                    box.writes = set(other.writes)
                    box.disk = "Outdated"
                box.discard_next = False
            if a.writes - b.writes and b.writes - a.writes:
                a.standalone = b.standalone = True  # split brain: after-sb-* disconnect
                linked = False
            elif not (a.fresh and b.fresh):
                # DRBD's generation UUIDs say who wrote since they last met: that one is the sync source.
                for box, other in ((a, b), (b, a)):
                    if box.writes > other.writes and box.disk in ("UpToDate", "Consistent"):
                        box.disk, other.disk = "UpToDate", "Inconsistent"
                if a.writes == b.writes and {a.disk, b.disk} <= {"UpToDate", "Consistent"}:
                    a.disk = b.disk = "UpToDate"
        if linked:
            good = [x for x in (a, b) if x.disk == "UpToDate"]
            if len(good) == 1:
                for box in (a, b):
                    box.writes = set(good[0].writes)
                    box.disk = "UpToDate"
                    box.peer_outdated = False
        for box in (a, b):
            sees = self.drbd_link(box)
            if self.seen_linked[box.name] and not sees and box.up and box.machine is not None \
                    and box.name not in self.paused and box.role == "Primary" \
                    and box.machine.may_fence(self.now, self.views[box.name], self.settling(box.name)):
                box.peer_outdated = True  # the fence-peer handler said yes
            self.seen_linked[box.name] = sees
        self.linked = linked

    # -- herdd ---------------------------------------------------------------------------------------------
    def apply(self, box: Box, effect: object) -> None:
        assert box.machine is not None
        other = self.other(box)
        linked = self.drbd_link(box)
        match effect:
            case Initialize():
                box.role, box.disk, box.fresh = "Primary", "UpToDate", False
                other.fresh = False
                self.announced = box.name
            case Promote():
                ok = box.disk == "UpToDate" and not (linked and other.role == "Primary")
                if ok and not linked:
                    ok = box.machine.may_fence(self.now, self.views[box.name], self.settling(box.name))
                    box.peer_outdated = ok
                if ok:
                    box.role = "Primary"
                    self.announced = box.name
                else:
                    box.machine.failed(self.now)
            case Demote(disconnect=disconnect):
                if box.role == "Primary" and not linked:
                    box.writes.add(f"umount-{next(self.counter)}")  # the superblock, never acknowledged
                box.role = "Secondary"
                if disconnect:
                    box.standalone = True
            case Connect(discard_mine=discard):
                box.standalone = False
                box.discard_next = discard
            case Outdate():
                if not linked and box.role == "Secondary":
                    box.disk = "Outdated"
            case CutLink(peer=peer):
                if not self.reach(box.name, peer):  # its host does not answer ARP
                    box.standalone = True

    def client_write(self) -> None:
        """web1 writes through the node that serves, if it can reach it (the one whose gratuitous ARPs it heard
        last: a server back from a pause announces nothing); acknowledged when on disk (on both disks while DRBD
        is connected)."""
        for box in self.boxes.values():
            if box.up and box.machine is not None and box.machine.serving and box.role == "Primary" \
                    and self.reach("web1", box.name) and box.name == self.announced:
                if self.drbd_link(box) and not self.wire():
                    return  # protocol C: the write waits for the peer's ack until DRBD gives up on it
                n = next(self.counter)
                box.writes.add(n)
                if self.wire():
                    self.other(box).writes.add(n)
                self.acked.add(n)
                return

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        step = 0
        while self.now < end:
            self.settle_drbd()
            if step % round(BEAT / TICK) == 0:
                health: dict[str, dict[str, object]] = {
                    name: {"storage_term": term, "hears": sorted(n for n, t in self.relay_seen[name].items()
                                                                 if self.now - t <= DEAD)}
                    for name, term in self.relay.items()}
                for name, box in self.boxes.items():
                    if self.running(box):
                        assert box.machine is not None
                        drbd = box.machine.heartbeat_report(self.report(box).to_json(), self.now)
                        health[name] = {"drbd": {**drbd, "term": box.machine.term},
                                        "storage_term": box.machine.known_term(self.views[name]),
                                        "hears": sorted(n for n, p in self.views[name].items() if p.alive)}
                for relay in self.relay:  # dir1 and web1 pass on the highest term they hear
                    heard = [h["storage_term"] for sender, h in health.items() if self.reach(relay, sender)]
                    self.relay[relay] = max([self.relay[relay], *(t for t in heard if isinstance(t, int))])
                    self.relay_seen[relay].update({sender: self.now for sender in health
                                                   if sender != relay and self.reach(relay, sender)})
                for viewer, view in self.views.items():
                    if not self.boxes[viewer].up or viewer in self.paused:
                        continue
                    for sender in NODES:
                        if sender != viewer and self.reach(viewer, sender) and sender in health:
                            peer = view[sender]
                            peer.alive, peer.last_seen = True, self.now
                            peer.health = health[sender]
                self.client_write()
            for viewer, view in self.views.items():
                if viewer in self.paused:
                    continue  # its membership does not tick either
                for peer in view.values():
                    if peer.last_seen is not None and self.now - peer.last_seen > DEAD:
                        peer.alive = False
            for box in self.boxes.values():
                if self.running(box):
                    assert box.machine is not None
                    for effect in box.machine.tick(self.now, self.views[box.name], self.report(box),
                                                   self.settling(box.name)):
                        self.log.append((self.now, box.name, effect))
                        self.apply(box, effect)
                    box.victim, box.term = box.machine.victim, box.machine.term
            serving = self.serving()
            assert len(serving) <= 1, f"two nodes serve at {self.now:.2f}: {serving}"
            self.now = round(self.now + TICK, 6)
            step += 1

    def power_cut(self, name: str) -> None:
        box = self.boxes[name]
        box.up = False
        box.machine = None
        box.role = "Secondary"
        self.views[name] = {node.name: Peer(node) for node in SPEC.nodes}

    def power_on(self, name: str) -> None:
        self.boxes[name].boot(self.now)

    def serving(self) -> list[str]:
        """The nfs nodes that serve (a stopped VM serves nobody, whatever its herdd last decided)."""
        return [b.name for b in self.boxes.values() if b.up and b.machine is not None and b.machine.serving
                and b.name not in self.paused]

    def effects(self, name: str, kind: type) -> list[tuple[float, object]]:
        return [(t, e) for t, n, e in self.log if n == name and isinstance(e, kind)]

    def assert_nothing_lost(self, name: str) -> None:
        missing = self.acked - self.boxes[name].writes
        assert not missing, f"{name} lacks acknowledged writes {sorted(missing)[:10]}"


def started() -> Lab:
    lab = Lab()
    lab.run(5)
    return lab


def test_first_start_the_first_nfs_node_creates_the_disk_and_serves() -> None:
    lab = started()
    assert [n for n in ("nfs1", "nfs2") if lab.effects(n, Initialize)] == ["nfs1"]
    assert lab.serving() == ["nfs1"]
    assert lab.boxes["nfs2"].disk == "UpToDate"  # synced from nfs1
    assert lab.acked, "the client wrote nothing"
    assert lab.boxes["nfs2"].machine is not None and lab.boxes["nfs2"].machine.waiting == "nfs1 serves"


def test_one_node_alone_at_first_start_waits() -> None:
    lab = Lab()
    lab.power_cut("nfs2")
    lab.run(10)
    assert lab.serving() == [] and not lab.log
    assert lab.boxes["nfs1"].machine is not None
    assert "waiting for" in lab.boxes["nfs1"].machine.waiting or "down" in lab.boxes["nfs1"].machine.waiting


def test_the_servers_power_cut_the_other_takes_over_after_the_grace_and_keeps_every_write() -> None:
    lab = started()
    lab.power_cut("nfs1")
    cut_at = lab.now
    lab.run(8)
    assert lab.serving() == ["nfs2"]
    (t, _), = lab.effects("nfs2", Promote)
    assert DEAD + GRACE - BEAT <= t - cut_at <= DEAD + GRACE + 0.5  # from its last beat
    lab.assert_nothing_lost("nfs2")
    # The old server comes back as the standby, resynced, and does not take over (no preemption).
    lab.power_on("nfs1")
    lab.run(8)
    assert lab.serving() == ["nfs2"]
    assert lab.boxes["nfs1"].disk == "UpToDate" and lab.boxes["nfs1"].writes == lab.boxes["nfs2"].writes
    lab.assert_nothing_lost("nfs1")


def test_drbd_slow_to_see_a_dead_server_the_standby_cuts_the_link_itself_once_its_host_is_gone() -> None:
    lab = started()
    lab.drbd_notice = 30.0
    lab.power_cut("nfs1")
    cut_at = lab.now
    lab.run(8)
    assert lab.serving() == ["nfs2"]
    (cut_link_at, effect), = lab.effects("nfs2", CutLink)
    assert effect == CutLink("nfs1", "192.168.50.31")
    (t, _), = lab.effects("nfs2", Promote)
    assert t - cut_at <= DEAD + GRACE + 0.5 and t >= cut_link_at
    lab.assert_nothing_lost("nfs2")
    lab.power_on("nfs1")
    lab.run(8)
    assert lab.serving() == ["nfs2"] and lab.boxes["nfs1"].writes == lab.boxes["nfs2"].writes


def test_a_server_whose_herdd_stops_while_its_kernel_serves_on_is_never_joined_by_a_second_server() -> None:
    """nfs1's herdd dies; its kernel is still DRBD primary and answers ARP: nfs2 asks, and waits for DRBD."""
    lab = started()
    lab.drbd_notice = 1000.0
    lab.boxes["nfs1"].herdd = False
    lab.run(20)
    assert not lab.effects("nfs2", Promote) and lab.boxes["nfs1"].role == "Primary"
    assert lab.effects("nfs2", CutLink) and not lab.boxes["nfs2"].standalone
    assert lab.boxes["nfs2"].machine is not None and lab.boxes["nfs2"].machine.waiting == "DRBD still sees nfs1"


def test_a_partitioned_server_steps_down_before_the_other_serves_and_is_resynced_after() -> None:
    lab = started()
    lab.isolate("nfs1")
    cut_at = lab.now
    lab.run(8)
    (down_at, demote), = lab.effects("nfs1", Demote)
    assert isinstance(demote, Demote) and demote.disconnect and demote.reason == "lost quorum"
    (up_at, _), = lab.effects("nfs2", Promote)
    assert down_at - cut_at <= DEAD and up_at - down_at >= GRACE
    lab.heal()
    lab.run(8)
    # DRBD saw a split brain (the old server's unmount); herdd has nfs1 drop its unacknowledged changes.
    assert lab.effects("nfs1", Connect)[-1][1] == Connect(discard_mine=True)
    assert lab.serving() == ["nfs2"]
    assert lab.boxes["nfs1"].writes == lab.boxes["nfs2"].writes and lab.boxes["nfs1"].disk == "UpToDate"
    assert not lab.boxes["nfs1"].victim
    lab.assert_nothing_lost("nfs1")


def test_an_isolated_standby_never_serves() -> None:
    lab = started()
    lab.isolate("nfs2")
    lab.run(10)
    assert lab.serving() == ["nfs1"] and not lab.effects("nfs2", Promote)
    lab.heal()
    lab.run(5)
    assert lab.boxes["nfs2"].writes == lab.boxes["nfs1"].writes
    lab.assert_nothing_lost("nfs2")


def test_a_standby_cut_off_while_the_server_wrote_waits_for_the_server() -> None:
    """nfs2 is isolated; nfs1 goes on serving (and writing) alone, then dies; nfs2 comes back to the LAN: its
    disk misses writes, so it must not serve; when nfs1 returns, nfs1 serves with everything."""
    lab = started()
    lab.isolate("nfs2")
    lab.run(5)
    lab.power_cut("nfs1")
    lab.heal()
    lab.run(15)
    assert lab.serving() == [] and not lab.effects("nfs2", Promote)
    assert lab.boxes["nfs2"].machine is not None and "nfs1 served term" in lab.boxes["nfs2"].machine.waiting
    lab.power_on("nfs1")
    lab.run(10)
    assert lab.serving() == ["nfs1"]
    lab.assert_nothing_lost("nfs1")
    lab.assert_nothing_lost("nfs2")


def test_a_broken_replication_link_outdates_the_standby_which_then_never_serves() -> None:
    lab = started()
    lab.broken.add("drbd")
    try:
        lab.run(3)
        assert lab.effects("nfs2", Outdate) and lab.boxes["nfs2"].disk == "Outdated"
        assert lab.serving() == ["nfs1"]
        lab.power_cut("nfs1")
        lab.run(10)
        assert lab.serving() == [] and not lab.effects("nfs2", Promote)
    finally:
        lab.broken.discard("drbd")
    lab.power_on("nfs1")
    lab.run(10)
    assert lab.serving() == ["nfs1"]
    lab.assert_nothing_lost("nfs2")


def test_whole_cluster_power_loss_both_come_back_and_serve_everything() -> None:
    lab = started()
    for name in ("nfs1", "nfs2"):
        lab.power_cut(name)
    lab.run(1)
    lab.power_on("nfs2")
    lab.run(10)
    assert lab.serving() == [], "a lone node after a power loss does not know it holds the newest data"
    lab.power_on("nfs1")
    lab.run(10)
    assert len(lab.serving()) == 1
    for name in ("nfs1", "nfs2"):
        lab.assert_nothing_lost(name)


def test_the_last_server_alone_after_a_power_loss_serves_if_drbd_knows_its_peer_is_outdated() -> None:
    """nfs2 dies; nfs1 serves alone (DRBD's fence-peer asked herdd, which said yes: nfs2's disk is outdated);
    then nfs1 loses power too and comes back first: it may serve, since nobody can hold newer data."""
    lab = started()
    lab.power_cut("nfs2")
    lab.run(5)
    assert lab.boxes["nfs1"].peer_outdated
    lab.power_cut("nfs1")
    lab.run(1)
    lab.power_on("nfs1")
    lab.run(10)
    assert lab.serving() == ["nfs1"]
    lab.assert_nothing_lost("nfs1")


def test_flapping_standby_link_causes_no_takeover() -> None:
    lab = started()
    for _ in range(10):
        lab.isolate("nfs2")
        lab.run(0.5)
        lab.heal()
        lab.run(0.5)
    lab.run(5)
    assert lab.serving() == ["nfs1"] and not lab.effects("nfs2", Promote) and not lab.effects("nfs1", Demote)
    lab.assert_nothing_lost("nfs2")


def test_a_server_that_hears_a_better_server_steps_down() -> None:
    machine = Storage(SPEC, "nfs2", 0.0)
    machine.serving = True
    views = {node.name: Peer(node, alive=True, last_seen=10.0) for node in SPEC.nodes}
    views["nfs1"].health = {"drbd": Report("Primary", "StandAlone", "UpToDate", "DUnknown", serving=True).to_json()}
    local = Report("Primary", "StandAlone", "UpToDate", "DUnknown", serving=True)
    assert machine.tick(10.0, views, local) == [Demote("nfs1 serves too")]


def test_reports_round_trip_and_bad_ones_are_none() -> None:
    report = Report("Primary", "SyncSource", "UpToDate", "Inconsistent", "Secondary", sync=12.5, serving=True,
                    error="x")
    assert Report.from_json(report.to_json()) == report
    assert Report.from_json({"role": 1}) is None
    assert Report.from_json("Primary") is None


def test_housekeeping_is_not_repeated_every_tick() -> None:
    """A split brain that herdd cannot explain (this node did not step down for lost quorum) stays StandAlone:
    herdd asks DRBD to reconnect every few seconds, never drops data, and never serves."""
    machine = Storage(SPEC, "nfs2", 0.0)
    views = {node.name: Peer(node, alive=True, last_seen=0.0) for node in SPEC.nodes}
    views["nfs1"].health = {"drbd": Report("Primary", "StandAlone", "UpToDate", "DUnknown", serving=True).to_json()}
    local = Report("Secondary", "StandAlone", "UpToDate", "DUnknown")
    effects = []
    for step in range(200):  # 10 s
        now = step * TICK
        for peer in views.values():
            peer.last_seen = now
        effects += machine.tick(now, views, local)
    assert effects == [Connect(discard_mine=False), Connect(discard_mine=False)]
    assert not machine.serving


def test_the_last_server_that_lost_quorum_for_a_moment_serves_again() -> None:
    """nfs2 died long ago; nfs1 serves alone; the switch reboots (nobody hears anybody for a while). nfs1 steps
    down, and once the LAN is back it serves again: its term is the newest anyone knows, so nobody can hold
    writes it lacks."""
    lab = started()
    lab.power_cut("nfs2")
    lab.run(5)
    for name in NODES:
        lab.isolate(name)
    lab.run(3)
    assert lab.serving() == []
    lab.heal()
    lab.run(8)
    assert lab.serving() == ["nfs1"]
    lab.assert_nothing_lost("nfs1")


def test_terms_grow_with_each_server_and_everyone_passes_them_on() -> None:
    lab = started()
    first = lab.boxes["nfs1"].term
    assert first >= 1 and lab.boxes["nfs2"].term == first  # in sync: the same data, the same term
    lab.power_cut("nfs1")
    lab.run(8)
    assert lab.boxes["nfs2"].term > first and lab.relay == {"dir1": lab.boxes["nfs2"].term,
                                                            "web1": lab.boxes["nfs2"].term}


def test_a_forged_term_within_bounds_makes_the_server_step_down_but_not_for_good() -> None:
    """One heartbeat signed with a stolen key says a term well ahead (within herd.daemon.bounds: taken, and
    passed on by dir1 and web1). The server steps down for it, as for a real newer term; with both nfs nodes up
    the first serves again at once, with a term above the forged one, and nothing acknowledged is lost."""
    lab = started()
    assert lab.serving() == ["nfs1"]
    forged = lab.boxes["nfs1"].term + 1000
    lab.relay["dir1"] = forged
    lab.run(2)
    assert lab.effects("nfs1", Demote)[0][1] == Demote(
        f"a newer term ({forged}, this node's is {forged - 1000}) was served without this node", disconnect=True)
    lab.run(8)
    assert lab.serving() == ["nfs1"] and lab.boxes["nfs1"].term == forged + 1
    assert lab.relay == {"dir1": forged + 1, "web1": forged + 1}
    written = len(lab.acked)
    lab.run(2)
    assert len(lab.acked) > written
    lab.assert_nothing_lost("nfs1")
    lab.assert_nothing_lost("nfs2")


def test_a_server_that_steps_down_stays_a_victim_while_drbd_still_looks_connected() -> None:
    """DRBD's timers notice a partition later than herdd: for a moment after stepping down for lost quorum the
    disk still reads Connected and UpToDate/UpToDate. That must not clear what herdd knows: this node's changes
    from now on are unacknowledged, and are dropped once the other node serves."""
    machine = Storage(SPEC, "nfs1", 0.0)
    machine.serving = True
    views = {node.name: Peer(node, alive=True, last_seen=0.0) for node in SPEC.nodes}
    connected = Report("Primary", "Connected", "UpToDate", "UpToDate", "Secondary", serving=True)
    assert machine.tick(10.0, views, connected) == [Demote("lost quorum", disconnect=True)]
    for t in (10.5, 11.0, 11.5):
        machine.tick(t, views, connected.with_(role="Secondary", serving=False))
    assert machine.victim


def test_a_server_back_from_a_pause_of_its_own_decides_nothing_while_settling() -> None:
    machine = Storage(SPEC, "nfs1", 0.0)
    machine.serving = True
    views = {node.name: Peer(node, alive=True, last_seen=0.0) for node in SPEC.nodes}
    serving = Report("Primary", "Connected", "UpToDate", "UpToDate", "Secondary", serving=True)
    assert machine.tick(10.0, views, serving, settling=True) == []  # the silence may be beats not read yet
    assert machine.serving
    assert machine.tick(10.5, views, serving) == [Demote("lost quorum", disconnect=True)]  # real silence


def test_a_cut_between_the_nfs_nodes_alone_leaves_the_server_serving_and_the_standby_waiting() -> None:
    """Only the nfs1-nfs2 link breaks (heartbeats and DRBD): both still see a quorum. nfs2 must not take over
    from a server dir1 and web1 still hear; nfs1 counts nfs2 outdated and goes on alone, losing nothing."""
    lab = started()
    lab.drbd_notice = 3.0  # nfs1's DRBD sees the link dead only then (nfs2's cut does not reach it)
    lab.cut.add(frozenset(("nfs1", "nfs2")))
    lab.run(10)
    assert lab.serving() == ["nfs1"] and not lab.effects("nfs2", Promote)
    assert lab.effects("nfs2", CutLink), "nfs1's host does not answer nfs2's ARP: nfs2 cuts DRBD's link"
    assert lab.boxes["nfs2"].machine is not None
    assert lab.boxes["nfs2"].machine.waiting == ("nfs1 is silent here but dir1, web1 still hear it: the link "
                                                 "between the nfs nodes is down, not nfs1")
    assert lab.boxes["nfs1"].peer_outdated, "nfs1 fenced nfs2 and serves on alone"
    written = len(lab.acked)
    lab.run(2)
    assert len(lab.acked) > written, "the server took no writes while cut off from its peer"
    lab.heal()
    lab.run(10)
    assert lab.serving() == ["nfs1"] and lab.boxes["nfs2"].writes == lab.boxes["nfs1"].writes
    lab.assert_nothing_lost("nfs2")


def test_the_fence_handler_is_answered_from_the_lease_at_that_moment_not_the_last_tick() -> None:
    lab = started()
    machine = lab.boxes["nfs1"].machine
    assert machine is not None and machine.serving
    view = lab.views["nfs1"]
    assert machine.may_fence(lab.now, view)
    assert not machine.may_fence(lab.now + machine.lease + BEAT, view), "the lease ran out since the last tick"
    assert lab.boxes["nfs2"].machine is not None and not lab.boxes["nfs2"].machine.may_fence(lab.now, lab.views["nfs2"])


def test_a_server_paused_longer_than_its_lease_steps_down_as_it_resumes_and_the_new_server_keeps_every_write() -> None:
    """nfs1 serves and its whole VM stops for 5 s (no heartbeats, no ARP answers): nfs2 cuts the link, takes over
    with a new term and takes writes. nfs1 resumes; the heartbeats queued meanwhile show it a quorum again, but its
    lease may have run out (it did): it steps down at once, first nfs node or not, and drops what it wrote since."""
    lab = started()
    assert lab.serving() == ["nfs1"]
    lab.drbd_notice = 30.0  # nfs2 cuts DRBD's link itself
    lab.pause("nfs1")
    lab.run(5)
    assert lab.serving() == ["nfs2"] and lab.effects("nfs2", CutLink)
    written = len(lab.acked)
    nfs1, nfs2 = lab.boxes["nfs1"].machine, lab.boxes["nfs2"].machine
    assert nfs1 is not None and nfs2 is not None and nfs1.serving and nfs2.term > nfs1.term
    assert not nfs1.may_fence(lab.now, lab.views["nfs1"]), "its ticks stopped for longer than the lease"
    assert not nfs1.claims(lab.now), "its next tick steps down"
    lab.resume("nfs1")
    lab.run(TICK)  # the heartbeat goes out before that tick
    said = lab.views["nfs2"]["nfs1"].health["drbd"]
    assert isinstance(said, dict) and said["serving"] is False and said["role"] == "Primary"
    lab.run(BEAT)
    (_, demote), = lab.effects("nfs1", Demote)
    assert isinstance(demote, Demote) and demote.disconnect and demote.reason.startswith("paused for 5")
    assert nfs1.victim and not nfs1.may_fence(lab.now, lab.views["nfs1"], settling=True)
    lab.run(10)
    assert lab.serving() == ["nfs2"] and not lab.effects("nfs2", Demote)
    assert len(lab.acked) > written
    assert lab.effects("nfs1", Connect)[-1][1] == Connect(discard_mine=True)
    assert lab.boxes["nfs1"].writes == lab.boxes["nfs2"].writes and not lab.boxes["nfs1"].victim
    lab.assert_nothing_lost("nfs1")
    lab.assert_nothing_lost("nfs2")


def test_a_server_that_hears_of_a_newer_term_steps_down_and_the_newer_server_serves_on() -> None:
    """Both serve (nfs1 missed that nfs2 took over: term 4 against its 3). nfs1, the first nfs node, steps down
    for the newer term, though its link is down and it would otherwise start a term of its own (one higher than
    any it knows, which would hide nfs2's); nfs2 does not step down for a server of an older term."""
    nfs1 = Storage(SPEC, "nfs1", 0.0, term=3)
    nfs2 = Storage(SPEC, "nfs2", 0.0, term=4)
    nfs1.serving = nfs2.serving = True
    nfs1_report = Report("Primary", "WFConnection", "UpToDate", "DUnknown", serving=True)
    nfs2_report = Report("Primary", "StandAlone", "UpToDate", "DUnknown", serving=True, ready=True)

    def view(other: str, report: Report, own: int) -> dict[str, Peer]:
        views = {node.name: Peer(node, alive=True, last_seen=10.0) for node in SPEC.nodes}
        views[other].health = {"drbd": {**report.to_json(), "term": own}, "storage_term": 4}
        for relay in ("dir1", "web1"):
            views[relay].health = {"storage_term": 4}
        return views

    assert nfs1.tick(10.0, view("nfs2", nfs2_report, 4), nfs1_report) == [
        Demote("a newer term (4, this node's is 3) was served without this node", disconnect=True)]
    assert not nfs1.serving and nfs1.victim and nfs1.term == 3
    assert nfs2.tick(10.0, view("nfs1", nfs1_report, 3), nfs2_report) == [Connect()]  # no Demote
    assert nfs2.serving and nfs2.waiting == "nfs1 serves an older term (3) too"


def test_the_fence_handler_is_refused_after_a_pause_of_this_nodes_own_and_while_it_settles() -> None:
    """Between a pause and the next tick (which steps down for it), the heartbeats read meanwhile may show a
    quorum: that quorum may have let the other node take over. While it settles after a shorter pause, what it
    sees may not be read yet either."""
    machine = Storage(SPEC, "nfs1", 0.0, term=1)
    machine.serving = True
    serving = Report("Primary", "Connected", "UpToDate", "UpToDate", "Secondary", serving=True)

    def view(at: float) -> dict[str, Peer]:
        return {node.name: Peer(node, alive=True, last_seen=at) for node in SPEC.nodes}

    assert machine.tick(10.0, view(10.0), serving) == []
    assert machine.may_fence(10.3, view(10.3))
    assert not machine.may_fence(10.3, view(10.3), settling=True)
    assert not machine.may_fence(15.0, view(15.0)), "paused 5 s: the next tick steps down"
    assert machine.tick(15.0, view(15.0), serving, settling=True) == [
        Demote("paused for 5000 ms, longer than the lease", disconnect=True)]
    assert not machine.serving and machine.victim and not machine.may_fence(15.0, view(15.0))


def test_storage_state_is_saved_on_the_storage_thread_and_before_a_promotion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An fsync on a busy stick can outlast a deadtime: poll (on the event loop) never saves; a promotion's new
    term and `victim = False` are on disk before it starts."""
    import threading

    from herd.daemon import drbdctl
    from herd.daemon.loop import Config, Daemon
    from herd.daemon.state import StateDir
    from herd.daemon.storagelink import StorageLink

    me = SPEC.node_named("nfs1")
    assert me is not None
    d = Daemon(Config(SPEC, me, b"k" * 32, 5, tmp_path / "sock", None, StateDir(tmp_path / "state")))
    d.config.state.save_json("storage.json", {"victim": True, "term": 3})
    link = StorageLink(d)
    assert (link.machine.victim, link.machine.term) == (True, 3)
    steps: list[tuple[str, str]] = []
    save_json = d.config.state.save_json

    def saving(name: str, data: object) -> None:
        steps.append((f"save {data}", threading.current_thread().name))
        save_json(name, data)

    def primary() -> None:
        steps.append(("primary", threading.current_thread().name))
        raise drbdctl.EngineError("not here")

    monkeypatch.setattr(d.config.state, "save_json", saving)
    monkeypatch.setattr(drbdctl, "read_report", lambda: Report("Secondary", "Connected", "UpToDate", "UpToDate"))
    monkeypatch.setattr(drbdctl, "primary", primary)
    monkeypatch.setattr(drbdctl, "stop_serving", lambda export: None)
    monkeypatch.setattr(drbdctl, "secondary", lambda: None)

    def promote(now: float, peers: object, local: object, settling: bool = False) -> list[object]:
        link.machine.serving, link.machine.victim, link.machine.term = True, False, 4
        return [Promote("test")]

    monkeypatch.setattr(link.machine, "tick", promote)
    link.up = True
    link.poll()
    link.worker.shutdown(wait=True)
    assert steps[:2] == [("save {'victim': False, 'term': 4, 'initializing': False}", "storage_0"),
                         ("primary", "storage_0")]
    assert d.health["drbd"]["term"] == 4


def test_the_heartbeats_a_server_sends_before_its_first_tick_after_a_pause_do_not_say_it_serves(
        tmp_path: Path) -> None:
    """herdd's heartbeat task may run before the storage poll that steps down for a pause: those heartbeats say
    the node does not serve (the other may have taken over meanwhile); its DRBD report is otherwise unchanged."""
    from herd.daemon.loop import Config, Daemon
    from herd.daemon.state import StateDir
    from herd.daemon.storagelink import StorageLink
    from herd.daemon.wire import Message, decode

    key = b"k" * 32
    me = SPEC.node_named("nfs1")
    assert me is not None
    d = Daemon(Config(SPEC, me, key, 5, tmp_path / "sock", None, StateDir(tmp_path / "state")))
    d.storage = StorageLink(d)
    sent: list[Message] = []

    class Transport:
        def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
            sent.append(decode(data, SPEC.name, key))

    d.transport = Transport()  # type: ignore[assignment]
    machine = d.storage.machine
    machine.serving, machine.last_tick = True, d.clock()
    report = Report("Primary", "Connected", "UpToDate", "UpToDate", "Secondary", serving=True, ready=True)
    d.health["drbd"] = {**report.to_json(), "term": 3}
    d.send_heartbeat()
    machine.last_tick = d.clock() - machine.lease - 0.5  # its ticks stopped for longer than the lease
    d.send_heartbeat()
    before, after = (m.payload["health"]["drbd"] for m in sent[:: len(d.peers)])
    assert (before["serving"], before["ready"]) == (True, True)
    assert after == {**before, "serving": False, "ready": False}
    assert d.health["drbd"]["serving"] is True, "the report itself is left to the next poll"
    d.storage.worker.shutdown(wait=True)

"""The simulation test_storage.py runs its scenarios in, on a fake clock: two nfs nodes' storage machines (the
real herd.daemon.storage) over a small model of DRBD (protocol C, StandAlone on split brain, fence-peer asking
herdd) and of a LAN that can be cut, and a client writing through whoever serves."""

from __future__ import annotations

import itertools
from pathlib import Path

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

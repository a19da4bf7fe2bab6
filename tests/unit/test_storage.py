"""Who serves the replicated docroot, on a fake clock: two nfs nodes' storage machines over a small model of
DRBD (protocol C, StandAlone on split brain, fence-peer asking herdd) and of a LAN that can be cut. A client
writes through whoever serves and keeps what was acknowledged; every scenario checks that no two nodes serve at
once and that no acknowledged write is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.daemon.drbd import Report
from herd.daemon.membership import Peer
from herd.daemon.storage import Connect, CutLink, Demote, Initialize, Outdate, Promote, Storage

from .storagesim import BEAT, DEAD, GRACE, NODES, SPEC, TICK, Lab, started


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

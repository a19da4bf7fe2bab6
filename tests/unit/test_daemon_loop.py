"""herdd's asyncio core without sockets: periodic work that survives its own errors, the heartbeat port
taking heartbeats only, the largest heartbeat a spec allows fitting the wire, and a restarted node taking only
heartbeats and claims that prove they were sent after it started."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.daemon import metrics, wire
from herd.daemon.drbd import Report
from herd.daemon.loop import Config, Daemon
from herd.daemon.membership import Membership
from herd.daemon.state import StateDir
from herd.daemon.wire import (
    KIND_CLAIM,
    KIND_GRANT,
    KIND_HEARTBEAT,
    KIND_PROVE,
    KIND_RELEASE,
    KIND_STALE,
    MAX_SIZE,
    Message,
    decode,
    encode,
)
from herd.spec import HEARTBEAT_LIMIT, SpecError, heartbeat_bound, load, parse

PROJECT = Path(__file__).resolve().parents[2]
SPEC = load(PROJECT / "examples/cluster.toml")
KEY = b"k" * 32


@pytest.fixture(autouse=True)
def _saves_land(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Daemon a test makes has its state saves on disk before the test's tmp_path is removed: a save
    still queued on its disk thread would otherwise fail, and log, during the next test."""
    made: list[Daemon] = []
    init = Daemon.__init__

    def record(self: Daemon, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Daemon, "__init__", record)
    yield
    for d in made:
        d.disk_thread.shutdown(wait=True)


def daemon(tmp_path: Path, name: str = "dir2") -> Daemon:
    me = SPEC.node_named(name)
    assert me is not None
    return Daemon(Config(SPEC, me, KEY, 5, tmp_path / "sock", None, StateDir(tmp_path / "state")))


def test_periodic_work_goes_on_after_an_error_and_logs_a_repeated_one_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def beat() -> None:
        calls.append(1)
        if len(calls) <= 3:
            raise ValueError("message of 9000 bytes is over the limit")

    async def main() -> None:
        d = daemon(tmp_path)
        task = asyncio.create_task(d.every(0.001, beat))
        while len(calls) < 6:
            await asyncio.sleep(0.001)
        task.cancel()
        assert d.counters["task_errors"] == 3

    with caplog.at_level(logging.ERROR, logger="herdd"):
        asyncio.run(main())
    assert len(calls) >= 6
    assert [r.getMessage() for r in caplog.records] == ["beat failed; it runs again at the next beat"]


def test_the_heartbeat_port_drops_other_kinds(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    source = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    grant = Message(KIND_GRANT, "dir1", 7, 11, {"slot": "web3", "round": "x", "granted": True, "holder": ""})
    d.datagram_received(encode(grant, SPEC.name, KEY), source)
    assert d.dropped["malformed"] == 1 and not d.membership.peers["dir1"].alive
    beat = Message(KIND_HEARTBEAT, "dir1", 7, 12, {"vip": True, "seen": {"dir2": 5}})
    d.datagram_received(encode(beat, SPEC.name, KEY), source)
    assert d.membership.peers["dir1"].alive and d.membership.peers["dir1"].holds_vip


def test_the_heartbeat_port_checks_kind_sender_and_source_before_the_hmac(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of packets with the cluster's (public) tag costs a parse each, not an HMAC: each is dropped for
    its reason without one being computed; a packet that passes those checks is then verified."""
    d = daemon(tmp_path)  # dir2
    dir1 = str(SPEC.node_named("dir1").address)  # type: ignore[union-attr]
    wrong_key = b"w" * 32
    forged = {
        "spoofed-source": (Message(KIND_HEARTBEAT, "dir1", 7, 1, {"seen": {"dir2": 5}}), "192.168.50.99"),
        "unknown-sender": (Message(KIND_HEARTBEAT, "intruder", 7, 1), "192.168.50.99"),
        "malformed": (Message(KIND_GRANT, "dir1", 7, 1), dir1),
    }
    packets = {why: encode(msg, SPEC.name, wrong_key) for why, (msg, _) in forged.items()}
    calls: list[int] = []
    real = wire.hmac.new

    def counted(key: bytes, body: bytes, digestmod: object) -> object:
        calls.append(1)
        return real(key, body, digestmod)  # type: ignore[arg-type]

    monkeypatch.setattr(wire.hmac, "new", counted)
    for why, (_, source) in forged.items():
        d.datagram_received(packets[why], (source, SPEC.membership.port))
        assert d.dropped[why] == 1, (why, d.dropped)
    assert calls == [] and sum(d.dropped.values()) == 3
    d.datagram_received(encode(forged["spoofed-source"][0], SPEC.name, wrong_key), (dir1, SPEC.membership.port))
    assert d.dropped["bad-mac"] == 1 and len(calls) == 2  # one to encode it here, one to verify it


def test_a_heartbeat_that_would_be_too_big_is_sent_without_some_drain_registers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Over the wire's limit, a heartbeat used to go unsent (its sender then looked dead to everyone): it now
    goes without as few drain registers as it takes, and says so once."""
    d = daemon(tmp_path)  # dir2
    d.transport = Sent()  # type: ignore[assignment]
    for name in ("web1", "web2", "db1"):
        d.membership.set_drained(name, True)
    d.membership.set_drained("nfs1", False)  # an undrained register (version 1): the first to go
    d.health = {"pad": ""}
    d.send_heartbeat()
    sent = d.transport.messages  # type: ignore[attr-defined]
    full = len(encode(sent[-1][0], SPEC.name, KEY))
    d.health = {"pad": "x" * (MAX_SIZE - full + 1)}  # one byte too many with every register
    with caplog.at_level(logging.WARNING, logger="herdd"):
        for _ in range(3):
            d.send_heartbeat()
    beats = [msg for msg, _ in sent[-3 * len(d.peers):]]
    assert len(beats) == 3 * len(d.peers) and len({b.seq for b in beats}) == 3
    assert all(set(b.payload["admin"]) == {"web1", "web2", "db1"} for b in beats)
    assert all(len(encode(b, SPEC.name, KEY)) <= MAX_SIZE for b in beats)
    assert d.counters["admin_left_out"] == 3
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("heartbeats too big")] == [
        "heartbeats too big for the wire: drain registers of nfs1 left out"]


def nodes_spec(names: list[str]) -> str:
    text = (PROJECT / "examples/cluster.toml").read_text()
    head = text[:text.index("[[node]]")]
    nodes = [f'[[node]]\nname = "{n}"\nrole = "{"director" if i < 2 else "web"}"\naddress = "192.168.50.{100 + i}"\n'
             for i, n in enumerate(names)]
    return head + "\n".join(nodes)


def test_the_largest_heartbeat_a_spec_allows_fits_the_wire() -> None:
    # As many 40-character names as the bound allows, every one drained with a huge version by the longest
    # named origin, the sender hearing all of them, and a health sample of every field herdd may put there.
    names = []
    while heartbeat_bound([*names, f"n{len(names):03d}".ljust(40, "x")]) <= HEARTBEAT_LIMIT:
        names.append(f"n{len(names):03d}".ljust(40, "x"))
    spec = parse(nodes_spec(names))
    m = Membership(spec, names[0], 0.0)
    for n in names:
        m.set_drained(n, True)
    m.admin = {n: type(a)(2**53, names[-1], False) for n, a in m.admin.items()}
    health = {"load1": 123.45, "cpus": 128, "mem_pct": 100.0, "disk_pct": 100.0, "temp_c": 105.5,
              "apache": True, "docroot": "192.168.250.250:/srv/herd/docroot", "nfsd": 256, "mariadb": True,
              "galera": {"running": True, "primary": True,
                         "position": {"uuid": "6c6a3b8e-0000-11ef-9f7c-0242ac120002", "seqno": 2**53,
                                      "safe": False}},
              "garbd": True, "storage_term": 2**53, "hears": names[1:],
              "drbd": {"role": "Secondary", "connection": "StandAlone", "disk": "UpToDate",
                       "peer_disk": "Inconsistent", "peer_role": "Secondary", "fresh": False, "serving": False,
                       "ready": True, "sync": 99.9, "term": 2**53,
                       **{k: v for k, v in Report(error="e" * 500, waiting="w" * 500).to_json().items()
                          if k in ("error", "waiting")}}}
    seen = dict.fromkeys(names[1:], 2**53)
    data = encode(Message(KIND_HEARTBEAT, names[0], 2**63, 2**63, m.payload(health, True, True, seen)), spec.name,
                  KEY)
    assert len(data) <= heartbeat_bound(names) <= HEARTBEAT_LIMIT == MAX_SIZE


def test_a_spec_whose_heartbeats_could_outgrow_the_wire_is_refused() -> None:
    names = [f"n{i:03d}".ljust(63, "x") for i in range(60)]
    with pytest.raises(SpecError, match=r"heartbeats of up to \d+ bytes.*use shorter node names"):
        parse(nodes_spec(names))


def test_a_restarted_node_takes_a_senders_first_heartbeat_only_if_it_echoes_its_generation(tmp_path: Path) -> None:
    """Its replay guard starts empty: a heartbeat captured before its restart (echoing the generation it ran as
    then) is dropped; one echoing its current generation is taken, and from then on the guard does the work."""
    d = daemon(tmp_path)  # dir2, generation 5 (it ran as 4 before)
    source = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    captured = Message(KIND_HEARTBEAT, "dir1", 7, 900, {"vip": True, "seen": {"dir2": 4, "web1": 3}})
    d.datagram_received(encode(captured, SPEC.name, KEY), source)
    d.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 7, 901, {"seen": {}}), SPEC.name, KEY), source)
    assert d.dropped["unproven"] == 2 and not d.membership.peers["dir1"].alive
    fresh = Message(KIND_HEARTBEAT, "dir1", 7, 950, {"vip": True, "seen": {"dir2": 5}})
    d.datagram_received(encode(fresh, SPEC.name, KEY), source)
    assert d.membership.peers["dir1"].alive and d.membership.peers["dir1"].holds_vip
    d.datagram_received(encode(captured, SPEC.name, KEY), source)  # now the guard's: an old seq
    assert d.dropped["replay"] == 1
    later = Message(KIND_HEARTBEAT, "dir1", 7, 951, {"seen": {"dir2": 4}})  # proof is needed only the first time
    d.datagram_received(encode(later, SPEC.name, KEY), source)
    assert d.counters["received"] == 2
    # Its own heartbeats echo the highest generation heard from each sender, a replayed lower one or not.
    old = Message(KIND_HEARTBEAT, "dir1", 6, 1, {"seen": {"dir2": 5}})
    d.datagram_received(encode(old, SPEC.name, KEY), source)
    assert d.membership.payload({}, seen=d.generations)["seen"] == {"dir1": 7}
    # A heartbeat of an older herdd says nothing of what it has seen: taken as before.
    web1 = (str(SPEC.node_named("web1").address), SPEC.membership.port)  # type: ignore[union-attr]
    d.datagram_received(encode(Message(KIND_HEARTBEAT, "web1", 3, 1, {}), SPEC.name, KEY), web1)
    assert d.membership.peers["web1"].alive


def test_a_restarted_node_drops_a_heartbeat_without_seen_from_a_sender_that_sent_seen_before(tmp_path: Path) -> None:
    """dir1 ran a herdd without the echo once (its heartbeats then were captured), and runs one with it now.
    Heard echoing, it is remembered on disk: after dir2 restarts (an empty replay guard), the captures are
    played back in vain, while another sender's heartbeat without `seen` (an older herdd's now) is taken."""
    dir1 = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    web1 = (str(SPEC.node_named("web1").address), SPEC.membership.port)  # type: ignore[union-attr]
    captured = encode(Message(KIND_HEARTBEAT, "dir1", 3, 900, {"vip": True}), SPEC.name, KEY)
    before = daemon(tmp_path)  # dir2, generation 5
    before.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 7, 1, {"seen": {"dir2": 5}}), SPEC.name, KEY),
                             dir1)
    assert before.membership.peers["dir1"].alive
    before.disk_thread.shutdown(wait=True)
    assert StateDir(tmp_path / "state").load_json("echoes.json") == ["dir1"]
    after = Daemon(Config(SPEC, SPEC.node_named("dir2"), KEY, 6, tmp_path / "sock", None,  # type: ignore[arg-type]
                          StateDir(tmp_path / "state")))
    after.datagram_received(captured, dir1)
    assert after.dropped["downgrade"] == 1 and not after.membership.peers["dir1"].alive
    after.datagram_received(encode(Message(KIND_HEARTBEAT, "web1", 3, 1, {}), SPEC.name, KEY), web1)
    assert after.membership.peers["web1"].alive
    after.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 8, 1, {"seen": {"dir2": 6}}), SPEC.name, KEY),
                            dir1)
    assert after.membership.peers["dir1"].alive
    # Taken once proven, its guard knows its generation; a capture of its older herdd of a later life is still
    # dropped for the missing echo, not let through by the guard.
    after.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 9, 1, {}), SPEC.name, KEY), dir1)
    assert after.dropped["downgrade"] == 2 and after.counters["received"] == 2


def test_a_storage_term_out_of_bounds_is_neither_taken_nor_passed_on_nor_saved(tmp_path: Path) -> None:
    """Every node passes on and saves the highest storage term it hears of: one far ahead of any it knows, or
    past 2**53, in one authentic heartbeat (a stolen stick's key) is left out, and counted."""
    d = daemon(tmp_path)  # dir2
    dir1 = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    for seq, term in enumerate((10**300, 2**53, 2**32 + 1, -1), start=1):
        health = {"load1": 0.5, "storage_term": term, "drbd": {"role": "Primary", "term": term}}
        d.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 7, seq, {"health": health, "seen": {"dir2": 5}}),
                                   SPEC.name, KEY), dir1)
        d.pass_on_storage_term()
        assert d.storage_term == 0 and d.health["storage_term"] == 0
        assert d.membership.peers["dir1"].health == {"load1": 0.5, "drbd": {"role": "Primary"}}
    assert d.counters["refused_storage_term"] == d.counters["refused_drbd.term"] == 4
    assert d.counters["received"] == 4 and d.membership.peers["dir1"].alive  # the rest of it is taken
    d.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 7, 9, {"health": {"storage_term": 12}, "seen": {}}),
                               SPEC.name, KEY), dir1)
    d.pass_on_storage_term()
    assert d.storage_term == 12
    d.disk_thread.shutdown(wait=True)
    assert StateDir(tmp_path / "state").load_json("storage_term.json") == {"term": 12}


def test_a_drain_register_out_of_bounds_is_counted_in_the_status(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    dir1 = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    admin = {"web1": [True, 1, "x" * 2000], "web2": [True, 2**60, "dir1"], "db1": [True, 1, "dir1"]}
    d.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 7, 1, {"admin": admin, "seen": {"dir2": 5}}),
                               SPEC.name, KEY), dir1)
    assert d.status()["counters"]["refused_admin"] == 2
    assert d.membership.payload({})["admin"] == {"db1": [True, 1, "dir1"]}


def test_values_out_of_bounds_reach_the_metrics_text(tmp_path: Path) -> None:
    """The daemon's own counters and the membership's refused drain registers, as the metrics endpoint renders
    them (Daemon.run gives metrics.render the status, the counters and the drops)."""
    d = daemon(tmp_path)
    dir1 = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    health = {"storage_term": 2**60, "drbd": {"term": -1}}
    admin = {"web1": [True, 1, "x" * 20], "db1": [True, 1, "dir1"]}
    d.datagram_received(encode(Message(KIND_HEARTBEAT, "dir1", 7, 1, {"health": health, "admin": admin,
                                                                      "seen": {"dir2": 5}}), SPEC.name, KEY), dir1)
    text = metrics.render(d.status(), dict(d.counters), dict(d.dropped))
    for line in ('herd_heartbeat_values_refused_total{field="admin"} 1',
                 'herd_heartbeat_values_refused_total{field="drbd.term"} 1',
                 'herd_heartbeat_values_refused_total{field="storage_term"} 1'):
        assert line in text.splitlines()


def test_a_claim_whose_mac_is_not_a_unicast_mac_is_neither_granted_nor_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (PROJECT / "examples/cluster.toml").read_text().replace('mac = "52:54:00:50:00:22"\n', "")
    spec = parse(text)  # web2: a free slot
    d = Daemon(Config(spec, spec.node_named("dir2"), KEY, 5, tmp_path / "sock", None,  # type: ignore[arg-type]
                      StateDir(tmp_path / "state")))
    sent = Sent()
    d.claims.transport = sent  # type: ignore[assignment]
    box = ("fe80::5054:ff:fe00:99", 40000, 0, 2)

    async def main() -> None:
        for seq, mac in enumerate(("02:00:00:00:0a:01\nherd: granted slot web1 to 02:00:00:00:0a:02",
                                   "02:00:00:00:0A:01", "ff:ff:ff:ff:ff:ff", "x" * 200), start=1):
            payload = {"slot": "web2", "mac": mac, "round": "r1", "role": "web", "seen": {"dir2": 5}}
            d.claims.datagram_received(encode(Message(KIND_CLAIM, f"mac:{mac}", 9, seq, payload), spec.name, KEY),
                                       box)
        await asyncio.sleep(0.05)
        d.disk_thread.shutdown(wait=True)

    asyncio.run(main())
    assert d.slots.bindings == {} and sent.messages == [] and d.dropped["unknown-sender"] == 4
    assert "granted" not in capsys.readouterr().out
    assert not (tmp_path / "state/slots.json").exists()


class Sent:
    """A datagram transport that keeps what is sent, decoded."""

    def __init__(self) -> None:
        self.messages: list[tuple[Message, tuple[object, ...]]] = []

    def sendto(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.messages.append((decode(data, SPEC.name, KEY), addr))


def test_a_restarted_node_binds_or_frees_a_slot_only_for_a_claim_that_echoes_its_generation(tmp_path: Path) -> None:
    """A box's CLAIM or RELEASE captured before this node restarted (echoing the generation it ran as then) is
    answered with a PROVE carrying the current one, and changes nothing; said again with the echo, it is taken."""
    text = (PROJECT / "examples/cluster.toml").read_text().replace('mac = "52:54:00:50:00:22"\n', "")
    spec = parse(text)  # web2: a free slot
    me = spec.node_named("dir2")
    assert me is not None and spec.node_named("web2").mac is None  # type: ignore[union-attr]
    d = Daemon(Config(spec, me, KEY, 5, tmp_path / "sock", None, StateDir(tmp_path / "state")))
    sent = Sent()
    d.claims.transport = sent  # type: ignore[assignment]
    box, mac = ("fe80::5054:ff:fe00:99", 40000, 0, 2), "02:00:00:00:0a:01"

    def says(kind: int, seq: int, round_id: str, who: str = mac, **extra: object) -> None:
        payload = {"slot": "web2", "mac": who, "round": round_id, "role": "web", **extra}
        d.claims.datagram_received(encode(Message(kind, f"mac:{who}", 9, seq, payload), spec.name, KEY), box)

    async def main() -> None:
        says(KIND_CLAIM, 3, "r1", seen={"dir2": 4})  # captured while dir2 ran as generation 4
        assert d.slots.bindings == {} and d.dropped["unproven"] == 1
        (prove, to), = sent.messages
        assert to == box and (prove.kind, prove.generation) == (KIND_PROVE, 5)
        assert prove.payload == {"to": f"mac:{mac}", "of": "claim", "slot": "web2", "round": "r1"}
        says(KIND_CLAIM, 4, "r2", seen={"dir1": 7, "dir2": 5})
        for _ in range(500):  # the grant is sent once it is on disk
            if len(sent.messages) == 2:
                break
            await asyncio.sleep(0.01)
        grant = sent.messages[1][0]
        assert grant.kind == KIND_GRANT and grant.payload["granted"] and grant.payload["round"] == "r2"
        assert d.slots.bindings["web2"].mac == mac
        says(KIND_RELEASE, 5, "r2", seen={"dir2": 4})  # unproven: the slot stays granted
        assert d.slots.bindings["web2"].round == "r2"
        assert sent.messages[2][0].payload["of"] == "release"
        says(KIND_RELEASE, 6, "r2", seen={"dir2": 5})
        assert d.slots.bindings == {}
        says(KIND_CLAIM, 7, "r3")  # without `seen` from a box that has echoed it: an older herdd's, captured
        assert d.slots.bindings == {} and d.dropped["downgrade"] == 1
        older = "02:00:00:00:0a:02"  # an older herdd's claim says nothing of what it has seen: taken as before
        says(KIND_CLAIM, 1, "r4", who=older)
        assert d.slots.bindings["web2"].mac == older and d.slots.bindings["web2"].round == "r4"
        d.disk_thread.shutdown(wait=True)

    asyncio.run(main())
    assert d.dropped["unproven"] == 2
    assert StateDir(tmp_path / "state").load_json("echoes.json") == [f"mac:{mac}"]


def test_a_replayed_stale_notice_does_not_vouch_for_heartbeats_captured_with_it(tmp_path: Path) -> None:
    """A STALE needs no proof of freshness (it is about this node's generation, not the sender's liveness), so
    one captured before this node restarted is taken; the sender's captured heartbeats still are not."""
    d = daemon(tmp_path)  # dir2, generation 5 (it ran as 4 before)
    source = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    captured = Message(KIND_HEARTBEAT, "dir1", 7, 901, {"vip": True, "quorum": True, "seen": {"dir2": 4}})
    d.datagram_received(encode(Message(KIND_STALE, "dir1", 7, 900, {"to": "web1", "seen": 3}), SPEC.name, KEY),
                        source)
    d.datagram_received(encode(captured, SPEC.name, KEY), source)
    assert d.dropped["unproven"] == 1 and not d.membership.peers["dir1"].alive
    fresh = Message(KIND_HEARTBEAT, "dir1", 7, 950, {"vip": True, "seen": {"dir2": 5}})
    d.datagram_received(encode(fresh, SPEC.name, KEY), source)
    assert d.membership.peers["dir1"].alive and d.membership.peers["dir1"].holds_vip


def test_a_stale_notice_moves_only_its_addressee_past_the_generation_seen(tmp_path: Path) -> None:
    d = daemon(tmp_path)  # dir2, generation 5
    source = (str(SPEC.node_named("dir1").address), SPEC.membership.port)  # type: ignore[union-attr]
    # Another's; one behind or at its own generation (a peer answering a replayed heartbeat of dir2's names
    # the generation dir2 runs as); not a number.
    for seq, (to, seen) in enumerate((("web1", 100), ("dir2", 3), ("dir2", 5), ("dir2", True)), start=1):
        d.datagram_received(encode(Message(KIND_STALE, "dir1", 7, seq, {"to": to, "seen": seen}), SPEC.name, KEY),
                            source)
        assert d.config.generation == 5
    d.datagram_received(encode(Message(KIND_STALE, "dir1", 7, 9, {"to": "dir2", "seen": 100}), SPEC.name, KEY),
                        source)
    assert d.config.generation == 101
    assert (tmp_path / "state/generation").read_text() == "101\n"  # persisted before use
    assert d.counters["received"] == 0  # not a heartbeat: dir1 is not taken for alive by it
    assert not d.membership.peers["dir1"].alive


def test_state_is_saved_off_the_event_loop_and_the_follow_up_runs_once_it_is_on_disk(tmp_path: Path) -> None:
    import threading

    seen: list[tuple[str, bool]] = []

    async def main() -> None:
        d = daemon(tmp_path)
        done = asyncio.Event()

        def then() -> None:
            seen.append((threading.current_thread().name, (tmp_path / "state/slots.json").exists()))
            done.set()

        d.persist("slots.json", {"web3": "x"}, then=then)
        await asyncio.wait_for(done.wait(), 5)
        d.disk_thread.shutdown(wait=True)

    asyncio.run(main())
    assert seen == [("MainThread", True)]
    assert (tmp_path / "state/slots.json").read_text() == '{"web3": "x"}\n'


def test_a_claim_played_back_from_a_spoofed_address_gets_that_address_a_few_proves_not_one_each(
        tmp_path: Path) -> None:
    """A captured first-contact claim (it echoes no generation of this node's) played back over and over from one
    spoofed source: every node that hears it would answer each with a PROVE to that address. Each source gets a
    burst and then one a second; the answers held back are counted; another source is not held back."""
    now = [100.0]
    d = Daemon(Config(SPEC, SPEC.node_named("dir2"), KEY, 5, tmp_path / "sock", None,  # type: ignore[arg-type]
                      StateDir(tmp_path / "state")), clock=lambda: now[0])
    sent = Sent()
    d.claims.transport = sent  # type: ignore[assignment]
    victim, other, mac = ("fe80::bad", 694, 0, 2), ("fe80::5054:ff:fe00:99", 40000, 0, 2), "02:00:00:00:0a:01"
    captured = encode(Message(KIND_CLAIM, f"mac:{mac}", 9, 1, {"slot": "web2", "mac": mac, "round": "r1",
                                                               "role": "web", "seen": {}}), SPEC.name, KEY)
    for _ in range(100):
        d.claims.datagram_received(captured, victim)
    assert [to for _, to in sent.messages] == [victim] * 4
    assert d.counters["answers_limited_prove"] == 96 and d.dropped["unproven"] == 100
    d.claims.datagram_received(captured, other)  # the box itself, say, on its own link-local address
    assert sent.messages[-1][1] == other and sent.messages[-1][0].kind == KIND_PROVE
    now[0] += 1.0
    for _ in range(100):
        d.claims.datagram_received(captured, victim)
    assert [to for _, to in sent.messages].count(victim) == 5
    assert len(d.answers) == 2  # victim and other: the table holds only sources being limited


def test_captured_claims_of_many_boxes_behind_their_generation_get_a_spoofed_address_a_few_stales(
        tmp_path: Path) -> None:
    """STALE (a sender's generation is behind one seen from it) was limited per sender, once a second: claims
    captured from many boxes, played back from one spoofed address, had every node send that address one STALE
    per box. Now per source address too."""
    d = Daemon(Config(SPEC, SPEC.node_named("dir2"), KEY, 5, tmp_path / "sock", None,  # type: ignore[arg-type]
                      StateDir(tmp_path / "state")), clock=lambda: 100.0)
    sent = Sent()
    d.claims.transport = sent  # type: ignore[assignment]
    victim = ("fe80::bad", 694, 0, 2)
    macs = [f"02:00:00:00:0b:{i:02x}" for i in range(20)]
    for mac in macs:  # each box's RELEASE, proven, taken: generation 9 seen from it
        d.claims.datagram_received(encode(Message(KIND_RELEASE, f"mac:{mac}", 9, 1, {
            "slot": "web2", "mac": mac, "round": "r1", "role": "web", "seen": {"dir2": 5}}), SPEC.name, KEY),
            (f"fe80::{macs.index(mac) + 1}", 40000, 0, 2))
    assert sent.messages == [] and all(d.guard.generation_of(f"mac:{mac}") == 9 for mac in macs)
    for mac in macs:  # a claim of each from its first life (generation 3), from the victim's address
        d.claims.datagram_received(encode(Message(KIND_CLAIM, f"mac:{mac}", 3, 1, {
            "slot": "web2", "mac": mac, "round": "r0", "role": "web", "seen": {"dir2": 5}}), SPEC.name, KEY), victim)
    stales = [m for m, to in sent.messages if to == victim]
    assert [m.kind for m in stales] == [KIND_STALE] * 4
    assert d.counters["answers_limited_stale"] == 16 and d.dropped["replay"] == 20

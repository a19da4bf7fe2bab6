"""Boxes whose MAC is not in the spec claim the free slots of their role: two at once get different slots,
and a claimed slot stays with its box through restarts and reflashing, and is never given to another; claims
captured before a node restarted do not move its grants."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.daemon.wire import KIND_CLAIM, KIND_PROVE, Message, decode, encode
from herd.spec import parse

from .harness import PROJECT, Cluster, Herdd, new_key, wait_for

HERE = Path(__file__).parent

FREE = ("web1", "web2")


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path, Path, Path]]:
    work = tmp_path_factory.mktemp("claim")
    text = (PROJECT / "examples/cluster.toml").read_text()
    for slot in FREE:  # web1 and web2 become MAC-less slots
        text = re.sub(rf'(name = "{slot}"\nrole = "web"\naddress = "[0-9.]+"\n)mac = "[0-9a-f:]+"\n', r"\1", text)
    spec = parse(text)
    assert all(spec.node_named(s).mac is None for s in FREE)  # type: ignore[union-attr]
    spec_path = work / "cluster.toml"
    spec_path.write_text(text)
    key = new_key(work)
    role = work / "role"
    role.write_text("web\n")
    cluster = Cluster(spec, spec_path, key, work, f"c{os.getpid() % 100000}",
                      only={n.name for n in spec.nodes if n.name not in FREE})
    try:
        cluster.start()
        yield cluster, spec_path, key, role
    finally:
        cluster.close()


def box(lan: tuple[Cluster, Path, Path, Path], label: str, mac: str) -> Herdd:
    cluster, spec_path, key, role = lan
    ns = cluster.lan.host(label, mac)
    herdd = Herdd(label, ns, spec_path, key, cluster.nodes["dir1"].work.parent / label,
                  args=["--sandbox", "--role-file", str(role)])
    cluster.nodes[label] = herdd
    return herdd


def claimed(herdd: Herdd) -> str | None:
    m = re.findall(r"herd: claimed slot (\S+)", herdd.log.read_text()) if herdd.log.exists() else []
    return m[-1] if m else None


def test_two_boxes_claiming_at_once_get_different_slots(lan: tuple[Cluster, Path, Path, Path]) -> None:
    cluster = lan[0]
    a, b = box(lan, "boxa", "02:00:00:00:0a:01"), box(lan, "boxb", "02:00:00:00:0b:01")
    a.start()
    b.start()
    wait_for(lambda: claimed(a) and claimed(b), 30, what="both boxes claim a slot")
    assert {claimed(a), claimed(b)} == set(FREE)
    wait_for(lambda: a.ready() and b.ready(), 20, what="both ready")
    # They joined under their slots' names and addresses: every node sees all six alive.
    wait_for(lambda: all(set(h.states().values()) == {"alive"} for h in cluster.nodes.values()), 10,
             what="all six alive everywhere")
    assert a.status()["self"] == claimed(a)


def test_a_restarted_or_reflashed_box_keeps_its_slot(lan: tuple[Cluster, Path, Path, Path]) -> None:
    cluster = lan[0]
    a = cluster.nodes["boxa"]
    slot = claimed(a)
    a.kill()
    a.start()  # plain restart: identity from its state dir
    wait_for(lambda: a.ready() and a.status()["self"] == slot, 20, what="boxa back")
    a.kill()
    shutil.rmtree(a.state)  # reflashed: nothing remembered locally, so it must ask again
    a.log.write_text("")
    a.start()
    wait_for(lambda: claimed(a) is not None, 30, what="boxa claims again")
    assert claimed(a) == slot
    # A granting node's restart does not forget what it granted.
    cluster.nodes["dir1"].kill()
    cluster.nodes["dir1"].start()
    wait_for(cluster.nodes["dir1"].ready, 20)
    assert slot in (cluster.nodes["dir1"].state / "slots.json").read_text()


def test_no_slot_is_given_twice(lan: tuple[Cluster, Path, Path, Path]) -> None:
    c = box(lan, "boxc", "02:00:00:00:0c:01")
    c.start()
    wait_for(lambda: "no free web slot" in c.log.read_text(), 30, what="boxc told there is no free slot")
    assert claimed(c) is None
    c.kill()


def test_a_box_reflashed_with_its_clock_behind_claims_its_slot_again(lan: tuple[Cluster, Path, Path, Path]) -> None:
    # A thin client's RTC battery dies: reflashed, it claims with a generation below the one the granting
    # nodes remember from its first life, and they would drop its claims as replays for good. They tell it.
    cluster = lan[0]
    b = cluster.nodes["boxb"]
    slot = claimed(b)
    assert slot is not None
    b.kill()
    shutil.rmtree(b.state)
    b.state.mkdir()
    (b.state / "generation").write_text("2000000000\n")  # its first life's clock ran ahead...
    b.log.write_text("")
    b.start()
    wait_for(lambda: claimed(b) is not None, 30, what="boxb claims with a generation ahead")
    b.kill()
    shutil.rmtree(b.state)  # ...and after the reflash it is back to today's, below it
    b.log.write_text("")
    b.start()
    wait_for(lambda: claimed(b) is not None, 30, what="boxb claims again")
    assert claimed(b) == slot
    assert "had seen generation 2000000001" in b.log.read_text()
    wait_for(lambda: all(h.states()[slot] == "alive" for n, h in cluster.nodes.items() if n not in ("boxb", "boxc")),
             10, what=f"{slot} alive everywhere")


def test_a_restarted_node_is_not_fooled_by_claims_captured_before_it_restarted(
        lan: tuple[Cluster, Path, Path, Path], tmp_path: Path) -> None:
    """boxa's claims of one round, captured at dir1, are played back once boxa has claimed again (a new round)
    and dir1 has restarted, its replay guard empty: dir1's grant stays with the round boxa holds now. Had dir1
    taken them, a RELEASE of that old round could free a slot boxa holds."""
    cluster = lan[0]
    a, dir1 = cluster.nodes["boxa"], cluster.nodes["dir1"]
    slot = claimed(a)
    assert slot is not None

    def reflash() -> None:
        a.kill()
        shutil.rmtree(a.state)
        a.log.write_text("")
        a.start()
        wait_for(lambda: claimed(a) == slot, 30, what="boxa claims its slot again")

    frames = tmp_path / "claims.hex"
    capture = subprocess.Popen(["ip", "netns", "exec", dir1.ns, sys.executable, str(HERE / "packets.py"),
                                "capture", str(frames), "6", str(cluster.spec.membership.port), "6"])
    time.sleep(0.5)  # listening
    reflash()
    assert capture.wait(timeout=30) == 0
    assert frames.read_text().split(), "no claim captured"
    for frame in map(bytes.fromhex, frames.read_text().split()):  # IPv6 header: hop limit, source address
        assert frame[21] == 255 and frame[22:24] == b"\xfe\x80", "a claim sent as no node takes it"

    def round_at_dir1() -> str:
        return str(json.loads((dir1.state / "slots.json").read_text())[slot]["round"])

    old = round_at_dir1()
    reflash()
    wait_for(lambda: round_at_dir1() != old, 10, what="dir1 grants boxa's new round")
    new = round_at_dir1()
    dir1.kill()
    dir1.log.write_text("")  # what it says from here on is this run's
    dir1.start()
    wait_for(dir1.ready, 20, what="dir1 back")
    before = dir1.status()["dropped"].get("unproven", 0)
    attacker = cluster.lan.host("evil6")
    subprocess.run(["ip", "-n", attacker, "link", "set", "eth0", "up"], check=True)
    subprocess.run(["ip", "netns", "exec", attacker, sys.executable, str(HERE / "packets.py"), "replay",
                    str(frames), "2"], check=True, capture_output=True)
    time.sleep(1)  # a grant is on disk before it is answered: time for a taken one to land
    assert round_at_dir1() == new, "dir1 took a claim captured before it restarted"
    assert "granted slot" not in dir1.log.read_text()
    assert dir1.status()["dropped"].get("unproven", 0) > before


def test_claims_are_taken_from_this_link_only_and_answered_with_hop_limit_255(
        lan: tuple[Cluster, Path, Path, Path]) -> None:
    """The neighbour-discovery rule (RFC 4861) on the claim port: a claim is taken from a link-local source with
    hop limit 255 only, which no router forwards; the nodes answer with 255 too. A valid claim with hop limit 64
    (as if routed) or from a source that is not link-local is not answered, and counted."""
    cluster, _, key_path, _ = lan
    running = [h for h in cluster.nodes.values() if h.proc is not None and h.proc.poll() is None]
    key, mac = key_path.read_bytes(), "02:00:00:00:0e:01"
    prober = cluster.lan.host("probe6", mac)
    subprocess.run(["ip", "netns", "exec", prober, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"], check=True)
    subprocess.run(["ip", "-n", prober, "link", "set", "eth0", "up"], check=True)
    subprocess.run(["ip", "-n", prober, "addr", "add", "fd00:68::66/64", "dev", "eth0", "nodad"], check=True)
    time.sleep(0.5)  # the link-local address is there (no DAD) and the bridge port forwards

    def claim(seq: int, hops: int, source: str = "") -> list[dict[str, Any]]:
        # Unproven (it echoes no generation): a node that takes it answers with a PROVE and changes nothing.
        msg = Message(KIND_CLAIM, f"mac:{mac}", 1_800_000_000, seq,
                      {"slot": FREE[0], "mac": mac, "round": f"probe{seq}", "role": "web", "seen": {}})
        r = subprocess.run(["ip", "netns", "exec", prober, sys.executable, str(HERE / "onlink.py"),
                            encode(msg, cluster.spec.name, key).hex(), str(cluster.spec.membership.port), str(hops),
                            source, "1.5"], check=True, capture_output=True, text=True)
        replies: list[dict[str, Any]] = json.loads(r.stdout)
        return replies

    def dropped(reason: str) -> list[int]:
        return [h.status()["dropped"].get(reason, 0) for h in running]

    before = {reason: dropped(reason) for reason in ("hop-limit", "not-link-local")}
    assert claim(1, 64) == [], "a claim with hop limit 64 (it may have crossed a router) was answered"
    wait_for(lambda: all(a > b for a, b in zip(dropped("hop-limit"), before["hop-limit"], strict=True)), 5,
             what="every node counting the claim with hop limit 64 as hop-limit")
    assert claim(2, 255, "fd00:68::66") == [], "a claim from a source that is not link-local was answered"
    wait_for(lambda: all(a > b for a, b in zip(dropped("not-link-local"), before["not-link-local"], strict=True)),
             5, what="every node counting the claim from fd00:68::66 as not-link-local")
    replies = claim(3, 255)
    assert len(replies) == len(running), replies
    for reply in replies:
        assert reply["from"].startswith("fe80:") and reply["hops"] == 255, reply
        answer = decode(bytes.fromhex(reply["data"]), cluster.spec.name, key)
        assert answer.kind == KIND_PROVE and answer.payload["to"] == f"mac:{mac}"
    assert "claim port: dropped a datagram" in cluster.nodes["dir1"].log.read_text()

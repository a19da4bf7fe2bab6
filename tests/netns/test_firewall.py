"""The host firewall each image loads at boot (etc/nftables.conf, rendered from the spec: herd.build.firewall),
loaded with the real nft into the namespaces of a herdd cluster: the cluster works through it, and a host on the
LAN that is not a spec node reaches SSH, metrics and the site, but not heartbeats, MariaDB, Galera, NFS or DRBD.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.build.overlay import render, template_context
from herd.build.plan import make_plan
from herd.build.recipes import load_base, load_role
from herd.spec import Role, Spec, load, parse

from ..specs import two_of_each
from .harness import PROJECT, Cluster, Lan, new_key, python_in, reach_all, wait_for

OUTSIDER = "192.168.50.99"  # in the subnet, not a spec node (the QEMU lab's client has this address too)

# Listens on the given TCP ports (all addresses) until killed, accepting and closing.
LISTEN = """
import select, socket, sys
socks = []
for port in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port))); s.listen(16); socks.append(s)
print("listening", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        s.accept()[0].close()
"""
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b"HERD1 not a heartbeat", (sys.argv[1], int(sys.argv[2])))
"""


def rulesets(spec: Spec) -> dict[Role, str]:
    roles = list(spec.roles)
    plan = make_plan(spec, "2026.11.0", roles, load_base(PROJECT / "image"),
                     {r: load_role(PROJECT / "image", r) for r in roles}, "zipapp", Path("out"))
    out = {}
    for rp in plan.roles:
        files = render(PROJECT / "overlay", rp.role.value, template_context(plan, rp, "6.1.0-test-amd64"))
        out[rp.role] = next(f.data.decode() for f in files if str(f.path) == "etc/nftables.conf")
    return out


def load_ruleset(ns: str, text: str, work: Path) -> None:
    path = work / f"{ns}.nft"
    path.write_text(text)
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(path)], check=True, capture_output=True, text=True)


def dropped_by_firewall(ns: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "herd", "input"],
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if 'comment "dropped"' in line)
    return int(line.split("packets")[1].split()[0])


@pytest.fixture(scope="module")
def walled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    if shutil.which("nft") is None:
        pytest.fail("this test needs nft (tests/run installs nftables)")
    work = tmp_path_factory.mktemp("walled")
    spec_path = PROJECT / "examples/cluster.toml"
    spec = load(spec_path)
    cluster = Cluster(spec, spec_path, new_key(work), work, f"f{os.getpid() % 100000}")
    try:
        walls = rulesets(spec)
        for node in spec.nodes:
            load_ruleset(cluster.nodes[node.name].ns, walls[node.role], work)
        outsider = cluster.lan.host("out", address=f"{OUTSIDER}/24")
        cluster.start()
        yield cluster, outsider
    finally:
        cluster.close()


def test_the_cluster_works_through_its_firewalls_and_an_outsider_gets_no_heartbeat_in(
        walled: tuple[Cluster, str]) -> None:
    cluster, outsider = walled
    wait_for(cluster.all_see_all_alive, 15, what="every node hearing every other through the firewalls")
    wait_for(lambda: cluster.nodes["dir1"].status()["vip"]["holder"] == "dir1", 15, what="dir1 taking the VIP")
    db = cluster.nodes["db1"]

    def herdd_dropped() -> int:
        return sum(db.status()["dropped"].values())

    before, walled_before = herdd_dropped(), dropped_by_firewall(db.ns)
    python_in(outsider, SEND, "192.168.50.41", "694", "40")
    time.sleep(0.5)
    assert herdd_dropped() == before, "a datagram from outside the spec reached herdd"
    assert dropped_by_firewall(db.ns) >= walled_before + 40
    # The same datagrams from a spec node do reach herdd (and it drops them itself): the port is open to it.
    python_in(cluster.nodes["web1"].ns, SEND, "192.168.50.41", "694", "40")
    wait_for(lambda: herdd_dropped() >= before + 40, 5, what="herdd counting web1's junk")


def test_each_port_is_open_only_to_the_nodes_that_use_it(walled: tuple[Cluster, str]) -> None:
    cluster, outsider = walled
    ns = {name: h.ns for name, h in cluster.nodes.items()}
    listeners = [
        subprocess.Popen(["ip", "netns", "exec", ns[name], "python3", "-c", LISTEN, *map(str, ports)],
                         stdout=subprocess.PIPE, text=True)
        for name, ports in (("db1", (3306, 4567, 4568, 4444)), ("nfs1", (2049, 7789, 22)), ("web1", (80,)),
                            ("dir1", (80,)))
    ]
    try:
        for p in listeners:
            assert p.stdout is not None and p.stdout.readline().strip() == "listening"
        vip = str(cluster.spec.network.vip)
        wait_for(lambda: cluster.nodes["dir1"].status()["vip"]["holder"] == "dir1", 15, what="dir1 holding the VIP")
        expected = {
            # (from, to, port): what it gets
            (outsider, "192.168.50.41", 3306): "dropped", (ns["web1"], "192.168.50.41", 3306): "open",
            (ns["dir1"], "192.168.50.41", 3306): "dropped",
            (outsider, "192.168.50.41", 4567): "dropped",  # one db node: no Galera, from anyone
            (ns["web1"], "192.168.50.41", 4567): "dropped",
            (outsider, "192.168.50.41", 4444): "dropped",
            (outsider, "192.168.50.31", 2049): "dropped", (ns["web2"], "192.168.50.31", 2049): "open",
            (ns["db1"], "192.168.50.31", 2049): "dropped",
            (outsider, "192.168.50.31", 7789): "dropped",  # one nfs node: no DRBD
            (outsider, "192.168.50.31", 22): "open",  # SSH and metrics from the subnet
            (outsider, "192.168.50.41", 9694): "open",
            (outsider, "192.168.50.21", 80): "open",  # the site from anywhere
            (outsider, vip, 80): "open",  # on the VIP (dir1 holds it here)
            (outsider, "192.168.50.11", 80): "dropped",  # but not on a director's own address
            (outsider, "192.168.50.41", 8848): "dropped",
        }
        got = reach_all({key: key for key in expected})
        assert got == expected
    finally:
        for p in listeners:
            p.kill()
            p.wait()


# A two-db, two-nfs cluster's rules (Galera with garbd on the directors; DRBD), on bare hosts: no herdd needed.


def test_galera_and_drbd_are_open_to_their_peers_only(tmp_path: Path) -> None:
    spec = parse(two_of_each((PROJECT / "examples/cluster.toml").read_text()), "two.toml")
    walls = rulesets(spec)
    lan = Lan(f"g{os.getpid() % 100000}")
    listeners = []
    try:
        hosts = {}
        for name, address in (("db1", "41"), ("db2", "42"), ("dir1", "11"), ("nfs1", "31"), ("nfs2", "32"),
                              ("web1", "21"), ("out", "99")):
            hosts[name] = lan.host(name, address=f"192.168.50.{address}/24")
        for name, role in (("db1", Role.DB), ("nfs1", Role.NFS), ("dir1", Role.DIRECTOR)):
            load_ruleset(hosts[name], walls[role], tmp_path)
        for name, ports in (("db1", (3306, 4567, 4568, 4444)), ("nfs1", (2049, 7789)), ("dir1", (4567,))):
            p = subprocess.Popen(["ip", "netns", "exec", hosts[name], "python3", "-c", LISTEN, *map(str, ports)],
                                 stdout=subprocess.PIPE, text=True)
            listeners.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == "listening"
        expected = {
            ("db2", "192.168.50.41", 4567): "open", ("db2", "192.168.50.41", 4568): "open",
            ("db2", "192.168.50.41", 4444): "open",
            ("dir1", "192.168.50.41", 4567): "open",  # garbd (two db nodes)
            ("dir1", "192.168.50.41", 4444): "dropped", ("out", "192.168.50.41", 4567): "dropped",
            ("web1", "192.168.50.41", 4567): "dropped",
            ("db1", "192.168.50.11", 4567): "open",  # the db nodes reach garbd
            ("out", "192.168.50.11", 4567): "dropped",
            ("nfs2", "192.168.50.31", 7789): "open", ("web1", "192.168.50.31", 7789): "dropped",
            ("out", "192.168.50.31", 7789): "dropped", ("nfs2", "192.168.50.31", 2049): "dropped",
        }
        got = reach_all({key: (hosts[key[0]], key[1], key[2]) for key in expected})
        assert got == expected
    finally:
        for p in listeners:
            p.kill()
            p.wait()
        lan.close()

"""The VIP between two directors, in network namespaces (the host kernel has no IPVS; what is tested here is
the election, the address, gratuitous ARP and the web side of LVS-DR). A client namespace watches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from herd.spec import load

from .harness import PROJECT, Cluster, new_key, wait_for

SERVE = ("import socket,sys\n"
         "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         "s.bind(('0.0.0.0',8080)); s.listen()\n"
         "while True:\n"
         "  c,_=s.accept(); c.sendall(sys.argv[1].encode()); c.close()\n")
CONNECT = ("import socket,sys\n"
           "try:\n"
           "  print(socket.create_connection((sys.argv[1],8080),timeout=0.3).recv(100).decode())\n"
           "except OSError:\n"
           "  print('')\n")


class Site:
    def __init__(self, cluster: Cluster, client: str, servers: list[subprocess.Popen[bytes]]) -> None:
        self.cluster = cluster
        self.client = client
        self.servers = servers
        self.vip = str(cluster.spec.network.vip)

    def holds(self, name: str) -> bool:
        out = subprocess.run(["ip", "-n", self.cluster.nodes[name].ns, "-j", "addr", "show", "eth0"],
                             capture_output=True, text=True, check=True).stdout
        return self.vip in [a["local"] for a in json.loads(out)[0]["addr_info"]]

    def answer(self) -> str:
        return subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", CONNECT, self.vip],
                              capture_output=True, text=True).stdout.strip()

    def client_arp(self) -> str | None:
        out = subprocess.run(["ip", "-n", self.client, "-j", "neigh", "show", self.vip], capture_output=True,
                             text=True, check=True).stdout
        entries = json.loads(out)
        return entries[0].get("lladdr") if entries else None

    def mac(self, name: str) -> str:
        node = self.cluster.spec.node_named(name)
        assert node is not None and node.mac is not None
        return node.mac

    def holders_seen(self) -> set[str | None]:
        return {h.status()["vip"]["holder"] for h in self.cluster.nodes.values() if h.proc and h.proc.poll() is None}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("vip")
    key = new_key(work)
    spec_path = PROJECT / "examples/cluster.toml"
    cluster = Cluster(load(spec_path), spec_path, key, work, f"v{os.getpid() % 100000}")
    servers = []
    try:
        cluster.start()
        client = cluster.lan.host("client", address="192.168.50.99/24")
        for name in ("dir1", "dir2"):  # something to answer on the VIP (IPVS itself is tested in QEMU)
            servers.append(subprocess.Popen(["ip", "netns", "exec", cluster.nodes[name].ns, sys.executable, "-c",
                                             SERVE, name]))
        yield Site(cluster, client, servers)
    finally:
        for server in servers:
            server.kill()
        cluster.close()


def test_one_holder_the_highest_priority_director(site: Site) -> None:
    wait_for(lambda: site.holders_seen() == {"dir1"}, 10, what="every node agrees dir1 holds the VIP")
    assert site.holds("dir1") and not site.holds("dir2")
    wait_for(lambda: site.answer() == "dir1", 5, what="the VIP answers from dir1")
    assert site.client_arp() == site.mac("dir1")


def test_web_nodes_hold_the_vip_on_lo_and_never_answer_arp_for_it(site: Site) -> None:
    web = site.cluster.nodes["web1"]
    out = subprocess.run(["ip", "-n", web.ns, "-j", "addr", "show", "lo"], capture_output=True, text=True).stdout
    assert f"{site.vip}" in [a["local"] for a in json.loads(out)[0]["addr_info"]]
    for key in ("all/arp_ignore", "all/arp_announce"):
        value = subprocess.run(["ip", "netns", "exec", web.ns, "cat", f"/proc/sys/net/ipv4/conf/{key}"],
                               capture_output=True, text=True).stdout.strip()
        assert value == ("1" if key.endswith("ignore") else "2")
    assert site.client_arp() == site.mac("dir1")  # not a web node's MAC


def test_failover_on_the_holders_death(site: Site) -> None:
    wait_for(lambda: site.answer() == "dir1", 5, what="dir1 answers")
    deadtime = site.cluster.spec.membership.deadtime_ms / 1000
    time.sleep(1.2)  # let the client's ARP entry age past the kernel's 1 s locktime, as in real life
    site.cluster.nodes["dir1"].kill()
    killed = time.monotonic()
    # Without the client sending anything, its ARP entry moves to dir2: dir2's gratuitous ARP.
    wait_for(lambda: site.client_arp() == site.mac("dir2"), 5, every=0.01, what="client ARP entry -> dir2")
    moved = time.monotonic() - killed
    assert site.holds("dir2")
    assert site.answer() == "dir2"
    assert moved <= deadtime + 0.3 + 0.2, f"took {moved:.3f} s"  # + what polling costs here


def test_no_preemption_when_the_old_holder_returns(site: Site) -> None:
    dir1 = site.cluster.nodes["dir1"]
    dir1.start()
    wait_for(lambda: site.cluster.nodes["dir2"].states()["dir1"] == "alive", 10, what="dir1 back")
    time.sleep(3 * site.cluster.spec.membership.deadtime_ms / 1000)
    assert site.holds("dir2") and not site.holds("dir1")
    assert site.holders_seen() == {"dir2"}
    assert site.answer() == "dir2"


def test_a_partition_isolating_the_holder_makes_it_let_go(site: Site) -> None:
    site.cluster.lan.unplug("dir2")
    both: list[float] = []
    start = time.monotonic()
    while time.monotonic() - start < 5:
        d1, d2 = site.holds("dir1"), site.holds("dir2")
        if d1 and d2:
            both.append(time.monotonic() - start)
        if d1 and not d2:
            break
        time.sleep(0.01)
    assert not both, f"two holders during the partition at {both}"
    assert site.holds("dir1") and not site.holds("dir2")
    out = site.cluster.nodes["dir2"].log.read_text()
    assert "releases the VIP" in out and "lost quorum" in out
    wait_for(lambda: site.answer() == "dir1", 5, what="the majority side's director answers")
    # Healed: dir2 rejoins as standby; still one holder.
    site.cluster.lan.unplug("dir2", plugged=True)
    wait_for(lambda: site.holders_seen() == {"dir1"}, 10, what="one holder after healing")
    assert not site.holds("dir2")


def test_a_stopping_holder_hands_over(site: Site) -> None:
    site.cluster.nodes["dir1"].kill(signal.SIGTERM)
    assert not site.holds("dir1")  # released on the way out
    wait_for(lambda: site.holds("dir2"), 5, what="dir2 takes over")
    site.cluster.nodes["dir1"].start()

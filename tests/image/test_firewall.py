"""The host firewall in the lab (herd.build.firewall, loaded by nftables.service at boot): a host on the lab's
LAN that is not a spec node (the client, 192.168.50.99) reaches SSH, metrics and the site, but not heartbeats,
MariaDB, Galera, NFS or DRBD; the cluster works through it (every other lab test)."""

from __future__ import annotations

import time

from ..netns.harness import python_in, reach_all, wait_for
from .lab import Lab

JUNK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(40):
    s.sendto(b"HERD1 not a heartbeat", (sys.argv[1], 694))
"""


def firewall_drops(lab: Lab, node: str) -> int:
    out = lab.ssh(node, "nft list chain inet herd input")
    line = next(line for line in out.splitlines() if 'comment "dropped"' in line)
    return int(line.split("packets")[1].split()[0])


def test_every_node_loaded_its_firewall_at_boot(lab: Lab) -> None:
    for name in ("dir1", "web1", "nfs1", "db1"):
        assert lab.ssh(name, "systemctl is-active nftables.service").strip() == "active", name
        assert "policy drop" in lab.ssh(name, "nft list chain inet herd input"), name


def test_a_host_outside_the_spec_reaches_only_what_the_subnet_may(lab: Lab) -> None:
    vip = str(lab.build.spec.network.vip)
    expected = {
        ("192.168.50.41", 3306): "dropped",  # MariaDB: the web nodes only
        ("192.168.50.41", 4567): "dropped",  # Galera: db nodes (and garbd) only
        ("192.168.50.31", 2049): "dropped",  # NFS: the web nodes only (nfsd listens: "open" without the firewall)
        ("192.168.50.31", 7789): "dropped",  # DRBD: the other nfs node only
        ("192.168.50.11", 80): "dropped",  # a director's own address
        ("192.168.50.31", 22): "open",  # SSH and metrics: the subnet
        ("192.168.50.41", 9694): "open",
        ("192.168.50.21", 80): "open",  # the site: anyone
        (vip, 80): "open",
    }
    got = reach_all({key: (lab.client, key[0], key[1]) for key in expected})
    assert got == expected
    # Heartbeats: the client's datagrams never reach herdd (its drop counters stay), the firewall counts them.
    def herdd_dropped() -> int:
        return sum(lab.status("db1")["dropped"].values())

    before, walled = herdd_dropped(), firewall_drops(lab, "db1")
    python_in(lab.client, JUNK, "192.168.50.41")
    time.sleep(1)
    assert herdd_dropped() == before, "a datagram from outside the spec reached herdd"
    wait_for(lambda: firewall_drops(lab, "db1") >= walled + 40, 10, what="db1's firewall dropping the client's")

"""Two herd sites and a DNS server, all in network namespaces on one bridge: the main site (10.77.1.0/24) and
the backup site (10.77.2.0/24), each two directors and a web node (three nodes, so one director alone still has
a quorum), a router namespace between the subnets, bind9 as the authoritative server of example.test
(10.77.3.53) and a client (10.77.3.99) that asks it with dig. Each main director serves /check.html on port
8080, so the main VIP answers the backup's probes. Used by tests/netns/test_site.py and bench/dns.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from herd.spec import Spec, parse

from .bind import Bind, tsig_keygen
from .harness import Herdd, Lan, ip, wait_for

ZONE = "example.test"
NAME = f"www.{ZONE}"
KEY_NAME = "herd-site"
MAIN_VIP, BACKUP_VIP = "10.77.1.10", "10.77.2.10"
DNS, CLIENT = "10.77.3.53", "10.77.3.99"
TTL = 2

SPEC = """\
[cluster]
name = "{cluster}"
[network]
subnet = "10.77.{net}.0/24"
gateway = "10.77.{net}.1"
vip = "10.77.{net}.10"
[membership]
interval_ms = 200
deadtime_ms = 1000
metrics_port = 0
[[service]]
name = "http"
port = 8080
[service.check]
type = "http"
path = "/check.html"
expect = "herd ok"
interval = 1.0
timeout = 0.5
[site]
name = "{site}"
role = "{role}"
names = ["{name}"]
zone = "{zone}"
server = "{dns}"
ttl = {ttl}
key_name = "{key_name}"
key_file = "{key_file}"
main = ["{main_vip}"]
backup = "{backup_vip}"
interval = 0.5
down_seconds = {down}
up_seconds = {up}
failback = "{failback}"
[[node]]
name = "{p}-dir1"
role = "director"
address = "10.77.{net}.11"
priority = 200
[[node]]
name = "{p}-dir2"
role = "director"
address = "10.77.{net}.12"
[[node]]
name = "{p}-web1"
role = "web"
address = "10.77.{net}.21"
"""


class Sites:
    def __init__(self, work: Path, tag: str, down: float = 3.0, up: float = 4.0, failback: str = "auto") -> None:
        self.work = work
        self.lan = Lan(tag)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nodes: dict[str, Herdd] = {}
        self.bind: Bind | None = None
        self.down, self.up = down, up
        try:
            self._build(tag, down, up, failback)
        except BaseException:
            self.close()
            raise

    def _build(self, tag: str, down: float, up: float, failback: str) -> None:
        router = self.lan.host("rt", address="10.77.1.1/24")
        for net in (2, 3):
            ip("-n", router, "addr", "add", f"10.77.{net}.1/24", "dev", "eth0")
        subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        # One arm for three subnets: tell no one to go around the router (they cannot reach each other).
        subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0",
                        "net.ipv4.conf.eth0.send_redirects=0"], check=True)
        self.dns_ns = self._host("dns", f"{DNS}/24", "10.77.3.1")
        self.client = self._host("client", f"{CLIENT}/24", "10.77.3.1")

        self.key = self.work / "site.tsig"
        clause = tsig_keygen(KEY_NAME)
        self.key.write_text(clause)
        self.key.chmod(0o600)
        self.bind = Bind(self.dns_ns, DNS, self.work / "bind", ZONE, KEY_NAME, clause, {"www": MAIN_VIP}, TTL)
        self.bind.start()

        self.cluster_key = self.work / "cluster.key"
        self.cluster_key.write_text("k" * 64)
        self.specs: dict[str, Spec] = {}
        for prefix, net, role in (("m", 1, "main"), ("b", 2, "backup")):
            text = SPEC.format(cluster=f"site-{prefix}", net=net, site=f"site-{prefix}", role=role, name=NAME,
                               zone=ZONE, dns=DNS, ttl=TTL, key_name=KEY_NAME, key_file=self.key,
                               main_vip=MAIN_VIP, backup_vip=BACKUP_VIP, down=down, up=up, failback=failback, p=prefix)
            path = self.work / f"{prefix}.toml"
            path.write_text(text)
            spec = self.specs[prefix] = parse(text, str(path))
            for node in spec.nodes:
                ns = self.lan.host(node.name)
                self.nodes[node.name] = Herdd(node.name, ns, path, self.cluster_key, self.work / node.name)

        docroot = self.work / "docroot"
        docroot.mkdir()
        (docroot / "check.html").write_text("herd ok\n")
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        for name in ("m-dir1", "m-dir2"):  # the main site's web service, answering on its VIP
            self.start_server(name)
        for herdd in self.nodes.values():
            herdd.start()
        for herdd in self.nodes.values():
            wait_for(herdd.ready, 30, what=f"{herdd.name} ready")

    def _host(self, name: str, address: str, gateway: str) -> str:
        ns = self.lan.host(name, address=address)
        ip("-n", ns, "route", "add", "default", "via", gateway)
        return ns

    def start_server(self, name: str) -> None:
        docroot = self.work / "docroot"
        self.servers[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.nodes[name].ns, sys.executable, "-m", "http.server", "8080", "--bind",
             "0.0.0.0", "--directory", str(docroot)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- what the world sees ------------------------------------------------------------------------------
    def dig(self) -> list[str]:
        """The name's A records at the authoritative server, asked from the client namespace with dig."""
        out = subprocess.run(["ip", "netns", "exec", self.client, "dig", "+short", "+time=1", "+tries=1",
                              f"@{DNS}", NAME, "A"], capture_output=True, text=True, timeout=10)
        return sorted(line for line in out.stdout.split() if line[:1].isdigit())

    def holder(self, prefix: str) -> str | None:
        holders = {h.status()["vip"]["holder"] for name, h in self.nodes.items()
                   if name.startswith(f"{prefix}-") and h.proc is not None and h.proc.poll() is None}
        return holders.pop() if len(holders) == 1 else None

    def site(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.nodes[name].status()["site"]
        return status

    # -- what happens to the main site ---------------------------------------------------------------------
    def kill_main(self) -> None:
        """Every node of the main site dies at once (its power fails): herdd and the web service."""
        for name in ("m-dir1", "m-dir2", "m-web1"):
            self.nodes[name].kill(signal.SIGKILL)
            self.lan.unplug(name)
        for server in self.servers.values():
            server.kill()
            server.wait()

    def revive_main(self) -> None:
        names = ("m-dir1", "m-dir2", "m-web1")
        logged = {name: self.nodes[name].log.stat().st_size for name in names}
        for name in names:
            self.lan.unplug(name, plugged=True)
            # A killed director leaves its VIP on eth0 (nobody released it); the new herdd removes it at start.
            self.nodes[name].start()
        for name in ("m-dir1", "m-dir2"):
            self.start_server(name)
        for name in names:
            log, offset = self.nodes[name].log, logged[name]
            wait_for(lambda log=log, offset=offset: b" ready" in log.read_bytes()[offset:], 30,  # type: ignore[misc]
                     what=f"{name} ready again")

    def close(self) -> None:
        for herdd in self.nodes.values():
            herdd.kill(signal.SIGTERM)
        for server in getattr(self, "servers", {}).values():
            server.kill()
            server.wait()
        if self.bind is not None:
            self.bind.stop()
        self.lan.close()

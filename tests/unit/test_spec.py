"""The cluster spec: the example loads, and every kind of bad input is reported with its key path, the
file:line where it is, and what is wrong, all problems at once."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from herd.spec import CheckKind, Forwarding, Protocol, Role, Scheduler, SpecError, key_lines, load, parse

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "examples" / "cluster.toml"
TEXT = EXAMPLE.read_text(encoding="utf-8")
FILE = "cluster.toml"
HERE = "# HERE"  # marks the line an error must point at


def edit(text: str, old: str, new: str) -> str:
    """Replace one exact, unique piece of the text (so an edit can never silently miss)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def marked_line(text: str) -> int:
    numbers = [n for n, line in enumerate(text.splitlines(), start=1) if HERE in line]
    assert len(numbers) == 1, "a case must mark exactly one line"
    return numbers[0]


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse(text, FILE)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def node_block(name: str) -> str:
    """The `[[node]]` header followed by the node's name line, to mark or edit one node."""
    return f'[[node]]\nname = "{name}"'


# ---------------------------------------------------------------------------------------------------------
# The example


def test_example_loads() -> None:
    spec = load(EXAMPLE)
    assert spec.name == "demo"
    assert spec.release == "2026.11.0"
    assert spec.source == TEXT
    assert spec.digest == hashlib.sha256(TEXT.encode()).hexdigest()
    assert [n.name for n in spec.nodes] == ["dir1", "dir2", "web1", "web2", "nfs1", "db1"]
    assert spec.roles == (Role.DIRECTOR, Role.WEB, Role.NFS, Role.DB)
    assert [n.name for n in spec.nodes_of(Role.DIRECTOR)] == ["dir1", "dir2"]
    assert [n.name for n in spec.nodes_of(Role.WEB)] == ["web1", "web2"]
    assert spec.network.subnet == ipaddress.IPv4Network("192.168.50.0/24")
    assert spec.network.vip == ipaddress.IPv4Address("192.168.50.10")
    assert spec.network.gateway == ipaddress.IPv4Address("192.168.50.1")
    assert spec.network.dns == (ipaddress.IPv4Address("192.168.50.1"),)
    assert all(n.address in spec.network.subnet and n.address != spec.network.vip for n in spec.nodes)
    assert (spec.membership.port, spec.membership.interval_ms, spec.membership.deadtime_ms) == (694, 200, 1000)
    assert len(spec.services) == 1
    service = spec.services[0]
    assert (service.name, service.port, service.protocol) == ("http", 80, Protocol.TCP)
    assert (service.scheduler, service.forwarding, service.persistence) == (Scheduler.WLC, Forwarding.DR, 0)
    assert service.check.kind == CheckKind.HTTP
    assert (service.check.path, service.check.expect) == ("/check.html", "herd ok")
    assert (service.check.interval, service.check.timeout) == (2.0, 1.0)
    assert spec.node_named("dir1") is not None and spec.node_named("dir1").priority == 200
    assert spec.node_named("web1") is not None and spec.node_named("web1").priority == 100
    assert spec.node_named("nope") is None
    assert len(spec.ssh_keys) == 1 and spec.ssh_keys[0].startswith("ssh-ed25519 ")


def test_node_by_mac_is_case_insensitive() -> None:
    spec = parse(TEXT, FILE)
    found = spec.node_by_mac({"aa:bb:cc:dd:ee:ff", "52:54:00:50:00:21".upper()})
    assert found is not None and found.name == "web1"
    assert spec.node_by_mac({"aa:bb:cc:dd:ee:ff"}) is None


def test_mac_spellings_are_normalised() -> None:
    spec = parse(edit(TEXT, '"52:54:00:50:00:22"', '"52-54-00-50-00-2A"'), FILE)
    web2 = spec.node_named("web2")
    assert web2 is not None and web2.mac == "52:54:00:50:00:2a"


def test_defaults_for_optional_tables() -> None:
    text = """
[cluster]
name = "tiny"
[network]
subnet = "10.0.0.0/24"
vip = "10.0.0.100"
[[node]]
name = "d"
role = "director"
address = "10.0.0.2"
"""
    spec = parse(text, FILE)
    assert spec.release == "0.1.0"
    assert (spec.debian.suite, spec.debian.arch) == ("bookworm", "amd64")
    assert spec.debian.security == "http://security.debian.org/debian-security"  # on unless the spec says no
    assert spec.membership.deadtime_ms >= 4 * spec.membership.interval_ms
    assert spec.services == () and spec.ssh_keys == ()
    assert spec.nodes[0].mac is None


def test_deadtime_of_exactly_four_intervals_is_accepted() -> None:
    """The VIP's lease, deadtime - 2 x interval, is then two intervals: one late heartbeat does not drop it."""
    spec = parse(edit(TEXT, "deadtime_ms = 1000", "deadtime_ms = 800"), FILE)
    assert spec.membership.deadtime_ms == 4 * spec.membership.interval_ms


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(edit(TEXT, 'address = "192.168.50.22"', f'address = "192.168.51.22"  {HERE}'))
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}:{marked_line(path.read_text())}: node[3].address: ")


def test_load_takes_a_byte_order_mark(tmp_path: Path) -> None:
    """A spec saved by Notepad starts with a BOM; line numbers in problems stay right."""
    path = tmp_path / "site.toml"
    path.write_text("\ufeff" + TEXT, encoding="utf-8")
    assert load(path).name == parse(TEXT, str(path)).name
    path.write_text("\ufeff" + edit(TEXT, 'address = "192.168.50.22"', f'address = "192.168.51.22"  {HERE}'),
                    encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}:{marked_line(path.read_text())}: node[3].address: ")


def test_load_unreadable_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the spec"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[cluster]\nname = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load(bad)


# ---------------------------------------------------------------------------------------------------------
# One case per kind of bad input: exactly one problem, at the marked line, naming the key and the trouble.


@dataclass(frozen=True)
class Bad:
    text: str
    path: str
    problem: str  # a regular expression the message must contain


NFS2 = '\n[[node]]\nname = "nfs2"\nrole = "nfs"\naddress = "192.168.50.32"\n'
NFS3 = '\n[[node]]\nname = "nfs3"\nrole = "nfs"\naddress = "192.168.50.33"\n'


def with_nfs_address(text: str) -> str:
    """The NFS service address two nfs nodes need (the example has it commented out)."""
    return edit(text, '# address = "192.168.50.30"', 'address = "192.168.50.30"')


def _bad_cases() -> dict[str, Bad]:
    t = TEXT
    nfs2 = t + NFS2
    return {
        "unknown-top-level-key": Bad(
            edit(t, "[cluster]\n", f'colour = "red"  {HERE}\n[cluster]\n'), "colour", r"unknown key"),
        "unknown-top-level-table": Bad(
            t + f"\n[extras]  {HERE}\nx = 1\n", "extras", r"unknown key; expected one of: .*membership"),
        "unknown-node-key": Bad(
            edit(t, 'name = "web2"', f'name = "web2"\ncolour = "red"  {HERE}'), "node[3].colour",
            r"unknown key; expected one of: address, mac, name"),
        "unknown-check-key": Bad(
            edit(t, "fall = 2", f"fall = 2\nretries = 3  {HERE}"), "service[0].check.retries",
            r"unknown key; expected one of: .*rise"),
        "unknown-cluster-key": Bad(
            edit(t, 'release = "2026.11.0"', f'release = "2026.11.0"\nversion = 2  {HERE}'),
            "cluster.version", r"unknown key"),
        "duplicate-node-name": Bad(
            edit(t, 'name = "web2"', f'name = "web1"  {HERE}'), "node[3].name",
            r"'web1' is already the name of node\[2\]"),
        "duplicate-address": Bad(
            edit(t, 'address = "192.168.50.22"', f'address = "192.168.50.21"  {HERE}'), "node[3].address",
            r"192\.168\.50\.21 is already the address of node\[2\]"),
        "duplicate-mac": Bad(
            edit(t, 'mac = "52:54:00:50:00:22"', f'mac = "52:54:00:50:00:21"  {HERE}'), "node[3].mac",
            r"52:54:00:50:00:21 is already the MAC of node\[2\]"),
        "duplicate-mac-other-spelling": Bad(
            edit(t, 'mac = "52:54:00:50:00:41"', f'mac = "52-54-00-50-00-11"  {HERE}'), "node[5].mac",
            r"52:54:00:50:00:11 is already the MAC of node\[0\]"),
        "address-outside-subnet": Bad(
            edit(t, 'address = "192.168.50.31"', f'address = "192.168.51.31"  {HERE}'), "node[4].address",
            r"192\.168\.51\.31 is outside network\.subnet 192\.168\.50\.0/24"),
        "address-is-broadcast": Bad(
            edit(t, 'address = "192.168.50.31"', f'address = "192.168.50.255"  {HERE}'), "node[4].address",
            r"network or broadcast address"),
        "vip-outside-subnet": Bad(
            edit(t, 'vip = "192.168.50.10"', f'vip = "10.1.1.10"  {HERE}'), "network.vip",
            r"10\.1\.1\.10 is outside network\.subnet"),
        "address-is-vip": Bad(
            edit(t, 'address = "192.168.50.41"', f'address = "192.168.50.10"  {HERE}'), "node[5].address",
            r"is the VIP"),
        "address-is-gateway": Bad(
            edit(t, 'address = "192.168.50.41"', f'address = "192.168.50.1"  {HERE}'), "node[5].address",
            r"is the gateway"),
        "unknown-role": Bad(
            edit(t, 'role = "nfs"', f'role = "storage"  {HERE}'), "node[4].role",
            r"'storage' is not a role; use one of: director, web, nfs, db"),
        "no-director": Bad(
            edit(t.replace('role = "director"', 'role = "web"'), node_block("dir1"),
                 f'[[node]]  {HERE}\nname = "dir1"'),
            "node", r'no node has role = "director"'),
        "malformed-mac": Bad(
            edit(t, 'mac = "52:54:00:50:00:22"', f'mac = "52:54:00:50:00"  {HERE}'), "node[3].mac",
            r"'52:54:00:50:00' is not a MAC address"),
        "malformed-mac-letters": Bad(
            edit(t, 'mac = "52:54:00:50:00:22"', f'mac = "52:54:00:50:00:zz"  {HERE}'), "node[3].mac",
            r"is not a MAC address"),
        "malformed-cidr-prefix": Bad(
            edit(t, 'subnet = "192.168.50.0/24"', f'subnet = "192.168.50.0/33"  {HERE}'), "network.subnet",
            r"'192\.168\.50\.0/33' is not an IPv4 CIDR"),
        "malformed-cidr-text": Bad(
            edit(t, 'subnet = "192.168.50.0/24"', f'subnet = "lan"  {HERE}'), "network.subnet",
            r"'lan' is not an IPv4 CIDR"),
        "cidr-host-bits-set": Bad(
            edit(t, 'subnet = "192.168.50.0/24"', f'subnet = "192.168.50.1/24"  {HERE}'), "network.subnet",
            r"'192\.168\.50\.1/24' has host bits set; the network is 192\.168\.50\.0/24"),
        "malformed-node-address": Bad(
            edit(t, 'address = "192.168.50.22"', f'address = "192.168.50.300"  {HERE}'), "node[3].address",
            r"'192\.168\.50\.300' is not an IPv4 address"),
        "malformed-vip": Bad(
            edit(t, 'vip = "192.168.50.10"', f'vip = "192.168.50"  {HERE}'), "network.vip",
            r"'192\.168\.50' is not an IPv4 address"),
        "malformed-dns": Bad(
            edit(t, 'dns = ["192.168.50.1"]', f'dns = ["192.168.50.1", "dns.example"]  {HERE}'), "network.dns[1]",
            r"'dns\.example' is not an IPv4 address"),
        "bad-scheduler": Bad(
            edit(t, 'scheduler = "wlc"', f'scheduler = "fifo"  {HERE}'), "service[0].scheduler",
            r"'fifo' is not one of: rr, wrr, lc, wlc, sh, mh"),
        "bad-forwarding": Bad(
            edit(t, 'forwarding = "dr"', f'forwarding = "tun"  {HERE}'), "service[0].forwarding",
            r"'tun' is not one of: dr, nat"),
        "string-for-int-service-port": Bad(
            edit(t, "port = 80", f'port = "80"  {HERE}'), "service[0].port",
            r"must be an integer, got str '80'"),
        "string-for-int-membership": Bad(
            edit(t, "interval_ms = 200", f'interval_ms = "200"  {HERE}'), "membership.interval_ms",
            r"must be an integer, got str '200'"),
        "string-for-int-node-priority": Bad(
            edit(t, "priority = 200", f'priority = "high"  {HERE}'), "node[0].priority",
            r"must be an integer, got str 'high'"),
        "bool-for-int": Bad(
            edit(t, "rise = 2", f"rise = true  {HERE}"), "service[0].check.rise", r"must be an integer, got bool"),
        "int-for-string-address": Bad(
            edit(t, 'address = "192.168.50.22"', f"address = 3232248342  {HERE}"), "node[3].address",
            r"must be a string, got int"),
        "string-for-list": Bad(
            edit(t, 'dns = ["192.168.50.1"]', f'dns = "192.168.50.1"  {HERE}'), "network.dns",
            r"must be a list, got str"),
        "missing-node-address": Bad(
            edit(edit(t, 'address = "192.168.50.22"\n', ""), node_block("web2"), f'[[node]]  {HERE}\nname = "web2"'),
            "node[3].address", r"missing; add `address = …` here"),
        "missing-node-role": Bad(
            edit(edit(t, 'role = "db"\n', ""), node_block("db1"), f'[[node]]  {HERE}\nname = "db1"'),
            "node[5].role", r"missing; add `role = …` here"),
        "missing-vip": Bad(
            edit(edit(t, 'vip = "192.168.50.10"', "# no vip"), "[network]", f"[network]  {HERE}"),
            "network.vip", r"missing; add `vip = …` here"),
        "missing-cluster-name": Bad(
            edit(edit(t, 'name = "demo"', "# no name"), "[cluster]", f"[cluster]  {HERE}"),
            "cluster.name", r"missing; add `name = …` here"),
        "missing-service-port": Bad(
            edit(edit(t, "port = 80\n", ""), "[[service]]", f"[[service]]  {HERE}"),
            "service[0].port", r"missing; add `port = …` here"),
        "deadtime-under-four-intervals": Bad(
            edit(t, "deadtime_ms = 1000", f"deadtime_ms = 799  {HERE}"), "membership.deadtime_ms",
            r"799 must be at least 4 [x\N{MULTIPLICATION SIGN}] interval_ms \(800\): .*one late heartbeat"),
        "deadtime-of-three-intervals": Bad(
            edit(t, "deadtime_ms = 1000", f"deadtime_ms = 600  {HERE}"), "membership.deadtime_ms",
            r"at least 4 [x\N{MULTIPLICATION SIGN}] interval_ms"),
        "interval-zero": Bad(
            edit(t, "interval_ms = 200", f"interval_ms = 0  {HERE}"), "membership.interval_ms",
            r"must be at least 10"),
        "membership-port-zero": Bad(
            edit(t, "port = 694", f"port = 0  {HERE}"), "membership.port", r"0 is not a port number"),
        "service-port-out-of-range": Bad(
            edit(t, "port = 80", f"port = 65536  {HERE}"), "service[0].port", r"65536 is not a port number"),
        "check-rise-zero": Bad(
            edit(t, "rise = 2", f"rise = 0  {HERE}"), "service[0].check.rise", r"must be at least 1"),
        "check-timeout-not-shorter": Bad(
            edit(t, "timeout = 1.0", f"timeout = 2.0  {HERE}"), "service[0].check.timeout",
            r"must be shorter than check\.interval"),
        "check-path-relative": Bad(
            edit(t, 'path = "/check.html"', f'path = "health"  {HERE}'), "service[0].check.path",
            r"must start with '/'"),
        "bad-ssh-key": Bad(
            edit(edit(t, '"ssh-ed25519 AAAA', '"AAAA'), "ssh_keys = [", f"ssh_keys = [  {HERE}"),
            "access.ssh_keys[0]", r"is not an OpenSSH public key line"),
        "second-ssh-key-bad": Bad(
            edit(edit(t, "admin@example\",\n", 'admin@example",\n    "ssh-ed25519 AAAA\\nroot",\n'),
                 "ssh_keys = [", f"ssh_keys = [  {HERE}"),
            "access.ssh_keys[1]", r"is not an OpenSSH public key line"),
        "bad-node-name": Bad(
            edit(t, 'name = "web2"', f'name = "Web_2"  {HERE}'), "node[3].name", r"must be a host name"),
        "bad-release": Bad(
            edit(t, 'release = "2026.11.0"', f'release = "../2026"  {HERE}'), "cluster.release",
            r"must be letters, digits"),
        "bad-arch": Bad(
            edit(t, 'arch = "amd64"', f'arch = "arm64"  {HERE}'), "debian.arch", r"not supported"),
        "vip-is-gateway": Bad(edit(t, 'vip = "192.168.50.10"', f'vip = "192.168.50.1"  {HERE}'), "network.vip",
                              r"192.168.50.1 is the gateway \(network.gateway\)"),
        "vip-is-broadcast": Bad(edit(t, 'vip = "192.168.50.10"', f'vip = "192.168.50.255"  {HERE}'), "network.vip",
                                r"is the subnet's network or broadcast address"),
        "gateway-is-network": Bad(edit(t, 'gateway = "192.168.50.1"', f'gateway = "192.168.50.0"  {HERE}'),
                                  "network.gateway", r"is the subnet's network or broadcast address"),
        "subnet-everything": Bad(edit(t, 'subnet = "192.168.50.0/24"', f'subnet = "0.0.0.0/0"  {HERE}'),
                                 "network.subnet", r"must be a LAN of /8 to /30"),
        "dns-a-number": Bad(edit(t, 'dns = ["192.168.50.1"]', f'dns = [1]  {HERE}'), "network.dns[0]",
                            r"1 is not an IPv4 address in quotes"),
        "metrics-on-ssh": Bad(edit(t, "metrics_port = 9694 ", f"metrics_port = 22  {HERE} "),
                              "membership.metrics_port", r"22 is taken by SSH on the nodes"),
        "metrics-on-a-service": Bad(edit(t, "metrics_port = 9694 ", f"metrics_port = 80  {HERE} "),
                                    "membership.metrics_port", r"80 is taken by service 'http'"),
        "metrics-allow-a-number": Bad(
            edit(t, "metrics_port = 9694 ", f"metrics_allow = [10]  {HERE}\nmetrics_port = 9694 "),
            "membership.metrics_allow[0]", r"10 is not a network"),
        "metrics-allow-nobody": Bad(
            edit(t, "metrics_port = 9694 ", f"metrics_allow = []  {HERE}\nmetrics_port = 9694 "),
            "membership.metrics_allow", r"lets nobody in; to turn the endpoint off, set metrics_port = 0"),
        "metrics-allow-bad-cidr": Bad(
            edit(t, "metrics_port = 9694 ", f'metrics_allow = ["10.0.0.0/33"]  {HERE}\nmetrics_port = 9694 '),
            "membership.metrics_allow[0]", r"'10.0.0.0/33' is not a network"),
        "service-name-twice": Bad(
            edit(t, "[nfs]\n", '[[service]]\nname = "http"  ' + HERE + '\nport = 8080\n\n[nfs]\n'), "service[1].name",
            r"'http' is already service\[0\]"),
        "service-name-bad": Bad(edit(t, 'name = "http"', f'name = "h t/p"  {HERE}'), "service[0].name",
                                r"must be letters, digits"),
        "bad-mirror": Bad(
            edit(t, 'mirror = "http://deb.debian.org/debian"', f'mirror = "deb.debian.org"  {HERE}'),
            "debian.mirror", r"must be an http://, https:// or file:// URL"),
        # [nfs], and replication with two nfs nodes
        "nfs-export-etc": Bad(edit(t, 'export = "/srv/herd/www"', f'export = "/etc"  {HERE}'), "nfs.export",
                              r"'/etc' is a system directory of the nfs node"),
        "nfs-export-in-usr": Bad(edit(t, 'export = "/srv/herd/www"', f'export = "/usr/share/www"  {HERE}'),
                                 "nfs.export", r"is a system directory"),
        "nfs-export-var-lib": Bad(edit(t, 'export = "/srv/herd/www"', f'export = "/var/lib/www"  {HERE}'), "nfs.export",
                                  r"is a system directory"),
        "nfs-export-srv": Bad(edit(t, 'export = "/srv/herd/www"', f'export = "/srv"  {HERE}'), "nfs.export",
                              r"is a system directory"),
        "nfs-address-with-one-nfs-node": Bad(
            edit(t, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"  {HERE}\n'), "nfs.address",
            r"service address two nfs nodes share; with one nfs node .* remove it, or add a second nfs node"),
        "nfs-disk-with-one-nfs-node": Bad(
            edit(t, "[nfs]\n", f'[nfs]\ndisk = "/dev/sdb"  {HERE}\n'), "nfs.disk", r"DRBD disk of two nfs nodes"),
        "two-nfs-nodes-without-address": Bad(
            edit(nfs2, "[nfs]\n", f"[nfs]  {HERE}\n"), "nfs.address",
            r"missing; two nfs nodes .* add `address = \"…\"`, a free address in network\.subnet"),
        "nfs-address-is-a-node": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.31"  {HERE}\n'), "nfs.address",
            r"192\.168\.50\.31 is nfs1's address; the service address must be a free one"),
        "nfs-address-is-the-vip": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.10"  {HERE}\n'), "nfs.address", r"is the VIP"),
        "nfs-address-outside-subnet": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "10.0.0.30"  {HERE}\n'), "nfs.address",
            r"outside network\.subnet"),
        "nfs-address-malformed": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "nfs"  {HERE}\n'), "nfs.address", r"is not an IPv4 address"),
        "nfs-disk-not-a-device": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\ndisk = "sdb"  {HERE}\n'), "nfs.disk",
            r"must be \"auto\" or a device path such as /dev/sdb"),
        # DRBD writes over the whole device: a path that leaves /dev, or another spelling of a device, is refused
        "nfs-disk-leaving-dev": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\ndisk = "/dev/../etc/shadow"  {HERE}\n'),
            "nfs.disk", r"'/dev/\.\./etc/shadow' is not a plain path under /dev .*: name a device under /dev"),
        "nfs-disk-double-slash": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\ndisk = "/dev//sda"  {HERE}\n'), "nfs.disk",
            r"'/dev//sda' is not a plain path under /dev \(no `\.\.`, `\.`, `//` or final `/`\): write '/dev/sda'$"),
        "nfs-disk-dot": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\ndisk = "/dev/./sda"  {HERE}\n'), "nfs.disk",
            r"is not a plain path under /dev .*: write '/dev/sda'$"),
        "nfs-disk-final-slash": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\ndisk = "/dev/sdb/"  {HERE}\n'), "nfs.disk",
            r"is not a plain path under /dev .*: write '/dev/sdb'$"),
        "nfs-disk-relative": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\ndisk = "../dev/sdb"  {HERE}\n'), "nfs.disk",
            r"must be \"auto\" or a device path such as /dev/sdb"),
        "nfs-port-taken": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\nport = 2049  {HERE}\n'), "nfs.port",
            r"2049 is taken on the nfs nodes"),
        # network.domain goes into /etc/hosts, /etc/resolv.conf and idmapd.conf as it is
        "domain-with-a-newline": Bad(
            edit(t, 'domain = "herd.lan"', f'domain = "herd.lan\\nnameserver 6.6.6.6"  {HERE}'), "network.domain",
            r"'herd\.lan\\nnameserver 6\.6\.6\.6' is not a DNS domain name: use dot-separated labels"),
        "domain-with-a-space": Bad(
            edit(t, 'domain = "herd.lan"', f'domain = "my lan"  {HERE}'), "network.domain",
            r"'my lan' is not a DNS domain name.* like herd\.lan"),
        "domain-empty": Bad(
            edit(t, 'domain = "herd.lan"', f'domain = ""  {HERE}'), "network.domain", r"is not a DNS domain name"),
        "domain-a-number": Bad(
            edit(t, 'domain = "herd.lan"', f'domain = 1  {HERE}'), "network.domain", r"must be a string"),
        "cluster-name-too-long": Bad(
            edit(t, 'name = "demo"', f'name = "{"c" * 56}"  {HERE}'), "cluster.name",
            r"is 56 characters; the nodes' host names are made of it \('c{56}-director' is 65, over Linux's 64\): "
            r"use at most 55"),
        "cluster-name-with-a-newline": Bad(
            edit(t, 'name = "demo"', f'name = "demo\\n"  {HERE}'), "cluster.name", r"must be lower-case letters"),
        "node-name-with-a-newline": Bad(
            edit(t, 'name = "web2"', f'name = "web2\\n"  {HERE}'), "node[3].name", r"must be a host name"),
        "node-named-vip": Bad(
            edit(t, 'name = "web2"', f'name = "vip"  {HERE}'), "node[3].name",
            r"'vip' is a name every node's /etc/hosts already gives another address"),
        "node-named-localhost": Bad(
            edit(t, 'name = "web2"', f'name = "localhost"  {HERE}'), "node[3].name", r"already gives another"),
        "mac-with-a-newline": Bad(
            edit(t, 'mac = "52:54:00:50:00:22"', f'mac = "52:54:00:50:00:22\\n"  {HERE}'), "node[3].mac",
            r"is not a MAC address"),
        "release-with-a-newline": Bad(
            edit(t, 'release = "2026.11.0"', f'release = "2026.11.0\\n"  {HERE}'), "cluster.release",
            r"must be letters, digits"),
        "database-name-with-a-newline": Bad(
            edit(t, 'name = "site"', f'name = "site\\n"  {HERE}'), "database[0].name", r"must be lower-case"),
        # the app user gets ALL on `name`.*: on one of MariaDB's own schemas that is the whole server
        "database-name-mysql": Bad(
            edit(t, 'name = "site"', f'name = "mysql"  {HERE}'), "database[0].name",
            r"'mysql' is MariaDB's own schema \(the app user would get ALL on it, and so the whole server\): use a "
            r"name of the site's own"),
        "database-name-information-schema": Bad(
            edit(t, 'name = "site"', f'name = "information_schema"  {HERE}'), "database[0].name",
            r"MariaDB's own schema"),
        "database-name-performance-schema": Bad(
            edit(t, 'name = "site"', f'name = "performance_schema"  {HERE}'), "database[0].name",
            r"MariaDB's own schema"),
        "database-name-sys": Bad(
            edit(t, 'name = "site"', f'name = "sys"  {HERE}'), "database[0].name", r"MariaDB's own schema"),
        "nfs-export-with-a-newline": Bad(
            edit(t, 'export = "/srv/herd/www"', f'export = "/srv/herd/www\\n/ *(rw)"  {HERE}'), "nfs.export",
            r"must be an absolute path of plain names"),
        "nfs-export-ending-in-a-newline": Bad(
            edit(t, 'export = "/srv/herd/www"', f'export = "/srv/herd/www\\n"  {HERE}'), "nfs.export",
            r"must be an absolute path of plain names"),
        "nfs-options-with-a-newline": Bad(
            edit(t, 'options = "rw,sync,no_subtree_check,root_squash"',
                 f'options = "rw,sync\\n"  {HERE}'), "nfs.options", r"is not an exports\(5\) option list"),
        "nfs-disk-with-a-newline": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\ndisk = "/dev/sdb\\n"  {HERE}\n'), "nfs.disk",
            r"must be \"auto\" or a device path"),
        "mirror-with-a-second-line": Bad(
            edit(t, 'mirror = "http://deb.debian.org/debian"',
                 f'mirror = "http://deb.debian.org/debian\\ndeb http://evil.example/ x main"  {HERE}'),
            "debian.mirror", r"must be an http://, https:// or file:// URL"),
        "security-with-a-second-line": Bad(
            edit(t, 'security = "http://security.debian.org/debian-security"',
                 f'security = "http://x.example/debian-security\\ndeb http://evil.example/ x main"  {HERE}'),
            "debian.security", r"must be an http://, https:// or file:// URL"),
        "security-true": Bad(
            edit(t, 'security = "http://security.debian.org/debian-security"', f'security = true  {HERE}'),
            "debian.security", r"must be the security archive's URL .*or false to build without security updates"),
        "suite-not-a-name": Bad(
            edit(t, 'suite = "bookworm"', f'suite = "bookworm main\\ndeb x"  {HERE}'), "debian.suite",
            r"is not a Debian suite name like bookworm"),
        "check-path-with-a-space": Bad(
            edit(t, 'path = "/check.html"', f'path = "/check.html HTTP/1.0\\r\\nHost: x"  {HERE}'),
            "service[0].check.path", r"must start with '/' and have no spaces or control characters"),
        "udp-service-without-a-check-type": Bad(
            edit(edit(t, 'protocol = "tcp"', 'protocol = "udp"'), '[service.check]\ntype = "http"\n',
                 f"[service.check]  {HERE}\n"),
            "service[0].check.type",
            r"a UDP service has no check of its own kind: set type = \"tcp\""),
        # IPVS's persistence timeout: seconds in, kernel ticks (32 bits) kept
        "persistence-negative": Bad(
            edit(t, "persistence = 0 ", f"persistence = -1  {HERE} "), "service[0].persistence",
            r"-1 must be 0 \(off\) or a number of seconds up to 4294967"),
        "persistence-over-32-bits": Bad(
            edit(t, "persistence = 0 ", f"persistence = {2**32}  {HERE} "), "service[0].persistence",
            r"4294967296 must be 0 \(off\) or a number of seconds up to 4294967 \(IPVS"),
        "persistence-over-32-bits-of-ticks": Bad(
            edit(t, "persistence = 0 ", f"persistence = 4294968  {HERE} "), "service[0].persistence",
            r"up to 4294967"),
        # DRBD's timers follow the deadtime, with two nfs nodes
        "deadtime-too-long-for-drbd": Bad(
            edit(with_nfs_address(nfs2), "deadtime_ms = 1000", f"deadtime_ms = 30100  {HERE}"),
            "membership.deadtime_ms",
            r"30100 is too long for DRBD between the two nfs nodes \(its ping-timeout .* at most 30 s\): "
            r"use at most 30099"),
        # DRBD's link (nfs.port) against herdd's metrics: the key written is the one blamed, with a free port
        "metrics-on-drbds-default-port": Bad(
            edit(with_nfs_address(nfs2), "metrics_port = 9694 ", f"metrics_port = 7789  {HERE} "),
            "membership.metrics_port",
            r"7789 is nfs.port's default, DRBD's link between the two nfs nodes; use another, such as 9694 "),
        "nfs-port-on-default-metrics": Bad(
            edit(nfs2, "[nfs]\n", f'[nfs]\naddress = "192.168.50.30"\nport = 9694  {HERE}\n'), "nfs.port",
            r"9694 is also membership.metrics_port, herdd's metrics on every node; use another, such as 7789$"),
        "nfs-port-and-metrics-both-7789": Bad(
            edit(edit(nfs2, "metrics_port = 9694 ", "metrics_port = 7789 "), "[nfs]\n",
                 f'[nfs]\naddress = "192.168.50.30"\nport = 7789  {HERE}\n'), "nfs.port",
            r"7789 is also membership.metrics_port.*such as 7790$"),
        "metrics-default-on-a-service": Bad(
            edit(edit(t, "metrics_port = 9694 ", "# metrics_port "), "[membership]", f"[membership]  {HERE}")
            .replace("port = 80\n", "port = 9694\n", 1),
            "membership.metrics_port",
            r"9694 \(metrics_port's default\) is taken by service 'http' on the nodes; use another, such as 9695 "),
        "metrics-is-membership-port": Bad(
            edit(t, "metrics_port = 9694 ", f"metrics_port = 694  {HERE} "), "membership.metrics_port",
            r"694 is membership.port, herdd's heartbeats; use another, such as 9694 \(0 turns it off\)"),
        # image.min_size: whole MiB or GiB, in a string, and not absurd
        "image-size-without-unit": Bad(
            edit(t, 'min_size = "1800MiB"', f'min_size = "1800"  {HERE}'), "image.min_size",
            r"'1800' is not a size: write whole MiB or GiB, such as \"1800MiB\""),
        "image-size-in-decimal-units": Bad(
            edit(t, 'min_size = "1800MiB"', f'min_size = "2GB"  {HERE}'), "image.min_size", r"'2GB' is not a size"),
        "image-size-fraction": Bad(
            edit(t, 'min_size = "1800MiB"', f'min_size = "1.5GiB"  {HERE}'), "image.min_size",
            r"'1.5GiB' is not a size"),
        "image-size-a-number": Bad(
            edit(t, 'min_size = "1800MiB"', f'min_size = 1800  {HERE}'), "image.min_size",
            r"must be a string, got int 1800"),
        "image-size-too-big": Bad(
            edit(t, 'min_size = "1800MiB"', f'min_size = "65GiB"  {HERE}'), "image.min_size",
            r"'65GiB' is over 64 GiB"),
        "image-unknown-key": Bad(
            edit(t, 'min_size = "1800MiB"', f'size = "1800MiB"  {HERE}'), "image.size",
            r"unknown key; expected one of: min_size"),
        "three-nfs-nodes": Bad(
            edit(nfs2 + NFS3, node_block("dir1"), f'[[node]]  {HERE}\nname = "dir1"'), "node",
            r"3 nfs nodes \(nfs1, nfs2, nfs3\); herd replicates the docroot between two \(DRBD\): use one or two"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_input_is_reported_with_key_line_and_problem(case: Bad) -> None:
    problems = problems_of(case.text)
    assert len(problems) == 1, problems
    prefix = f"{FILE}:{marked_line(case.text)}: {case.path}: "
    assert problems[0].startswith(prefix), f"{problems[0]!r} does not start with {prefix!r}"
    assert re.search(case.problem, problems[0][len(prefix):]), problems[0]


def test_invalid_toml_names_the_line() -> None:
    text = edit(TEXT, "port = 80", f"port = = 80  {HERE}")
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{FILE}: not valid TOML")
    assert re.search(rf"\bline {marked_line(text)}\b", problems[0]), problems[0]


def test_missing_required_table() -> None:
    text = edit(TEXT, "[network]", "[network_]")  # the table is gone, and an unknown one is there
    problems = problems_of(text)
    network_problems = [p for p in problems if ": network: " in p]
    assert len(network_problems) == 1 and "missing; add a [network] table" in network_problems[0]
    assert any("network_: unknown key" in p for p in problems)


def test_no_nodes() -> None:
    text = TEXT[:TEXT.index("[[node]]")] + TEXT[TEXT.index("[access]"):]
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith(f"{FILE}: node: no nodes")


def test_several_problems_are_all_reported_at_once() -> None:
    text = TEXT
    text = edit(text, "deadtime_ms = 1000", "deadtime_ms = 100")
    text = edit(text, 'scheduler = "wlc"', 'scheduler = "fifo"')
    text = edit(text, 'address = "192.168.50.22"', 'address = "192.168.51.22"')
    text = edit(text, 'mac = "52:54:00:50:00:31"', 'mac = "nope"')
    text = edit(text, '"ssh-ed25519 AAAA', '"AAAA')
    problems = problems_of(text)
    paths = [p.split(": ")[1] for p in problems]
    assert sorted(paths) == sorted(["membership.deadtime_ms", "service[0].scheduler", "node[3].address",
                                    "node[4].mac", "access.ssh_keys[0]"])
    assert all(re.match(rf"{FILE}:\d+: ", p) for p in problems)


def test_no_director_is_reported_along_with_other_problems() -> None:
    text = TEXT.replace('role = "director"', 'role = "web"')
    text = edit(text, 'mac = "52:54:00:50:00:31"', 'mac = "nope"')
    paths = [p.split(": ")[1] for p in problems_of(text)]
    assert sorted(paths) == ["node", "node[4].mac"]


def test_misspelt_role_does_not_also_claim_no_director() -> None:
    text = TEXT.replace('role = "director"', 'role = "directr"')
    paths = [p.split(": ")[1] for p in problems_of(text)]
    assert paths == ["node[0].role", "node[1].role"]


# ---------------------------------------------------------------------------------------------------------
# key_lines


def test_key_lines_maps_tables_arrays_and_keys() -> None:
    text = "\n".join([
        "top = 1",                 # 1
        "[cluster]",               # 2
        'name = "x"  # note',      # 3
        "",                        # 4
        "[[node]]",                # 5
        'name = "a"',              # 6
        "[[node]]  # the second",  # 7
        '  name = "b"',            # 8
        '"quoted key" = 2',        # 9
        "[[service]]",             # 10
        "port = 80",               # 11
        "[service.check]",         # 12
        'type = "http"',           # 13
        "[[service]]",             # 14
        "[ service.check ]",       # 15
        "rise = 3",                # 16
        "inline = { a = 1 }",      # 17
    ])
    assert key_lines(text) == {
        "top": 1,
        "cluster": 2, "cluster.name": 3,
        "node": 5, "node[0]": 5, "node[0].name": 6,
        "node[1]": 7, "node[1].name": 8, "node[1].quoted key": 9,
        "service": 10, "service[0]": 10, "service[0].port": 11,
        "service[0].check": 12, "service[0].check.type": 13,
        "service[1]": 14, "service[1].check": 15, "service[1].check.rise": 16, "service[1].check.inline": 17,
    }


def test_key_lines_of_the_example_point_at_each_node() -> None:
    lines = TEXT.splitlines()
    mapping = key_lines(TEXT)
    spec = parse(TEXT, FILE)
    for i, node in enumerate(spec.nodes):
        assert lines[mapping[f"node[{i}]"] - 1].strip() == "[[node]]"
        assert str(node.address) in lines[mapping[f"node[{i}].address"] - 1]
        assert node.name in lines[mapping[f"node[{i}].name"] - 1]
    assert lines[mapping["service[0].check"] - 1].strip() == "[service.check]"
    assert lines[mapping["access.ssh_keys"] - 1].startswith("ssh_keys")


def test_two_nfs_nodes_replicate_with_the_examples_commented_keys() -> None:
    """Uncommenting the example's replication keys and adding nfs2 gives a valid replicated spec."""
    text = TEXT.replace('# address = "192.168.50.30"', 'address = "192.168.50.30"').replace(
        '# disk = "auto"', 'disk = "auto"') + NFS2
    spec = parse(text, FILE)
    assert spec.replicated_storage and [n.name for n in spec.nodes_of(Role.NFS)] == ["nfs1", "nfs2"]
    assert str(spec.nfs.address) == "192.168.50.30" and spec.nfs.disk == "auto" and spec.nfs.port == 7789
    assert not parse(TEXT, FILE).replicated_storage and parse(TEXT, FILE).nfs.address is None



@pytest.mark.parametrize("disk", ["/dev/sdb", "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00005", "/dev/nvme0n1p2",
                                  "/dev/mapper/vg-drbd"])
def test_nfs_disk_plain_device_paths_are_taken(disk: str) -> None:
    text = edit(with_nfs_address(TEXT), '# disk = "auto"', f'disk = "{disk}"') + NFS2
    assert parse(text, FILE).nfs.disk == disk

# ---------------------------------------------------------------------------------------------------------
# Limits that come from what the images do with a value


@pytest.mark.parametrize("domain", ["herd.lan", "lan", "Example-1.Herd.LAN", "a" * 63 + ".lan",
                                    ".".join(["a" * 62] * 4) + ".l"])
def test_domain_names_are_accepted(domain: str) -> None:
    assert len(domain) <= 253
    assert parse(edit(TEXT, 'domain = "herd.lan"', f'domain = "{domain}"'), FILE).network.domain == domain


@pytest.mark.parametrize("domain", ["herd.lan.", ".lan", "herd..lan", "-herd.lan", "herd-.lan", "herd_lan",
                                    "a" * 64 + ".lan", ".".join(["a" * 62] * 4) + ".lx", "herd.lan\\n",
                                    "herd.lan\\tx", "h\u00e9rd.lan"])
def test_domain_names_are_refused(domain: str) -> None:
    text = edit(TEXT, 'domain = "herd.lan"', f'domain = "{domain}"  {HERE}')
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith(f"{FILE}:{marked_line(text)}: network.domain: "), problems


def test_longest_cluster_name_makes_host_names_linux_takes() -> None:
    """Every host name the overlay makes of cluster.name fits in 64 characters at the longest name taken: each
    image's /etc/hostname, and rpc.nfsd's host name with two nfs nodes."""
    import jinja2

    from herd.spec import CLUSTER_NAME_MAX

    name = "c" * CLUSTER_NAME_MAX
    text = with_nfs_address(edit(TEXT, 'name = "demo"', f'name = "{name}"')) + NFS2
    spec = parse(text, FILE)
    assert spec.name == name and spec.replicated_storage
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROJECT / "overlay")),
                             undefined=jinja2.StrictUndefined)
    hosts = [env.get_template("common/etc/hostname.j2").render(cluster=name, role=role.value).strip()
             for role in Role]
    scope = env.get_template("nfs/etc/systemd/system/nfs-server.service.d/herd.conf.j2").render(
        cluster=name, spec=spec, herd_version="test")
    started = re.search(r"^ExecStart=/usr/bin/unshare .* (\S+)$", scope, re.MULTILINE)
    assert started is not None
    hosts.append(started.group(1))
    assert all(name in host for host in hosts), hosts
    assert max(map(len, hosts)) == 64, hosts  # the cap is as long as they allow, and no longer
    problems = problems_of(edit(TEXT, 'name = "demo"', f'name = "{name}c"'))
    assert len(problems) == 1 and ": cluster.name: " in problems[0]


def test_persistence_of_the_most_ipvs_keeps_is_accepted() -> None:
    spec = parse(edit(TEXT, "persistence = 0 ", "persistence = 4294967 "), FILE)
    assert spec.services[0].persistence == 4294967 and 4294967 * 1000 < 2**32


def test_drbd_bound_on_deadtime() -> None:
    """The longest deadtime taken with two nfs nodes gives DRBD timers it accepts; one more would not; with one
    nfs node (no DRBD) the deadtime is not bound by DRBD."""
    from herd.spec import DRBD_DEADTIME_MAX_MS, DRBD_LIMITS, drbd_timing, drbd_timing_fits

    assert drbd_timing_fits(DRBD_DEADTIME_MAX_MS) and not drbd_timing_fits(DRBD_DEADTIME_MAX_MS + 1)
    assert all(value <= DRBD_LIMITS[key] for key, value in drbd_timing(DRBD_DEADTIME_MAX_MS).items())
    assert drbd_timing(DRBD_DEADTIME_MAX_MS + 1)["ping_timeout"] > 300
    replicated = with_nfs_address(TEXT) + NFS2
    at_most = parse(edit(replicated, "deadtime_ms = 1000", f"deadtime_ms = {DRBD_DEADTIME_MAX_MS}"), FILE)
    assert at_most.replicated_storage and at_most.membership.deadtime_ms == 30099
    one_nfs = parse(edit(TEXT, "deadtime_ms = 1000", "deadtime_ms = 60000"), FILE)
    assert not one_nfs.replicated_storage and one_nfs.membership.deadtime_ms == 60000


def test_drbd_port_is_only_checked_with_two_nfs_nodes() -> None:
    """nfs.port is DRBD's link: with one nfs node there is none, and metrics_port may be 7789."""
    spec = parse(edit(TEXT, "metrics_port = 9694 ", "metrics_port = 7789 "), FILE)
    assert spec.membership.metrics_port == 7789 == spec.nfs.port and not spec.replicated_storage
    replicated = with_nfs_address(TEXT) + NFS2
    spec = parse(edit(edit(replicated, "metrics_port = 9694 ", "metrics_port = 7789 "), "[nfs]\n",
                      "[nfs]\nport = 7790\n"), FILE)
    assert (spec.membership.metrics_port, spec.nfs.port) == (7789, 7790)


@pytest.mark.parametrize(("written", "size"), [("1800MiB", 1800 * 2**20), ("4GiB", 4 * 2**30), ("4 GiB", 4 * 2**30),
                                               ("0MiB", 0), ("64GiB", 64 * 2**30)])
def test_image_min_size(written: str, size: int) -> None:
    spec = parse(edit(TEXT, 'min_size = "1800MiB"', f'min_size = "{written}"'), FILE)
    assert spec.image.min_size == size


def test_image_min_size_is_optional() -> None:
    text = edit(TEXT, 'min_size = "1800MiB"\n', "")
    assert parse(text, FILE).image.min_size == 0
    assert parse(text.replace("[image]\n", ""), FILE).image.min_size == 0


def test_metrics_are_for_the_subnet_unless_the_spec_says_whom() -> None:
    assert parse(TEXT).membership.metrics_allow == (ipaddress.ip_network("192.168.50.0/24"),)
    spec = parse(edit(TEXT, "metrics_port = 9694 ",
                      'metrics_allow = ["10.9.8.7", "192.168.50.0/28", "fd00::/64"]\nmetrics_port = 9694 '))
    assert spec.membership.metrics_allow == (ipaddress.ip_network("10.9.8.7/32"), ipaddress.ip_network(
        "192.168.50.0/28"), ipaddress.ip_network("fd00::/64"))


def test_security_updates_are_left_out_only_when_the_spec_says_so() -> None:
    off = parse(edit(TEXT, 'security = "http://security.debian.org/debian-security"', "security = false"), FILE)
    assert off.debian.security is None
    mirror = parse(edit(TEXT, 'security = "http://security.debian.org/debian-security"',
                        'security = "file:///srv/mirror/debian-security"'), FILE)
    assert mirror.debian.security == "file:///srv/mirror/debian-security"

"""The cluster spec: `cluster.toml` parsed into one frozen, validated model.

Both programs use it: the builder bakes the file into every image, and herdd reads it back on the node.
Every error names the key (`node[3].address`), the line where it could be found, and what to do.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herd.spec.model import (
    Check,
    CheckKind,
    Database,
    Debian,
    Failback,
    Forwarding,
    Image,
    Membership,
    Network,
    Nfs,
    Node,
    Protocol,
    Role,
    Scheduler,
    Service,
    Site,
    SiteRole,
    Spec,
)
from herd.spec.nfs import DRBD_DEADTIME_MAX_MS, DRBD_LIMITS, parse_nfs
from herd.spec.reader import Reader, ipv4_text, key_lines, network_text
from herd.spec.site import parse_site

__all__ = ["CLUSTER_NAME_MAX", "HEARTBEAT_LIMIT", "LEASE_INTERVALS", "Check", "CheckKind", "Database", "Debian",
           "Failback", "Forwarding", "Image", "Membership", "Network", "Nfs", "Node", "Protocol", "Role", "Scheduler",
           "Service", "Site", "SiteRole", "Spec", "SpecError", "heartbeat_bound", "key_lines", "load", "parse",
           "valid_release"]


class SpecError(Exception):
    """Bad input, with where it is and what is wrong. The CLI prints it and exits 2."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# All matched with fullmatch(): `$` also matches before a final newline, and "web1\n" is no host name.
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
# network.domain, written into /etc/hosts, /etc/resolv.conf and idmapd.conf: dot-separated labels of letters,
# digits and '-' (no '_', unlike herd.spec.site's names of zones and keys), each 1-63 long, 253 in all.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*")

# Names overlay/common/etc/hosts.j2 gives addresses of their own (loopback, the VIP).
RESERVED_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback", "ip6-allnodes", "ip6-allrouters", "vip"})
HOST_NAME_MAX = 64  # Linux's longest host name (sethostname(2))
# The host names the overlay makes of the cluster's name: every image's /etc/hostname (`{cluster}-{role}`,
# overlay/common/etc/hostname.j2) and, with two nfs nodes, the host name rpc.nfsd starts under
# (`herd-{cluster}-nfs`, overlay/nfs/etc/systemd/system/nfs-server.service.d/herd.conf.j2).
CLUSTER_HOST_NAMES = (*(f"{{cluster}}-{role.value}" for role in Role), "herd-{cluster}-nfs")
CLUSTER_NAME_MAX = HOST_NAME_MAX - max(len(form.format(cluster="")) for form in CLUSTER_HOST_NAMES)

# IPVS takes the persistence timeout in seconds but keeps it in kernel ticks, an unsigned 32-bit number
# (seconds x HZ): this much fits for any HZ up to 1000 (Debian's kernels have 250). About 49 days.
PERSISTENCE_MAX = (2**32 - 1) // 1000
LEASE_INTERVALS = 2  # the VIP and storage leases (deadtime - 2 x interval) must last this many intervals


def valid_release(release: str) -> bool:
    return bool(_RELEASE.fullmatch(release))


def _free_port(start: int, taken: set[int]) -> int:
    """A port to suggest: the first from start on that nothing in taken has."""
    return next((port for port in range(start, 65536) if port not in taken), start)


def parse(text: str, file: str = "<spec>") -> Spec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"{file}: not valid TOML: {exc}"]) from None
    r = Reader(file, text)
    r.table(data, "", {"cluster", "debian", "network", "membership", "service", "node", "access", "nfs",
                       "database", "site", "image"})

    cluster = r.table(r.get(data, "", "cluster", dict, {}, required=True) or {}, "cluster", {"name", "release"})
    name = r.get(cluster, "cluster", "name", str, "", required=True) or ""
    if name and not _NAME.fullmatch(name):
        r.fail("cluster.name", f"{name!r} must be lower-case letters, digits and '-' (a host name)")
    elif len(name) > CLUSTER_NAME_MAX:
        longest = max(CLUSTER_HOST_NAMES, key=len).format(cluster=name)
        r.fail("cluster.name", f"{name!r} is {len(name)} characters; the nodes' host names are made of it "
               f"({longest!r} is {len(longest)}, over Linux's {HOST_NAME_MAX}): use at most {CLUSTER_NAME_MAX}")
    release = r.value(cluster, "cluster", "release", str, "0.1.0")
    if not valid_release(release):
        r.fail("cluster.release", f"{release!r} must be letters, digits and . _ + - (it names files)")

    deb = r.table(r.get(data, "", "debian", dict, {}) or {}, "debian", {"suite", "arch", "mirror"})
    debian = Debian(
        suite=r.get(deb, "debian", "suite", str, "bookworm") or "bookworm",
        arch=r.get(deb, "debian", "arch", str, "amd64") or "amd64",
        mirror=r.get(deb, "debian", "mirror", str, Debian.mirror) or Debian.mirror,
    )
    if debian.arch != "amd64":
        r.fail("debian.arch", f"{debian.arch!r} is not supported; herd builds amd64 images")
    # Written into the images' sources.list and handed to debootstrap: one URL, one word.
    if not re.fullmatch(r"(https?|file)://[\x21-\x7e]+", debian.mirror):
        r.fail("debian.mirror", f"{debian.mirror!r} must be an http://, https:// or file:// URL")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", debian.suite):
        r.fail("debian.suite", f"{debian.suite!r} is not a Debian suite name like bookworm")

    image = _image(r, r.get(data, "", "image", dict, {}) or {})
    network = _network(r, r.get(data, "", "network", dict, {}, required=True) or {})
    mem = r.table(r.get(data, "", "membership", dict, {}) or {}, "membership",
                  {"port", "interval_ms", "deadtime_ms", "metrics_port", "metrics_allow"})
    allow_raw = r.get(mem, "membership", "metrics_allow", list, None)
    allow = [r.convert(f"membership.metrics_allow[{i}]", v, network_text, "a network (\"192.168.50.0/24\") or "
                       "address in quotes") for i, v in enumerate(allow_raw or [])]
    membership = Membership(
        port=r.value(mem, "membership", "port", int, 694),
        interval_ms=r.value(mem, "membership", "interval_ms", int, 200),
        deadtime_ms=r.value(mem, "membership", "deadtime_ms", int, 1000),
        metrics_port=r.value(mem, "membership", "metrics_port", int, 9694),
        metrics_allow=tuple(a for a in allow if a is not None) if allow_raw is not None else (network.subnet,),
    )
    if allow_raw == []:
        r.fail("membership.metrics_allow", "[] lets nobody in; to turn the endpoint off, set metrics_port = 0 "
               "(left out, the allowed network is network.subnet)")
    if not 1 <= membership.port <= 65535:
        r.fail("membership.port", f"{membership.port} is not a port number (1-65535)")
    metrics_ok = 0 <= membership.metrics_port <= 65535 and membership.metrics_port != membership.port
    if not 0 <= membership.metrics_port <= 65535:
        r.fail("membership.metrics_port", f"{membership.metrics_port} is not a port number (1-65535, or 0 to turn "
               "it off)")
    elif not metrics_ok:
        r.fail("membership.metrics_port", f"{membership.metrics_port} is membership.port, herdd's heartbeats; use "
               f"another, such as {_free_port(9694, set(TAKEN_TCP) | {membership.port})} (0 turns it off)")
    if membership.interval_ms < 10:
        r.fail("membership.interval_ms", "must be at least 10")
    least = (LEASE_INTERVALS + 2) * membership.interval_ms
    if membership.deadtime_ms < least:
        # A VIP holder's lease, and the DRBD primary's, is deadtime - 2 x interval (herd.daemon.election,
        # storage): it must span a few heartbeats, or a single late one drops the VIP.
        r.fail("membership.deadtime_ms", f"{membership.deadtime_ms} must be at least {LEASE_INTERVALS + 2} x "
               f"interval_ms ({least}): the VIP's lease, deadtime - 2 x interval, must last {LEASE_INTERVALS} "
               "intervals, or one late heartbeat drops the VIP")

    services = _services(r, r.get(data, "", "service", list, []) or [])
    nodes = _nodes(r, r.get(data, "", "node", list, []) or [], network)

    access = r.table(r.get(data, "", "access", dict, {}) or {}, "access", {"ssh_keys"})
    keys = r.get(access, "access", "ssh_keys", list, []) or []
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", key) or "\n" in key:
            r.fail(f"access.ssh_keys[{i}]", "is not an OpenSSH public key line (`ssh-ed25519 AAAA… comment`)")

    nfs_data = r.get(data, "", "nfs", dict, {}) or {}
    nfs = parse_nfs(r, nfs_data, network, nodes)
    # nfs.port is DRBD's link, which only two nfs nodes have (herd.res names it only then).
    replicated = sum(n.role == Role.NFS for n in nodes) == 2
    if replicated and membership.deadtime_ms > DRBD_DEADTIME_MAX_MS:
        r.fail("membership.deadtime_ms", f"{membership.deadtime_ms} is too long for DRBD between the two nfs nodes "
               f"(its ping-timeout follows the deadtime and may be at most {DRBD_LIMITS['ping_timeout'] / 10:g} s): "
               f"use at most {DRBD_DEADTIME_MAX_MS}")
    metrics = {membership.metrics_port} if metrics_ok and membership.metrics_port else set()
    on_nfs = {22: "SSH", 111: "rpcbind", 2049: "NFS"}
    if replicated and nfs.port in on_nfs:
        r.fail("nfs.port", f"{nfs.port} is taken on the nfs nodes ({on_nfs[nfs.port]}); use another, such as "
               f"{_free_port(7789, set(on_nfs) | metrics)}")
    elif replicated and nfs.port in metrics and "port" not in nfs_data:
        # the user moved metrics_port onto DRBD's default port: that is the key to change
        r.fail("membership.metrics_port", f"{nfs.port} is nfs.port's default, DRBD's link between the two nfs "
               f"nodes; use another, such as {_free_port(9694, set(TAKEN_TCP) | {nfs.port, membership.port})} "
               "(0 turns it off), or set nfs.port to another")
    elif replicated and nfs.port in metrics:
        r.fail("nfs.port", f"{nfs.port} is also membership.metrics_port, herdd's metrics on every node; use "
               f"another, such as {_free_port(7789, set(on_nfs) | metrics)}")

    # (metrics_port against nfs.port is said just above.)
    taken = {**TAKEN_TCP, **{svc.port: f"service {svc.name!r}" for svc in services if svc.protocol == Protocol.TCP}}
    if membership.metrics_port in taken:
        free = _free_port(9694, set(taken) | {membership.port} | ({nfs.port} if replicated else set()))
        given = "" if "metrics_port" in mem else " (metrics_port's default)"
        r.fail("membership.metrics_port", f"{membership.metrics_port}{given} is taken by "
               f"{taken[membership.metrics_port]} on the nodes; use another, such as {free} (0 turns it off)")

    databases = _databases(r, r.get(data, "", "database", list, []) or [])
    site_data = r.get(data, "", "site", dict)
    site = parse_site(r, site_data, network, services) if site_data is not None else None

    if r.problems:
        raise SpecError(r.problems)
    return Spec(name=name, release=release, debian=debian, network=network, membership=membership,
                services=tuple(services), nodes=tuple(nodes), ssh_keys=tuple(keys), source=text, nfs=nfs,
                databases=tuple(databases), site=site, image=image)


MiB = 2**20
GiB = 2**30
IMAGE_SIZE_MAX = 64 * GiB  # sparse, but hashed and compressed whole at every build
_SIZE = re.compile(r"([1-9][0-9]{0,6}|0)\s*(MiB|GiB)")


def _image(r: Reader, data: Mapping[str, Any]) -> Image:
    r.table(data, "image", {"min_size"})
    raw = r.get(data, "image", "min_size", str)
    if raw is None:
        return Image()
    size = _SIZE.fullmatch(raw.strip())
    if size is None:
        r.fail("image.min_size", f"{raw!r} is not a size: write whole MiB or GiB, such as \"1800MiB\" or \"4GiB\" "
               "(\"0MiB\": as small as the tree allows)")
        return Image()
    value = int(size.group(1)) * (GiB if size.group(2) == "GiB" else MiB)
    if value > IMAGE_SIZE_MAX:
        r.fail("image.min_size", f"{raw!r} is over {IMAGE_SIZE_MAX // GiB} GiB; the root grows to fill the stick at "
               "first boot anyway: use a smaller size")
        return Image()
    return Image(min_size=value)


# TCP ports the images' own servers listen on: herdd's metrics endpoint must not be one of them.
TAKEN_TCP = {22: "SSH", 80: "Apache", 111: "rpcbind", 2049: "NFS", 3306: "MariaDB", 4444: "Galera's state transfer",
             4567: "Galera", 4568: "Galera's incremental state transfer"}

_SQL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# MariaDB's own schemas: the app user gets ALL on `name`.*, which on one of these makes it the server's superuser
# (any SQL injection in a page could then grant itself anything).
RESERVED_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


def _databases(r: Reader, items: list[Any]) -> list[Database]:
    out: list[Database] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        p = f"database[{i}]"
        if not isinstance(item, dict):
            r.fail(p, "must be a table ([[database]])")
            continue
        r.table(item, p, {"name", "user"})
        name = r.get(item, p, "name", str, required=True)
        user = r.get(item, p, "user", str, name)
        for key, value in (("name", name), ("user", user)):
            if value is not None and not _SQL_NAME.fullmatch(value):
                r.fail(f"{p}.{key}", f"{value!r} must be lower-case letters, digits and _ (at most 32)")
        if name in RESERVED_DATABASES:
            r.fail(f"{p}.name", f"{name!r} is MariaDB's own schema (the app user would get ALL on it, and so "
                   "the whole server): use a name of the site's own, like \"site\"")
            name = None
        if name is not None and name in seen:
            r.fail(f"{p}.name", f"{name!r} is already database[{seen[name]}]")
        if name is not None and user is not None:
            seen.setdefault(name, i)
            out.append(Database(name, user))
    return out


def _network(r: Reader, data: Mapping[str, Any]) -> Network:
    p = "network"
    r.table(data, p, {"subnet", "gateway", "dns", "vip", "domain", "preempt"})
    subnet_raw = r.get(data, p, "subnet", str, required=True)
    subnet = r.convert(f"{p}.subnet", subnet_raw, lambda v: ipaddress.IPv4Network(v, strict=False),
                       "an IPv4 CIDR such as 192.168.50.0/24")
    if subnet is not None:
        try:
            ipaddress.IPv4Network(subnet_raw, strict=True)
        except ValueError:
            r.fail(f"{p}.subnet", f"{subnet_raw!r} has host bits set; the network is {subnet}, write that")
            subnet = None
    if subnet is not None and not 8 <= subnet.prefixlen <= 30:
        r.fail(f"{p}.subnet", f"{subnet} must be a LAN of /8 to /30 (the nodes, the VIP and a gateway need room)")
        subnet = None
    subnet = subnet or ipaddress.IPv4Network("0.0.0.0/0")  # unknown: the checks below that need it are skipped

    def address(key: str, value: Any) -> ipaddress.IPv4Address | None:
        addr = r.convert(key, value, ipaddress.IPv4Address, "an IPv4 address")
        if addr is not None and subnet.prefixlen and addr not in subnet:
            r.fail(key, f"{addr} is outside network.subnet {subnet}; use an address inside it")
        elif addr is not None and subnet.prefixlen and addr in (subnet.network_address, subnet.broadcast_address):
            r.fail(key, f"{addr} is the subnet's network or broadcast address")
        return addr

    gw_raw = r.get(data, p, "gateway", str)
    gateway = address(f"{p}.gateway", gw_raw) if gw_raw is not None else None
    dns_raw = r.get(data, p, "dns", list, []) or []
    # Only strings: ipaddress takes an integer too, and dns = [1] would be 0.0.0.1.
    dns = [r.convert(f"{p}.dns[{i}]", v, ipv4_text, "an IPv4 address in quotes") for i, v in enumerate(dns_raw)]
    vip = address(f"{p}.vip", r.get(data, p, "vip", str, required=True))
    if vip is not None and vip == gateway:
        r.fail(f"{p}.vip", f"{vip} is the gateway (network.gateway); the VIP must be an address of its own")
    domain = r.value(data, p, "domain", str, "herd.lan")
    if not _DOMAIN.fullmatch(domain):
        r.fail(f"{p}.domain", f"{domain!r} is not a DNS domain name: use dot-separated labels of letters, digits "
               "and '-' (each at most 63, 253 in all), like herd.lan")
    preempt = r.get(data, p, "preempt", bool, False) or False
    return Network(subnet=subnet, gateway=gateway, dns=tuple(d for d in dns if d is not None), preempt=preempt,
                   vip=vip or ipaddress.IPv4Address(0), domain=domain)


def _services(r: Reader, items: list[Any]) -> list[Service]:
    services: list[Service] = []
    seen: dict[tuple[str, int], str] = {}
    names: dict[str, int] = {}
    for i, item in enumerate(items):
        p = f"service[{i}]"
        if not isinstance(item, dict):
            r.fail(p, "must be a table ([[service]])")
            continue
        r.table(item, p, {"name", "port", "protocol", "scheduler", "forwarding", "persistence", "check"})
        name = r.get(item, p, "name", str, f"service{i}") or f"service{i}"
        # Services are told apart by name in herdctl status, the metrics' labels and the site's probes.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
            r.fail(f"{p}.name", f"{name!r} must be letters, digits and . _ - (at most 63)")
        elif name in names:
            r.fail(f"{p}.name", f"{name!r} is already service[{names[name]}]; give each service its own name")
        names.setdefault(name, i)
        port = r.get(item, p, "port", int, required=True)
        if port is not None and not 1 <= port <= 65535:
            r.fail(f"{p}.port", f"{port} is not a port number (1-65535)")
            port = None
        protocol = r.enum(item, p, "protocol", Protocol, Protocol.TCP)
        if port is not None and (protocol.value, port) in seen:
            r.fail(f"{p}.port", f"{protocol}/{port} is already used by service {seen[(protocol.value, port)]!r}")
        if port is not None:
            seen[(protocol.value, port)] = name
        persistence = r.value(item, p, "persistence", int, 0)
        if not 0 <= persistence <= PERSISTENCE_MAX:
            r.fail(f"{p}.persistence", f"{persistence} must be 0 (off) or a number of seconds up to "
                   f"{PERSISTENCE_MAX} (IPVS keeps it in 32 bits of kernel ticks)")
        ck = r.get(item, p, "check", dict, {}) or {}
        cp = f"{p}.check"
        r.table(ck, cp, {"type", "path", "expect", "status", "interval", "timeout", "rise", "fall"})
        check = Check(
            kind=r.enum(ck, cp, "type", CheckKind, CheckKind.HTTP if protocol == Protocol.TCP else CheckKind.TCP),
            path=r.value(ck, cp, "path", str, "/"),
            expect=r.value(ck, cp, "expect", str, ""),
            status=r.value(ck, cp, "status", int, 200),
            interval=r.value(ck, cp, "interval", float, 2.0),
            timeout=r.value(ck, cp, "timeout", float, 1.0),
            rise=r.value(ck, cp, "rise", int, 2),
            fall=r.value(ck, cp, "fall", int, 2),
        )
        if not re.fullmatch(r"/[\x21-\x7e]*", check.path):  # it goes into the request line as it is
            r.fail(f"{cp}.path", f"{check.path!r} must start with '/' and have no spaces or control characters "
                   "(%-encode them)")
        if protocol == Protocol.UDP and "type" not in ck:
            r.fail(f"{cp}.type", "a UDP service has no check of its own kind: set type = \"tcp\" (or \"http\") "
                   "if its servers also answer on TCP at that port, as DNS servers do")
        if not 100 <= check.status <= 599:
            r.fail(f"{cp}.status", f"{check.status} is not an HTTP status code (100-599)")
        for key in ("interval", "timeout"):
            if getattr(check, key) <= 0:
                r.fail(f"{cp}.{key}", "must be a positive number of seconds")
        if 0 < check.interval <= check.timeout:
            r.fail(f"{cp}.timeout", "must be shorter than check.interval")
        for key in ("rise", "fall"):
            if getattr(check, key) < 1:
                r.fail(f"{cp}.{key}", "must be at least 1")
        services.append(Service(name=name, port=port or 0, protocol=protocol,
                                scheduler=r.enum(item, p, "scheduler", Scheduler, Scheduler.WLC),
                                forwarding=r.enum(item, p, "forwarding", Forwarding, Forwarding.DR),
                                persistence=persistence, check=check))
    return services


HEARTBEAT_LIMIT = 8192  # herd.daemon.wire.MAX_SIZE
HEALTH_ROOM = 768  # the health sample, role and storage fields included (herd.daemon.health, roles, galera, drbd)


def heartbeat_bound(names: list[str]) -> int:
    """The largest heartbeat these nodes can send: header and HMAC, health, every node's drain register entry
    (once each was drained; `herd.daemon.membership`), the list of whom the sender hears, and the generation
    it has seen from each."""
    longest = max(map(len, names), default=0)
    admin = sum(len(f'"{n}":[false,{2**53},""],') + longest for n in names)
    hears = sum(len(f'"{n}",') for n in names)
    seen = sum(len(f'"{n}":{2**53},') for n in names)  # the generation heard from each (herd.daemon.wire)
    return 140 + longest + HEALTH_ROOM + admin + hears + seen


def _nodes(r: Reader, items: list[Any], network: Network) -> list[Node]:
    nodes: list[Node] = []
    names: dict[str, int] = {}
    addresses: dict[ipaddress.IPv4Address, int] = {}
    macs: dict[str, int] = {}
    roles_seen: set[Role] = set()
    role_unknown = False  # a node whose role is missing or misspelt may be the director
    for i, item in enumerate(items):
        p = f"node[{i}]"
        if not isinstance(item, dict):
            r.fail(p, "must be a table ([[node]])")
            continue
        r.table(item, p, {"name", "role", "address", "mac", "priority", "weight"})
        name = r.get(item, p, "name", str, "", required=True) or ""
        if name and not _NAME.fullmatch(name):
            r.fail(f"{p}.name", f"{name!r} must be a host name: lower-case letters, digits and '-'")
        elif name in RESERVED_NAMES:
            r.fail(f"{p}.name", f"{name!r} is a name every node's /etc/hosts already gives another address; "
                   "use another")
        if name and name in names:
            r.fail(f"{p}.name", f"{name!r} is already the name of node[{names[name]}]; names must be unique")
        names.setdefault(name, i)

        role_raw = r.get(item, p, "role", str, "", required=True) or ""
        role: Role | None = None
        if role_raw:
            try:
                role = Role(role_raw)
            except ValueError:
                r.fail(f"{p}.role", f"{role_raw!r} is not a role; use one of: {', '.join(x.value for x in Role)}")
        if role is None:
            role_unknown = True
        else:
            roles_seen.add(role)

        addr = r.convert(f"{p}.address", r.get(item, p, "address", str, required=True),
                         ipaddress.IPv4Address, "an IPv4 address")
        if addr is not None:
            if network.subnet.prefixlen and addr not in network.subnet:
                r.fail(f"{p}.address", f"{addr} is outside network.subnet {network.subnet}; "
                       "use an address inside it")
            elif addr in (network.subnet.network_address, network.subnet.broadcast_address):
                r.fail(f"{p}.address", f"{addr} is the subnet's network or broadcast address")
            if addr == network.vip:
                r.fail(f"{p}.address", f"{addr} is the VIP (network.vip); a node needs an address of its own")
            if addr == network.gateway:
                r.fail(f"{p}.address", f"{addr} is the gateway (network.gateway)")
            if addr in addresses:
                r.fail(f"{p}.address", f"{addr} is already the address of node[{addresses[addr]}]")
            addresses.setdefault(addr, i)

        mac = r.get(item, p, "mac", str)
        if mac is not None:
            mac = mac.lower().replace("-", ":")
            if not _MAC.fullmatch(mac):
                r.fail(f"{p}.mac", f"{item['mac']!r} is not a MAC address like 52:54:00:12:34:56")
            elif mac in macs:
                r.fail(f"{p}.mac", f"{mac} is already the MAC of node[{macs[mac]}]")
            macs.setdefault(mac, i)
        priority = r.get(item, p, "priority", int, 100)
        weight = r.get(item, p, "weight", int, 1)
        if weight is not None and not 0 <= weight <= 65535:
            r.fail(f"{p}.weight", "must be between 0 and 65535")
        if role is not None and addr is not None:
            nodes.append(Node(name=name, role=role, address=addr, mac=mac,
                              priority=100 if priority is None else priority,
                              weight=1 if weight is None else weight))
    bound = heartbeat_bound([n for n in names if n])
    if bound > HEARTBEAT_LIMIT:
        r.fail("node", f"{len(items)} nodes with names like these make heartbeats of up to {bound} bytes, over "
               f"herdd's limit of {HEARTBEAT_LIMIT}: use shorter node names (or fewer nodes per cluster)")
    if not items:
        r.fail("node", "no nodes; add [[node]] tables (at least one with role = \"director\")")
    elif not role_unknown and Role.DIRECTOR not in roles_seen:
        r.fail("node", "no node has role = \"director\"; a cluster needs at least one to hold the VIP")
    return nodes


def load(path: Path) -> Spec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read the spec: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise SpecError([f"{path}: not UTF-8 text"]) from None
    # Some editors (Notepad) start UTF-8 files with a byte-order mark, which TOML does not allow.
    return parse(text.removeprefix("\ufeff"), str(path))

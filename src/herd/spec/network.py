"""The spec's network sections: [network] (the LAN, the VIP, the domain), [membership] (herdd's heartbeats and its
metrics endpoint) and [[service]] (what the directors balance, and how each is checked).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from herd.spec.model import Check, CheckKind, Forwarding, Membership, Network, Protocol, Scheduler, Service
from herd.spec.reader import Reader, ipv4_text, network_text

# network.domain, written into /etc/hosts, /etc/resolv.conf and idmapd.conf: dot-separated labels of letters,
# digits and '-' (no '_', unlike herd.spec.site's names of zones and keys), each 1-63 long, 253 in all.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*")

def parse_network(r: Reader, data: Mapping[str, Any]) -> Network:
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


LEASE_INTERVALS = 2  # the VIP and storage leases (deadtime - 2 x interval) must last this many intervals
# TCP ports the images' own servers listen on: herdd's metrics endpoint must not be one of them.
TAKEN_TCP = {22: "SSH", 80: "Apache", 111: "rpcbind", 2049: "NFS", 3306: "MariaDB", 4444: "Galera's state transfer",
             4567: "Galera", 4568: "Galera's incremental state transfer"}


def free_port(start: int, taken: set[int]) -> int:
    """A port to suggest: the first from start on that nothing in taken has."""
    return next((port for port in range(start, 65536) if port not in taken), start)


def parse_membership(r: Reader, data: Mapping[str, Any], network: Network) -> Membership:
    mem = r.table(data, "membership", {"port", "interval_ms", "deadtime_ms", "metrics_port", "metrics_allow"})
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
    if not 0 <= membership.metrics_port <= 65535:
        r.fail("membership.metrics_port", f"{membership.metrics_port} is not a port number (1-65535, or 0 to turn "
               "it off)")
    elif not metrics_port_ok(membership):
        r.fail("membership.metrics_port", f"{membership.metrics_port} is membership.port, herdd's heartbeats; use "
               f"another, such as {free_port(9694, set(TAKEN_TCP) | {membership.port})} (0 turns it off)")
    if membership.interval_ms < 10:
        r.fail("membership.interval_ms", "must be at least 10")
    least = (LEASE_INTERVALS + 2) * membership.interval_ms
    if membership.deadtime_ms < least:
        # A VIP holder's lease, and the DRBD primary's, is deadtime - 2 x interval (herd.daemon.election,
        # storage): it must span a few heartbeats, or a single late one drops the VIP.
        r.fail("membership.deadtime_ms", f"{membership.deadtime_ms} must be at least {LEASE_INTERVALS + 2} x "
               f"interval_ms ({least}): the VIP's lease, deadtime - 2 x interval, must last {LEASE_INTERVALS} "
               "intervals, or one late heartbeat drops the VIP")
    return membership


def metrics_port_ok(membership: Membership) -> bool:
    """metrics_port is a port number (or 0) and not the heartbeats' port (parse_membership says which not)."""
    return 0 <= membership.metrics_port <= 65535 and membership.metrics_port != membership.port


# IPVS takes the persistence timeout in seconds but keeps it in kernel ticks, an unsigned 32-bit number
# (seconds x HZ): this much fits for any HZ up to 1000 (Debian's kernels have 250). About 49 days.
PERSISTENCE_MAX = (2**32 - 1) // 1000


def parse_services(r: Reader, items: list[Any]) -> list[Service]:
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

"""The spec's [[node]] tables: each box's name, role and address (and MAC, if it is known), and the bound on how
large the node list may make herdd's heartbeats.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from herd.spec.model import Network, Node, Role
from herd.spec.reader import HOST_NAME, Reader

# Matched with fullmatch(): `$` also matches before a final newline.
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# Names overlay/common/etc/hosts.j2 gives addresses of their own (loopback, the VIP).
RESERVED_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback", "ip6-allnodes", "ip6-allrouters", "vip"})

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


def parse_nodes(r: Reader, items: list[Any], network: Network) -> list[Node]:
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
        if name and not HOST_NAME.fullmatch(name):
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

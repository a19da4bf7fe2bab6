"""What each role's host firewall lets in (nftables: overlay/common/etc/nftables.conf.j2 renders it), from the
spec: every port only from the nodes that use it, the site's services from anywhere, the rest dropped.

Images are per role, not per node, so a rule that names "the peer" names every node of the role (itself too,
which never sends to itself over the LAN). Pure: the template writes out what `allowed` returns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from herd.spec import Protocol, Role, Spec

IPVS_SYNC_PORT = 8848  # the kernel's IPVS connection sync (multicast 224.0.0.81), between the directors
NFS_PORT = 2049  # NFSv4 only (web nodes mount with vers=4.2): no rpcbind, mountd or statd to let in
MARIADB_PORT = 3306
GALERA_PORT = 4567  # group communication: db nodes and the garbd arbitrator on the directors
GALERA_TRANSFER_PORTS = (4568, 4444)  # incremental and full state transfers, between db nodes only
SSH_PORT = 22

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Allow:
    why: str  # the rule's comment in the ruleset, and what `nft list ruleset` shows
    protocol: str  # "tcp" or "udp"
    ports: tuple[int, ...]
    sources: tuple[Network, ...] = ()  # () = from anywhere
    to: ipaddress.IPv4Address | None = None  # only to this address (the VIP); None: to any of the node's

    @property
    def ipv4(self) -> tuple[str, ...]:
        return _written(s for s in self.sources if s.version == 4)

    @property
    def ipv6(self) -> tuple[str, ...]:
        return _written(s for s in self.sources if s.version == 6)


def _written(networks: Iterable[Network]) -> tuple[str, ...]:
    """As nft takes them: a host as its address, a network with its prefix; each once, in the spec's order."""
    out: dict[str, None] = {}
    for net in networks:
        out[str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)] = None
    return tuple(out)


def _hosts(spec: Spec, *roles: Role) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n.address) for n in spec.nodes if n.role in roles)


def garbd(spec: Spec) -> bool:
    """The directors run the Galera arbitrator (herd.daemon.rolelink): an even number of db nodes, two or more."""
    count = len(spec.nodes_of(Role.DB))
    return count > 1 and count % 2 == 0


def allowed(spec: Spec, role: Role) -> list[Allow]:
    everyone = tuple(ipaddress.ip_network(n.address) for n in spec.nodes)
    rules = [
        Allow("herd heartbeats", "udp", (spec.membership.port,), everyone),
        Allow("ssh", "tcp", (SSH_PORT,), (spec.network.subnet,)),
    ]
    if spec.membership.metrics_port:
        rules.append(Allow("herd metrics", "tcp", (spec.membership.metrics_port,),
                           spec.membership.metrics_allow or (spec.network.subnet,)))
    services = {p: tuple(sorted({s.port for s in spec.services if s.protocol == p})) for p in Protocol}
    if role == Role.DIRECTOR:
        for protocol, ports in services.items():
            if ports:
                rules.append(Allow("the site's services, on the VIP", protocol.value, ports, to=spec.network.vip))
        rules.append(Allow("IPVS connection sync", "udp", (IPVS_SYNC_PORT,), _hosts(spec, Role.DIRECTOR)))
        if garbd(spec):
            rules.append(Allow("Galera, to garbd", "tcp", (GALERA_PORT,), _hosts(spec, Role.DB)))
    elif role == Role.WEB:
        # Through the VIP (LVS-DR: the client's packets reach the web node addressed to the VIP), and to the
        # node's own address: the directors' health checks, and anyone the site lets in anyway.
        for protocol, ports in services.items():
            if ports:
                rules.append(Allow("the site's services", protocol.value, ports))
    elif role == Role.NFS:
        rules.append(Allow("NFS, to the web nodes", "tcp", (NFS_PORT,), _hosts(spec, Role.WEB)))
        if spec.replicated_storage:
            rules.append(Allow("DRBD, between the nfs nodes", "tcp", (spec.nfs.port,), _hosts(spec, Role.NFS)))
    elif role == Role.DB:
        rules.append(Allow("MariaDB, to the web nodes", "tcp", (MARIADB_PORT,), _hosts(spec, Role.WEB)))
        if len(spec.nodes_of(Role.DB)) > 1:
            members = _hosts(spec, Role.DB) + (_hosts(spec, Role.DIRECTOR) if garbd(spec) else ())
            rules.append(Allow("Galera", "tcp", (GALERA_PORT,), members))
            rules.append(Allow("Galera's state transfers", "tcp", GALERA_TRANSFER_PORTS, _hosts(spec, Role.DB)))
    return rules

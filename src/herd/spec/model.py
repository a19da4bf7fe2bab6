"""The spec's model: every section of `cluster.toml` as a frozen, typed dataclass, with enums for its choices.

Nothing here reads TOML or checks anything: the parsers build these only from values they have validated, so
both programs can take a Spec as it is.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    DIRECTOR = "director"
    WEB = "web"
    NFS = "nfs"
    DB = "db"


class Scheduler(enum.StrEnum):
    RR = "rr"
    WRR = "wrr"
    LC = "lc"
    WLC = "wlc"
    SH = "sh"
    MH = "mh"


class Forwarding(enum.StrEnum):
    DR = "dr"
    NAT = "nat"


class Protocol(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"


class CheckKind(enum.StrEnum):
    HTTP = "http"
    TCP = "tcp"


class SiteRole(enum.StrEnum):
    MAIN = "main"
    BACKUP = "backup"


class Failback(enum.StrEnum):
    AUTO = "auto"      # back to the main site once it has been healthy for up_seconds
    MANUAL = "manual"  # only by `herdctl site failback`


DEBIAN_SECURITY = "http://security.debian.org/debian-security"


@dataclass(frozen=True)
class Debian:
    suite: str = "bookworm"
    arch: str = "amd64"
    mirror: str = "http://deb.debian.org/debian"  # the suite and <suite>-updates
    security: str | None = DEBIAN_SECURITY  # <suite>-security; None: built without it (the spec said so)


@dataclass(frozen=True)
class Image:
    min_size: int = 0  # bytes; 0: as small as the tree allows (its root still grows to fill the stick)


@dataclass(frozen=True)
class Network:
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    dns: tuple[ipaddress.IPv4Address, ...]
    vip: ipaddress.IPv4Address
    domain: str = "herd.lan"
    preempt: bool = False  # a recovered higher-priority director takes the VIP back


@dataclass(frozen=True)
class Membership:
    port: int = 694
    interval_ms: int = 200
    deadtime_ms: int = 1000
    metrics_port: int = 9694  # Prometheus text endpoint; 0 turns it off
    # Who may read it (besides the node itself); empty: network.subnet
    metrics_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True)
class Check:
    kind: CheckKind = CheckKind.HTTP
    path: str = "/"
    expect: str = ""
    status: int = 200
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 2


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    protocol: Protocol = Protocol.TCP
    scheduler: Scheduler = Scheduler.WLC
    forwarding: Forwarding = Forwarding.DR
    persistence: int = 0
    check: Check = field(default_factory=Check)


@dataclass(frozen=True)
class Node:
    name: str
    role: Role
    address: ipaddress.IPv4Address
    mac: str | None = None
    priority: int = 100
    weight: int = 1


@dataclass(frozen=True)
class Database:
    name: str
    user: str  # its password is derived from the cluster key (herd.secrets), never written in the spec


AUTO_DISK = "auto"


@dataclass(frozen=True)
class Nfs:
    """[nfs]: the shared docroot, and with two nfs nodes its replication (DRBD) and the NFS service address."""

    export: str = "/srv/herd/www"  # on the nfs node; every web node serves it as its docroot
    options: str = "rw,sync,no_subtree_check,root_squash"
    # Two nfs nodes: the address web nodes mount from, held by whichever is the DRBD primary (a one-node set-up
    # has none: web nodes mount from the node's own address).
    address: ipaddress.IPv4Address | None = None
    # Two nfs nodes: each one's DRBD backing disk, wholly given over to it; "auto" is the first disk that is not
    # the one the node booted from, or with none, the free space of its stick (a partition growroot makes).
    disk: str = AUTO_DISK
    port: int = 7789  # DRBD's replication link (TCP), between the two nfs nodes


@dataclass(frozen=True)
class Site:
    """Off-site failover through DNS: the backup site's VIP holder points the public names at the backup VIP
    when the main site has failed its checks for down_seconds (herd.daemon.site has the policy)."""

    name: str
    role: SiteRole
    names: tuple[str, ...]  # fully qualified, without the trailing dot
    zone: str
    server: ipaddress.IPv4Address  # the zone's authoritative server, which takes RFC 2136 updates
    port: int
    ttl: int
    key_name: str
    key_algorithm: str
    key_file: str  # the TSIG secret: bare base64, or tsig-keygen's `key {…}` clause; never in the spec
    main: tuple[ipaddress.IPv4Address, ...]  # the main site's public address(es): probed, and put back
    backup: ipaddress.IPv4Address  # what the names point at after a failover
    interval: float = 1.0  # seconds between probes of the main site
    down_seconds: float = 10.0
    up_seconds: float = 60.0
    failback: Failback = Failback.AUTO


@dataclass(frozen=True)
class Spec:
    name: str
    release: str
    debian: Debian
    network: Network
    membership: Membership
    services: tuple[Service, ...]
    nodes: tuple[Node, ...]
    ssh_keys: tuple[str, ...]
    source: str  # the TOML text as given: baked into images verbatim
    nfs: Nfs = field(default_factory=Nfs)
    databases: tuple[Database, ...] = ()
    site: Site | None = None  # [site]: off-site failover through DNS; absent, herdd never touches DNS
    image: Image = field(default_factory=Image)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @property
    def roles(self) -> tuple[Role, ...]:
        present = {n.role for n in self.nodes}
        return tuple(r for r in Role if r in present)

    def nodes_of(self, role: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    def node_by_mac(self, macs: set[str]) -> Node | None:
        wanted = {m.lower() for m in macs}
        return next((n for n in self.nodes if n.mac is not None and n.mac in wanted), None)

    def node_named(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    @property
    def replicated_storage(self) -> bool:
        """Two nfs nodes: the docroot lives on DRBD, served from nfs.address by the primary."""
        return len(self.nodes_of(Role.NFS)) == 2

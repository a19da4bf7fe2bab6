"""What a rollout reads of the cluster, and what it asks the glue to do."""

from __future__ import annotations

from dataclasses import dataclass

from herd.spec import Role


@dataclass(frozen=True)
class NodeView:
    name: str
    role: Role
    alive: bool
    release: str  # the release it runs
    boot: str = ""  # changes at every boot (the kernel's boot_id)
    staged: str = ""  # the release staged in its other slot, verified; "" for none
    check: bool = False  # its role check passes now (web answers, db Synced, nfs serving or standing by…)
    weight: int | None = None  # web: its weight in the VIP holder's IPVS table
    connections: int = 0  # web: connections the VIP holder still sends it


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[NodeView, ...]
    vip_holder: str | None = None
    nfs_primary: str | None = None
    galera_synced: tuple[str, ...] = ()  # db nodes Primary and Synced in a cluster of all of them
    drbd_uptodate: bool = False  # both nfs nodes' disks UpToDate

    def node(self, name: str) -> NodeView:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def of(self, role: Role) -> list[NodeView]:
        return [n for n in self.nodes if n.role == role]


@dataclass(frozen=True)
class Stage:
    node: str
    release: str


@dataclass(frozen=True)
class SetWeight:
    node: str
    weight: int


@dataclass(frozen=True)
class Reboot:
    node: str  # into the staged slot: its boot counting returns it to the old slot if the new one fails


@dataclass(frozen=True)
class SwitchNfs:
    to: str  # a planned DRBD switchover: this node becomes the NFS server


@dataclass(frozen=True)
class HandVip:
    to: str


Action = Stage | SetWeight | Reboot | SwitchNfs | HandVip

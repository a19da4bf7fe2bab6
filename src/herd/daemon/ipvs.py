"""The kernel's IPVS table, reconciled. `desired()` and `plan()` are pure; `IpvsTable` is the thin pyroute2
adapter. Only differences are applied and nothing is ever flushed, so established connections survive every
change: a failing real server is set to weight 0 (quiescent), not removed.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herd.spec import Forwarding, Protocol, Role, Spec

FWD = {Forwarding.NAT: 0, Forwarding.DR: 3}  # IP_VS_CONN_F_MASQ, IP_VS_CONN_F_DROUTE
FWD_NAMES = {v: k.value for k, v in FWD.items()}
PROTO = {Protocol.TCP: socket.IPPROTO_TCP, Protocol.UDP: socket.IPPROTO_UDP}
PERSISTENT = 0x1  # IP_VS_SVC_F_PERSISTENT

Key = tuple[int, str, int]  # (protocol number, address, port)


@dataclass(frozen=True)
class VService:
    protocol: int
    address: str
    port: int
    scheduler: str
    persistence: int  # seconds, 0 = off

    @property
    def key(self) -> Key:
        return (self.protocol, self.address, self.port)


@dataclass(frozen=True)
class VDest:
    address: str
    port: int
    weight: int
    forwarding: int


Table = dict[Key, tuple[VService, dict[str, VDest]]]


def desired(spec: Spec, weight_of: Callable[[str, str], int]) -> Table:
    """What the table should be: one virtual service per spec service on the VIP, the web nodes as real
    servers with the weight `weight_of(service, node)` gives (0 for failing or drained ones)."""
    table: Table = {}
    for service in spec.services:
        vs = VService(PROTO[service.protocol], str(spec.network.vip), service.port, service.scheduler.value,
                      service.persistence)
        dests = {str(n.address): VDest(str(n.address), service.port, weight_of(service.name, n.name),
                                       FWD[service.forwarding])
                 for n in spec.nodes_of(Role.WEB)}
        table[vs.key] = (vs, dests)
    return table


@dataclass(frozen=True)
class AddService:
    service: VService


@dataclass(frozen=True)
class EditService:
    service: VService


@dataclass(frozen=True)
class DelService:
    service: VService


@dataclass(frozen=True)
class AddDest:
    service: VService
    dest: VDest


@dataclass(frozen=True)
class EditDest:
    service: VService
    dest: VDest


@dataclass(frozen=True)
class DelDest:
    service: VService
    dest: VDest


Op = AddService | EditService | DelService | AddDest | EditDest | DelDest


def plan(want: Table, have: Table, vip: str) -> list[Op]:
    """The smallest list of changes from `have` to `want`. Services on other addresses are not ours."""
    ops: list[Op] = []
    for key, (vs, dests) in want.items():
        current = have.get(key)
        if current is None:
            ops.append(AddService(vs))
            ops += [AddDest(vs, d) for d in dests.values()]
            continue
        have_vs, have_dests = current
        if (have_vs.scheduler, have_vs.persistence) != (vs.scheduler, vs.persistence):
            ops.append(EditService(vs))
        for address, dest in dests.items():
            old = have_dests.get(address)
            if old is None:
                ops.append(AddDest(vs, dest))
            elif old != dest:
                ops.append(EditDest(vs, dest))
        ops += [DelDest(vs, d) for a, d in have_dests.items() if a not in dests]
    ops += [DelService(vs) for key, (vs, _) in have.items() if key not in want and vs.address == vip]
    return ops


class IpvsTable:
    """pyroute2's IPVS: read the table back, apply ops. Used on the netlink thread only."""

    def __init__(self) -> None:
        from pyroute2 import IPVS

        self.ipvs = IPVS()

    def close(self) -> None:
        self.ipvs.close()

    def read(self) -> Table:
        from pyroute2 import IPVSDest, IPVSService

        table: Table = {}
        for msg in self.ipvs.service("dump"):
            s = IPVSService.from_message(msg)
            if "addr" not in s or s.get("fwmark"):
                continue
            flags = s.get("flags", {})
            persistent = isinstance(flags, dict) and flags.get("flags", 0) & PERSISTENT
            vs = VService(int(s["protocol"]), str(s["addr"]), int(s["port"]), str(s.get("sched_name", "")),
                          int(s.get("timeout", 0)) if persistent else 0)
            dests = {}
            for dmsg in self.ipvs.dest("dump", service=IPVSService(addr=vs.address, port=vs.port,
                                                                   protocol=vs.protocol)):
                d = IPVSDest.from_message(dmsg)
                dests[str(d["addr"])] = VDest(str(d["addr"]), int(d["port"]), int(d["weight"]),
                                              int(d.get("fwd_method", 0)) & 0x7)
            table[vs.key] = (vs, dests)
        return table

    def _service(self, vs: VService, full: bool) -> Any:
        from pyroute2 import IPVSService

        if not full:
            return IPVSService(addr=vs.address, port=vs.port, protocol=vs.protocol)
        flags = {"flags": PERSISTENT if vs.persistence else 0, "mask": 0xFFFF}
        return IPVSService(addr=vs.address, port=vs.port, protocol=vs.protocol, sched_name=vs.scheduler,
                           flags=flags, timeout=vs.persistence)

    def apply(self, ops: list[Op]) -> None:
        from pyroute2 import IPVSDest

        for op in ops:
            match op:
                case AddService(vs):
                    self.ipvs.service("add", service=self._service(vs, True))
                case EditService(vs):
                    self.ipvs.service("set", service=self._service(vs, True))
                case DelService(vs):
                    self.ipvs.service("del", service=self._service(vs, False))
                case AddDest(vs, d) | EditDest(vs, d):
                    dest = IPVSDest(addr=d.address, port=d.port, weight=d.weight, fwd_method=d.forwarding)
                    self.ipvs.dest("add" if isinstance(op, AddDest) else "set", service=self._service(vs, False),
                                   dest=dest)
                case DelDest(vs, d):
                    self.ipvs.dest("del", service=self._service(vs, False), dest=IPVSDest(addr=d.address, port=d.port))


def sync_daemons(listing: str) -> set[str]:
    """Which connection sync daemons run, from `ipvsadm -L --daemon` ("master sync daemon (mcast=ens3,
    syncid=1)", "backup sync daemon …")."""
    return {m for m in ("master", "backup") if re.search(rf"^{m} sync daemon", listing, re.MULTILINE)}

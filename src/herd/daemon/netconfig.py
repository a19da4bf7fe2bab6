"""The node's network, reconciled: `plan(desired, actual)` (pure) lists only what differs, `apply()` carries it
out with pyroute2. Applying twice changes nothing; nothing that is already right is touched, and addresses
herdd did not ask for (the VIP a director holds, say) are left alone.

With two or more wired NICs they are bonded (active-backup, link monitored every 100 ms) so a pulled cable
or a dead port costs nothing; the bond takes the first NIC's MAC, the one listed in the spec.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOND = "bond0"


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: str = ""       # "" for a plain NIC, "bond", "veth", …
    up: bool = False
    master: int | None = None
    wired: bool = True   # an Ethernet NIC we may use (not lo, not a bridge, not wireless)


@dataclass(frozen=True)
class Actual:
    links: tuple[Link, ...]
    addresses: frozenset[tuple[str, str]]   # (link name, "a.b.c.d/prefix")
    gateway: str | None                     # current default route's gateway


@dataclass(frozen=True)
class Desired:
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address | None
    nics: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CreateBond:
    name: str


@dataclass(frozen=True)
class Enslave:
    nic: str
    bond: str


@dataclass(frozen=True)
class SetUp:
    name: str


@dataclass(frozen=True)
class AddAddress:
    name: str
    address: str


@dataclass(frozen=True)
class SetGateway:
    gateway: str


Op = CreateBond | Enslave | SetUp | AddAddress | SetGateway


def plan(desired: Desired, actual: Actual) -> list[Op]:
    links = {link.name: link for link in actual.links}
    ops: list[Op] = []
    nics = [n for n in desired.nics if n in links]
    if not nics:
        return ops
    if len(nics) >= 2:
        primary = BOND
        bond = links.get(BOND)
        if bond is None:
            ops.append(CreateBond(BOND))
        for nic in nics:
            if bond is None or links[nic].master != bond.index:
                ops.append(Enslave(nic, BOND))
        for nic in nics:
            if not links[nic].up:
                ops.append(SetUp(nic))
        if bond is None or not bond.up:
            ops.append(SetUp(BOND))
    else:
        primary = nics[0]
        if not links[primary].up:
            ops.append(SetUp(primary))
    if (primary, str(desired.address)) not in actual.addresses:
        ops.append(AddAddress(primary, str(desired.address)))
    if desired.gateway is not None and actual.gateway != str(desired.gateway):
        ops.append(SetGateway(str(desired.gateway)))
    return ops


def wired_nics(links: tuple[Link, ...]) -> tuple[str, ...]:
    """NICs to use, in a stable order (by name: the first is the one whose MAC the bond takes)."""
    return tuple(sorted(link.name for link in links if link.wired and link.kind in ("", "veth")))


# -- the pyroute2 side ----------------------------------------------------------------------------------------

def _is_wired(name: str, sys_class_net: Path = Path("/sys/class/net")) -> bool:
    base = sys_class_net / name
    if name == "lo" or (base / "wireless").exists() or (base / "bridge").exists():
        return False
    try:
        return (base / "type").read_text().strip() == "1"  # ARPHRD_ETHER
    except OSError:
        return False


def read_actual(ipr: Any) -> Actual:
    links = []
    for msg in ipr.get_links():
        name = msg.get_attr("IFLA_IFNAME")
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
        links.append(Link(name=name, index=msg["index"], kind=kind or "", up=bool(msg["flags"] & 1),
                          master=msg.get_attr("IFLA_MASTER"), wired=_is_wired(name)))
    by_index = {link.index: link.name for link in links}
    addresses = frozenset(
        (by_index.get(msg["index"], "?"), f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        for msg in ipr.get_addr(family=2))
    gateway = None
    for route in ipr.get_default_routes(family=2):
        gateway = route.get_attr("RTA_GATEWAY")
    return Actual(tuple(links), addresses, gateway)


def apply(ipr: Any, ops: list[Op]) -> None:
    def index(name: str) -> int:
        (found,) = ipr.link_lookup(ifname=name)
        return int(found)

    for op in ops:
        match op:
            case CreateBond(name):
                ipr.link("add", ifname=name, kind="bond", bond_mode=1, bond_miimon=100)
            case Enslave(nic, bond):
                ipr.link("set", index=index(nic), state="down")
                ipr.link("set", index=index(nic), master=index(bond))
            case SetUp(name):
                ipr.link("set", index=index(name), state="up")
            case AddAddress(name, address):
                iface = ipaddress.IPv4Interface(address)
                ipr.addr("add", index=index(name), address=str(iface.ip), prefixlen=iface.network.prefixlen)
            case SetGateway(gateway):
                ipr.route("replace", dst="0.0.0.0/0", gateway=gateway)


def reconcile(address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address | None) -> list[Op]:
    """Bring this network namespace's links to the desired state; returns what was done."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        actual = read_actual(ipr)
        ops = plan(Desired(address, gateway, wired_nics(actual.links)), actual)
        apply(ipr, ops)
    return ops


def write_resolv_conf(dns: list[str], domain: str, path: Path = Path("/etc/resolv.conf")) -> bool:
    text = f"search {domain}\n" + "".join(f"nameserver {d}\n" for d in dns)
    if path.is_file() and not path.is_symlink() and path.read_text() == text:
        return False
    tmp = path.with_name(".resolv.conf.herd-tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def bring_up_and_wait_link_local(nics: tuple[str, ...], timeout: float = 10.0) -> dict[str, int]:
    """Set the NICs up and wait until each has a usable (not tentative) IPv6 link-local address: claiming a
    slot happens before the node has an IPv4 address. Returns {nic: ifindex} for the ready ones."""
    import time

    from pyroute2 import IPRoute

    ready: dict[str, int] = {}
    with IPRoute() as ipr:
        indexes = {name: int(ipr.link_lookup(ifname=name)[0]) for name in nics}
        for index in indexes.values():
            ipr.link("set", index=index, state="up")
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(ready) < len(indexes):
            for msg in ipr.get_addr(family=10):
                address = msg.get_attr("IFA_ADDRESS") or ""
                flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
                if address.startswith("fe80:") and not flags & 0x40:  # IFA_F_TENTATIVE
                    for name, index in indexes.items():
                        if msg["index"] == index:
                            ready[name] = index
            time.sleep(0.1)
    return ready

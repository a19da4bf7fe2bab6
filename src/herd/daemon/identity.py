"""Who this node is: the spec node whose MAC one of our NICs carries. Pure apart from reading /sys."""

from __future__ import annotations

from pathlib import Path

from herd.spec import Node, Role, Spec


def local_macs(sys_class_net: Path = Path("/sys/class/net")) -> set[str]:
    macs = set()
    for iface in sys_class_net.iterdir() if sys_class_net.is_dir() else ():
        try:
            mac = (iface / "address").read_text().strip().lower()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            macs.add(mac)
    return macs


def identify(spec: Spec, role: Role, macs: set[str], forced: str | None = None) -> Node | None:
    """The node this is, or None when no NIC is listed in the spec (slot claiming comes with membership)."""
    if forced is not None:
        node = spec.node_named(forced)
        if node is None:
            raise LookupError(f"--node {forced}: no node of that name in the spec")
        return node
    node = spec.node_by_mac(macs)
    if node is not None and node.role != role:
        raise LookupError(f"this box's MAC belongs to {node.name}, a {node.role} node, but the image is {role}")
    return node

"""Reading a spec: the TOML text through every section's parser, in one pass that collects all the problems,
then the checks that span sections (ports shared between herdd, DRBD and the services; DRBD's timers).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from herd.spec.cluster import parse_access, parse_cluster, parse_databases, parse_debian, parse_image
from herd.spec.model import Protocol, Role, Spec
from herd.spec.network import TAKEN_TCP, free_port, metrics_port_ok, parse_membership, parse_network, parse_services
from herd.spec.nfs import DRBD_DEADTIME_MAX_MS, DRBD_LIMITS, parse_nfs
from herd.spec.nodes import parse_nodes
from herd.spec.reader import Reader
from herd.spec.site import parse_site

SECTIONS = {"cluster", "debian", "network", "membership", "service", "node", "access", "nfs", "database", "site",
            "image"}


class SpecError(Exception):
    """Bad input, with where it is and what is wrong. The CLI prints it and exits 2."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse(text: str, file: str = "<spec>") -> Spec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"{file}: not valid TOML: {exc}"]) from None
    r = Reader(file, text)
    r.table(data, "", SECTIONS)

    name, release = parse_cluster(r, r.get(data, "", "cluster", dict, {}, required=True) or {})
    debian = parse_debian(r, r.get(data, "", "debian", dict, {}) or {})
    image = parse_image(r, r.get(data, "", "image", dict, {}) or {})
    network = parse_network(r, r.get(data, "", "network", dict, {}, required=True) or {})
    mem = r.get(data, "", "membership", dict, {}) or {}
    membership = parse_membership(r, mem, network)
    services = parse_services(r, r.get(data, "", "service", list, []) or [])
    nodes = parse_nodes(r, r.get(data, "", "node", list, []) or [], network)
    keys = parse_access(r, r.get(data, "", "access", dict, {}) or {})

    nfs_data = r.get(data, "", "nfs", dict, {}) or {}
    nfs = parse_nfs(r, nfs_data, network, nodes)
    # nfs.port is DRBD's link, which only two nfs nodes have (herd.res names it only then).
    replicated = sum(n.role == Role.NFS for n in nodes) == 2
    if replicated and membership.deadtime_ms > DRBD_DEADTIME_MAX_MS:
        r.fail("membership.deadtime_ms", f"{membership.deadtime_ms} is too long for DRBD between the two nfs nodes "
               f"(its ping-timeout follows the deadtime and may be at most {DRBD_LIMITS['ping_timeout'] / 10:g} s): "
               f"use at most {DRBD_DEADTIME_MAX_MS}")
    metrics = {membership.metrics_port} if metrics_port_ok(membership) and membership.metrics_port else set()
    on_nfs = {22: "SSH", 111: "rpcbind", 2049: "NFS"}
    if replicated and nfs.port in on_nfs:
        r.fail("nfs.port", f"{nfs.port} is taken on the nfs nodes ({on_nfs[nfs.port]}); use another, such as "
               f"{free_port(7789, set(on_nfs) | metrics)}")
    elif replicated and nfs.port in metrics and "port" not in nfs_data:
        # the user moved metrics_port onto DRBD's default port: that is the key to change
        r.fail("membership.metrics_port", f"{nfs.port} is nfs.port's default, DRBD's link between the two nfs "
               f"nodes; use another, such as {free_port(9694, set(TAKEN_TCP) | {nfs.port, membership.port})} "
               "(0 turns it off), or set nfs.port to another")
    elif replicated and nfs.port in metrics:
        r.fail("nfs.port", f"{nfs.port} is also membership.metrics_port, herdd's metrics on every node; use "
               f"another, such as {free_port(7789, set(on_nfs) | metrics)}")

    # (metrics_port against nfs.port is said just above.)
    taken = {**TAKEN_TCP, **{svc.port: f"service {svc.name!r}" for svc in services if svc.protocol == Protocol.TCP}}
    if membership.metrics_port in taken:
        free = free_port(9694, set(taken) | {membership.port} | ({nfs.port} if replicated else set()))
        given = "" if "metrics_port" in mem else " (metrics_port's default)"
        r.fail("membership.metrics_port", f"{membership.metrics_port}{given} is taken by "
               f"{taken[membership.metrics_port]} on the nodes; use another, such as {free} (0 turns it off)")

    databases = parse_databases(r, r.get(data, "", "database", list, []) or [])
    site_data = r.get(data, "", "site", dict)
    site = parse_site(r, site_data, network, services) if site_data is not None else None

    if r.problems:
        raise SpecError(r.problems)
    return Spec(name=name, release=release, debian=debian, network=network, membership=membership,
                services=tuple(services), nodes=tuple(nodes), ssh_keys=tuple(keys), source=text, nfs=nfs,
                databases=tuple(databases), site=site, image=image)


def load(path: Path) -> Spec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read the spec: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise SpecError([f"{path}: not UTF-8 text"]) from None
    # Some editors (Notepad) start UTF-8 files with a byte-order mark, which TOML does not allow.
    return parse(text.removeprefix("\ufeff"), str(path))

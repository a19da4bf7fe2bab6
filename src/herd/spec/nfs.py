"""The spec's [nfs] section: the shared docroot, and with two nfs nodes its replication (DRBD) and the NFS
service address (herd.spec.load calls parse_nfs once the nodes are known); and DRBD's link timers, which follow
membership.deadtime_ms and bound it."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from herd.spec.model import AUTO_DISK, Network, Nfs, Node, Role
from herd.spec.reader import Reader

_KEYS = {"export", "options", "address", "disk", "port"}
_DEVICE = re.compile(r"/dev/[A-Za-z0-9._:/+-]+")  # fullmatch: `$` would take a final newline


def parse_nfs(r: Reader, data: Mapping[str, Any], network: Network, nodes: list[Node]) -> Nfs:
    p = "nfs"
    r.table(data, p, _KEYS)
    nfs = Nfs()
    export = r.value(data, p, "export", str, nfs.export)
    options = r.value(data, p, "options", str, nfs.options)
    if not re.fullmatch(r"/[A-Za-z0-9._/-]+", export) or "/../" in export + "/":
        r.fail(f"{p}.export", f"{export!r} must be an absolute path of plain names")
    elif _system_dir(export):
        # The nfs node seeds it, exports it read-write to the LAN and (with DRBD) mounts the replicated disk
        # over it: on a system directory that hides or hands out the node's own files.
        r.fail(f"{p}.export", f"{export!r} is a system directory of the nfs node; use a directory of its own, "
               "like /srv/herd/www")
    if not re.fullmatch(r"[a-z0-9_=,:]+", options):
        r.fail(f"{p}.options", f"{options!r} is not an exports(5) option list like rw,sync,no_subtree_check")

    servers = [n for n in nodes if n.role == Role.NFS]
    if len(servers) > 2:
        r.fail("node", f"{len(servers)} nfs nodes ({', '.join(n.name for n in servers)}); herd replicates the "
               "docroot between two (DRBD): use one or two")
    replicated = len(servers) == 2
    address = None
    raw = r.get(data, p, "address", str)
    if raw is not None:
        address = r.convert(f"{p}.address", raw, ipaddress.IPv4Address, "an IPv4 address")
        if address is not None and not replicated:
            r.fail(f"{p}.address", "is the service address two nfs nodes share; with "
                   f"{'one nfs node' if servers else 'no nfs node'} web nodes mount from the node itself: "
                   "remove it, or add a second nfs node")
        elif address is not None:
            taken = {n.address: n.name for n in nodes}
            if network.subnet.prefixlen and address not in network.subnet:
                r.fail(f"{p}.address", f"{address} is outside network.subnet {network.subnet}; use an address "
                       "inside it")
            elif address in taken:
                r.fail(f"{p}.address", f"{address} is {taken[address]}'s address; the service address must be "
                       "a free one (it moves between the nfs nodes)")
            elif address == network.vip:
                r.fail(f"{p}.address", f"{address} is the VIP (network.vip); use another free address")
            elif address == network.gateway:
                r.fail(f"{p}.address", f"{address} is the gateway (network.gateway)")
    elif replicated:
        r.fail(f"{p}.address", "missing; two nfs nodes replicate the docroot and serve it from one address that "
               "moves to whichever serves: add `address = \"…\"`, a free address in network.subnet")

    disk = r.value(data, p, "disk", str, nfs.disk)
    if disk != AUTO_DISK and not _DEVICE.fullmatch(disk):
        r.fail(f"{p}.disk", f"{disk!r} must be \"auto\" or a device path such as /dev/sdb or "
               "/dev/disk/by-id/…")
    elif disk != AUTO_DISK and posixpath.normpath(disk) != disk:
        # DRBD takes the whole device and writes over it: `/dev/../etc/…` is a file outside /dev. One spelling per
        # device (no `//`, `.` or trailing `/`), so that the path says plainly which disk is given away.
        plain = posixpath.normpath(disk)
        hint = f"write {plain!r}" if plain.startswith("/dev/") else "name a device under /dev, such as /dev/sdb"
        r.fail(f"{p}.disk", f"{disk!r} is not a plain path under /dev (no `..`, `.`, `//` or final `/`): {hint}")
    if "disk" in data and not replicated:
        r.fail(f"{p}.disk", "is the DRBD disk of two nfs nodes; one nfs node keeps the docroot on its stick: "
               "remove it, or add a second nfs node")
    port = r.value(data, p, "port", int, nfs.port)
    if not 1 <= port <= 65535:
        r.fail(f"{p}.port", f"{port} is not a port number (1-65535)")
    return Nfs(export=export, options=options, address=address, disk=disk, port=port)


def drbd_timing(deadtime_ms: int) -> dict[str, int]:
    """DRBD's link timers for the resource file, from the membership's deadtime: a dead peer is noticed in about
    the same time herdd notices it (never much later: the standby waits for DRBD before it takes over), and a
    slow box is not cut off sooner than herdd would. ping-timeout and timeout are in tenths of a second,
    ping-int and connect-int in seconds; DRBD wants timeout below both of those."""
    ping_timeout = max(10, deadtime_ms // 100)
    timeout = ping_timeout + 5
    ping_int = timeout // 10 + 1
    return {"ping_int": ping_int, "ping_timeout": ping_timeout, "timeout": timeout, "connect_int": ping_int}


# The most drbdsetup takes for each of those timers (DRBD 8.4: ping-timeout and timeout in tenths of a second,
# ping-int and connect-int in seconds).
DRBD_LIMITS = {"ping_int": 120, "ping_timeout": 300, "timeout": 600, "connect_int": 120}


def drbd_timing_fits(deadtime_ms: int) -> bool:
    return all(value <= DRBD_LIMITS[key] for key, value in drbd_timing(deadtime_ms).items())


# The longest membership.deadtime_ms two nfs nodes can have: ping-timeout (deadtime in tenths of a second,
# rounded down) is the first timer to reach its limit. herd.spec refuses longer; the tests check both sides.
DRBD_DEADTIME_MAX_MS = (DRBD_LIMITS["ping_timeout"] + 1) * 100 - 1


# Top-level directories of the system itself; those meant for a site's own data (fine below them, not
# themselves); and the directories of /var that the system uses.
_SYSTEM = {"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "run", "sbin", "sys",
           "tmp", "usr"}
_DATA = {"srv", "home", "mnt", "media", "opt", "var"}
_SYSTEM_VAR = {"backups", "cache", "lib", "local", "lock", "log", "mail", "opt", "run", "spool", "tmp"}


def _system_dir(path: str) -> bool:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        return True
    top = parts[0]
    if top in _DATA:
        return len(parts) == 1 or (top == "var" and parts[1] in _SYSTEM_VAR)
    return top in _SYSTEM

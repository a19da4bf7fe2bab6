"""The VIP on the wire: add or remove it with pyroute2, announce it with gratuitous ARP, and the web nodes'
side of LVS direct routing (the VIP on lo, never answered to ARP)."""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import struct
import time
from pathlib import Path
from typing import Any

# Spaced so a switch or client that misses the first still learns the new MAC soon after.
GARP_SCHEDULE = (0.0, 0.1, 0.3, 0.7, 1.5)


def interface_with(ipr: Any, address: str) -> str | None:
    for msg in ipr.get_addr(family=2):
        if msg.get_attr("IFA_ADDRESS") == address:
            (link,) = ipr.get_links(msg["index"])
            return str(link.get_attr("IFLA_IFNAME"))
    return None


def set_vip(ipr: Any, ifname: str, vip: str, prefixlen: int, present: bool) -> bool:
    """Make the VIP present or absent on ifname; returns whether anything changed."""
    (index,) = ipr.link_lookup(ifname=ifname)
    try:
        ipr.addr("add" if present else "del", index=index, address=vip, prefixlen=prefixlen)
    except Exception as exc:  # pyroute2's NetlinkError
        code = getattr(exc, "code", None)
        if (present and code == errno.EEXIST) or (not present and code in (errno.EADDRNOTAVAIL, errno.ENOENT)):
            return False
        raise
    return True


def arp_frame(mac: bytes, ip: str, reply: bool) -> bytes:
    """A gratuitous ARP: sender and target IP both the VIP, broadcast, from our MAC."""
    addr = ipaddress.IPv4Address(ip).packed
    eth = b"\xff" * 6 + mac + b"\x08\x06"
    arp = struct.pack(">HHBBH", 1, 0x0800, 6, 4, 2 if reply else 1)
    arp += mac + addr + (b"\xff" * 6 if reply else b"\x00" * 6) + addr
    return eth + arp


def mac_of(ifname: str) -> bytes:
    return bytes.fromhex(Path(f"/sys/class/net/{ifname}/address").read_text().strip().replace(":", ""))


def send_garp(ifname: str, vip: str) -> None:
    mac = mac_of(ifname)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        sock.send(arp_frame(mac, vip, reply=False))
        sock.send(arp_frame(mac, vip, reply=True))


ETH_P_ARP = 0x0806


def arp_request(mac: bytes, source: str, target: str) -> bytes:
    """Who has `target`? Tell `source` (at `mac`). Broadcast."""
    arp = struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1)
    arp += mac + ipaddress.IPv4Address(source).packed + b"\x00" * 6 + ipaddress.IPv4Address(target).packed
    return b"\xff" * 6 + mac + struct.pack(">H", ETH_P_ARP) + arp


def is_arp_reply_from(frame: bytes, target: str) -> bool:
    return (len(frame) >= 42 and frame[12:14] == struct.pack(">H", ETH_P_ARP) and frame[20:22] == b"\x00\x02"
            and frame[28:32] == ipaddress.IPv4Address(target).packed)


def answers_arp(ifname: str, source: str, target: str, wait: float = 1.0, tries: int = 3) -> bool:
    """Whether `target`'s host answers ARP on ifname within `wait` seconds (`tries` requests, evenly spaced).
    The kernel answers, whatever its daemons do: a host that does not is powered off, hung or cut off."""
    request = arp_request(mac_of(ifname), source, target)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((ifname, ETH_P_ARP))
        start = time.monotonic()
        for i in range(tries):
            sock.send(request)
            until = start + wait * (i + 1) / tries
            while (left := until - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                if is_arp_reply_from(sock.recv(128), target):
                    return True
    return False


LVS_DR_SYSCTLS = {
    "net/ipv4/conf/all/arp_ignore": "1",
    "net/ipv4/conf/all/arp_announce": "2",
    "net/ipv4/conf/lo/arp_ignore": "1",
    "net/ipv4/conf/lo/arp_announce": "2",
}


def real_server_side(ipr: Any, vip: str, proc_sys: Path = Path("/proc/sys")) -> list[str]:
    """A web node of LVS-DR accepts packets for the VIP (on lo) but never answers ARP for it. Idempotent;
    returns what it changed."""
    changed = []
    for key, value in LVS_DR_SYSCTLS.items():
        path = proc_sys / key
        if path.read_text().strip() != value:
            path.write_text(value)
            changed.append(f"{key}={value}")
    if set_vip(ipr, "lo", vip, 32, True):
        changed.append(f"{vip}/32 on lo")
    return changed

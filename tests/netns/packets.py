"""Run inside a namespace (ip netns exec NS python packets.py …): capture the UDP datagrams arriving on eth0 for
one port (IPv4: heartbeats; IPv6: claims), or play captured frames back onto the wire. Frames are stored as hex
lines."""

from __future__ import annotations

import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
IPV4, IPV6 = b"\x08\x00", b"\x86\xdd"
UDP = 17


def _udp_offset(frame: bytes) -> int | None:
    """Where the UDP header starts in an Ethernet frame, or None if it is not UDP (IPv6: no extension headers,
    which herd's datagrams have none of)."""
    if frame[12:14] == IPV4 and len(frame) >= 42 and frame[23] == UDP:
        return 14 + (frame[14] & 0x0F) * 4
    if frame[12:14] == IPV6 and len(frame) >= 62 and frame[20] == UDP:
        return 54
    return None


def capture(path: str, seconds: float, port: int, family: str = "4") -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    sock.settimeout(0.2)
    ethertype = IPV4 if family == "4" else IPV6
    frames = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frame, meta = sock.recvfrom(65535)
        except TimeoutError:
            continue
        udp = _udp_offset(frame)
        if meta[2] == socket.PACKET_OUTGOING or udp is None or frame[12:14] != ethertype:
            continue
        (dport,) = struct.unpack_from(">H", frame, udp + 2)
        if dport == port:
            frames.append(frame.hex())
    with open(path, "w") as f:
        f.write("\n".join(frames) + "\n")


def _udp6_checksum(frame: bytearray) -> bytes:
    (length,) = struct.unpack_from(">H", frame, 54 + 4)
    udp = frame[54:54 + length]
    udp[6:8] = b"\0\0"
    data = bytes(frame[22:54]) + struct.pack(">I3xB", length, UDP) + bytes(udp) + b"\0" * (length % 2)
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return struct.pack(">H", (~total & 0xFFFF) or 0xFFFF)


def replay(path: str, times: int) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind(("eth0", 0))
    own = bytes.fromhex(Path("/sys/class/net/eth0/address").read_text().strip().replace(":", ""))
    with open(path) as f:
        frames = [bytearray(bytes.fromhex(line)) for line in f.read().split()]
    for frame in frames:
        # From this host's own MAC, so the switch does not learn a live box's on the replayer's port; the IP
        # packet, source address and herd's message in it, stays byte for byte the same.
        frame[6:12] = own
        udp = _udp_offset(frame)
        assert udp is not None
        # veth leaves the UDP checksum to "hardware" (CHECKSUM_PARTIAL), so captured frames carry only the
        # pseudo-header sum. IPv4 may say "none" (zero); IPv6 must have one.
        frame[udp + 6:udp + 8] = _udp6_checksum(frame) if frame[12:14] == IPV6 else b"\0\0"
    for _ in range(times):
        for frame in frames:
            sock.send(frame)
    print(len(frames) * times)


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
    else:
        replay(sys.argv[2], int(sys.argv[3]))

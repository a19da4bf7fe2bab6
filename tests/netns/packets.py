"""Run inside a namespace (ip netns exec NS python packets.py …): capture the heartbeats arriving on eth0,
or play captured frames back onto the wire unchanged. Frames are stored as hex lines."""

from __future__ import annotations

import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def capture(path: str, seconds: float, port: int) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    sock.settimeout(0.2)
    frames = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frame, meta = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if meta[2] == socket.PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        (dport,) = struct.unpack_from(">H", frame, 14 + ihl + 2)
        if dport == port:
            frames.append(frame.hex())
    with open(path, "w") as f:
        f.write("\n".join(frames) + "\n")


def replay(path: str, times: int) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind(("eth0", 0))
    with open(path) as f:
        frames = [bytearray(bytes.fromhex(line)) for line in f.read().split()]
    for frame in frames:
        # veth leaves the UDP checksum to "hardware" (CHECKSUM_PARTIAL), so captured frames carry only the
        # pseudo-header sum. Zero means "no checksum" in IPv4 UDP; the payload stays byte for byte the same.
        ihl = (frame[14] & 0x0F) * 4
        frame[14 + ihl + 6:14 + ihl + 8] = b"\0\0"
    for _ in range(times):
        for frame in frames:
            sock.send(frame)
    print(len(frames) * times)


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        replay(sys.argv[2], int(sys.argv[3]))

"""Run inside a namespace (ip netns exec NS python onlink.py DATA_HEX PORT HOPS SOURCE SECONDS): send one datagram
to every node on eth0 (ff02::1) with hop limit HOPS, from SOURCE (an address of eth0's, or "" for the kernel's
choice: the link-local one), and print as JSON what comes back within SECONDS: [{"from", "hops", "data"}]."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def probe(data: bytes, port: int, hops: int, source: str, seconds: float) -> list[dict[str, object]]:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
    index = socket.if_nametoindex("eth0")
    sock.bind((source or "::", 0, 0, index if source.startswith("fe80") else 0))
    sock.sendto(data, ("ff02::1", port, 0, index))
    replies: list[dict[str, object]] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            reply, ancdata, _flags, addr = sock.recvmsg(65535, socket.CMSG_SPACE(4))
        except TimeoutError:
            break
        got = [struct.unpack_from("@i", d)[0] for level, kind, d in ancdata
               if (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)]
        replies.append({"from": addr[0], "hops": got[0] if got else None, "data": reply.hex()})
    return replies


if __name__ == "__main__":
    print(json.dumps(probe(bytes.fromhex(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                           float(sys.argv[5]))))

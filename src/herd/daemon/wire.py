"""Heartbeat messages on the wire: encode, verify, and the per-sender replay guard. Pure: bytes in, bytes out.

Layout (big-endian), authenticated as a whole by HMAC-SHA256 with the cluster key:

    magic "HRD1" | kind u8 | cluster tag 8 bytes | generation u64 | seq u64 | name length u8 | name |
    payload (JSON) | HMAC 32 bytes

`generation` is the sender's boot count (persisted, never reused, floored by the wall clock so a reflashed
node is usually ahead of its old self); `seq` counts messages within a generation. A receiver accepts a
message only if it is newer than the last one it accepted from that sender, so a captured packet is not
played back to it. A node reflashed with its clock behind (a thin client's dead RTC battery) is behind its
old self all the same: a receiver answers such a message with a STALE naming the generation it has seen,
and the sender moves past it (herd.daemon.loop, claiming).

The guard is in memory: a receiver that has just started knows no sender's last message, and a packet captured
before its restart would pass it. So a heartbeat also says which generation its sender has seen from every
peer (`seen`), and a receiver takes the first heartbeat of a sender after its own start only if that echoes
the receiver's current generation: proof it was sent after the receiver started (herd.daemon.loop). A
heartbeat without `seen` is from an older herdd and taken as before, unless its sender has sent `seen` before:
a receiver remembers on disk which senders echo (`Echoers`), and one that does is not taken without the echo,
so that heartbeats captured from its older herdd cannot be played to a node that has just started.

Claims and releases (from boxes with no identity yet) echo `seen` the same way, and every one that changes a
slot must echo the receiver's current generation. A claimer cannot know it on first contact, so the receiver
answers an unproven claim with a PROVE, whose header carries its generation; the claimer says it again with the
echo (herd.daemon.claiming). A slot a box gave back is so never bound to it again by an old capture.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.daemon.bounds import unicast_mac

MAGIC = b"HRD1"
HEADER = struct.Struct(">4sB8sQQB")
MAC_SIZE = 32
# A heartbeat of a few nodes fits one Ethernet frame; one of many nodes, each drained once (the register rides
# on every beat), is fragmented rather than not sent. herd.spec refuses node lists that could outgrow this.
MAX_SIZE = 8192
KIND_HEARTBEAT = 1
KIND_CLAIM = 2     # a box without identity asks for a slot (IPv6 link-local multicast)
KIND_GRANT = 3     # a node's answer: granted or refused
KIND_RELEASE = 4   # a claimer gives back what one round got
KIND_STALE = 5     # "your generation is behind one I have seen from you": {"to": sender, "seen": generation}
KIND_PROVE = 6     # "say that again, echoing my generation": {"to": claimer, "of": "claim" | "release", slot, round}


class Drop(Exception):
    """A message that must be ignored; `reason` is counted in the metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


REASONS = ("truncated", "oversized", "bad-magic", "wrong-cluster", "bad-mac", "malformed", "unknown-sender",
           "spoofed-source", "replay", "unproven", "downgrade",
           "not-link-local", "hop-limit")  # the last two: the claim port's, before decode (herd.daemon.linklocal)


def cluster_tag(cluster: str) -> bytes:
    return hashlib.sha256(b"herd-cluster:" + cluster.encode()).digest()[:8]


@dataclass(frozen=True)
class Message:
    kind: int
    sender: str
    generation: int
    seq: int
    payload: dict[str, Any] = field(default_factory=dict)


def _body(msg: Message, cluster: str) -> bytes:
    name = msg.sender.encode()
    body = HEADER.pack(MAGIC, msg.kind, cluster_tag(cluster), msg.generation, msg.seq, len(name)) + name
    return body + json.dumps(msg.payload, separators=(",", ":"), sort_keys=True).encode()


def size(msg: Message) -> int:
    """How many bytes encode makes of msg (to be checked against MAX_SIZE before it refuses)."""
    return len(_body(msg, "")) + MAC_SIZE


def encode(msg: Message, cluster: str, key: bytes) -> bytes:
    body = _body(msg, cluster)
    data = body + hmac.new(key, body, hashlib.sha256).digest()
    if len(data) > MAX_SIZE:
        raise ValueError(f"message of {len(data)} bytes is over the {MAX_SIZE}-byte limit")
    return data


def decode(data: bytes, cluster: str, key: bytes, admit: Callable[[int, str], None] | None = None) -> Message:
    """Verify and parse one datagram; raise Drop for anything not authentic and well-formed.

    `admit(kind, sender)` runs before the HMAC is computed, on what the datagram claims to be, and raises Drop
    for a kind or sender the receiver never takes (or a source address that is not the sender's): the cluster
    tag is public, and a flood of forgeries should cost a parse each, not an HMAC. A name that cannot be read
    is given as "" (no node is named that)."""
    if len(data) > MAX_SIZE:
        raise Drop("oversized")
    if len(data) < HEADER.size + MAC_SIZE:
        raise Drop("truncated")
    magic, kind, tag, generation, seq, name_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise Drop("bad-magic")
    if tag != cluster_tag(cluster):
        raise Drop("wrong-cluster")
    body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if admit is not None:
        claimed = body[HEADER.size:HEADER.size + name_len] if HEADER.size + name_len <= len(body) else b""
        try:
            sender = claimed.decode()
        except UnicodeDecodeError:
            sender = ""
        admit(kind, sender)
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise Drop("bad-mac")
    if HEADER.size + name_len > len(body):
        raise Drop("malformed")
    try:
        sender = body[HEADER.size:HEADER.size + name_len].decode()
        payload = json.loads(body[HEADER.size + name_len:] or b"{}")
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise Drop("malformed") from None
    if not isinstance(payload, dict):
        raise Drop("malformed")
    return Message(kind, sender, generation, seq, payload)


class ReplayGuard:
    """Remembers, per sender, the newest (generation, seq) accepted."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def check(self, msg: Message) -> None:
        last = self._last.get(msg.sender)
        if last is not None and (msg.generation, msg.seq) <= last:
            raise Drop("replay")

    def behind(self, msg: Message) -> int | None:
        """The generation seen from this sender when msg's is lower (a restart with a lower one), else None."""
        last = self._last.get(msg.sender)
        return last[0] if last is not None and msg.generation < last[0] else None

    def accept(self, msg: Message) -> None:
        self._last[msg.sender] = (msg.generation, msg.seq)

    def generation_of(self, sender: str) -> int | None:
        last = self._last.get(sender)
        return None if last is None else last[0]


def proves_fresh(msg: Message, me: str, generation: int) -> bool:
    """Whether a heartbeat, claim or release was sent after this receiver (`me`, running as `generation`)
    started: it echoes that generation in `seen`. One without `seen` (an older herdd) cannot say, and is
    taken (unless Echoers knows its sender echoes)."""
    seen = msg.payload.get("seen")
    if not isinstance(seen, dict):
        return "seen" not in msg.payload
    echoed = seen.get(me)
    return isinstance(echoed, int) and not isinstance(echoed, bool) and echoed == generation


# Boxes (claimers, `mac:…`) remembered as echoing: the latest few. A box claims at its first boot, and only a
# holder of the cluster key can make new ones, who must not be able to grow the file without end.
BOXES_KEPT = 256


class Echoers:
    """The senders known to echo `seen` in their heartbeats, claims and releases; the owner keeps `to_json()`
    on disk (after `learn` says it changed), so that this outlives a restart. A sender that has sent `seen`
    always does (a herdd never goes back to one without it), so a message of its without `seen` is a capture
    of an older herdd's, played back: dropped as `downgrade`."""

    def __init__(self, names: list[str] | None = None) -> None:
        self._names: dict[str, None] = {}  # in the order learnt (boxes are forgotten oldest first)
        for name in names or []:
            self._learn(name)

    def check(self, msg: Message) -> None:
        if not isinstance(msg.payload.get("seen"), dict) and msg.sender in self._names:
            raise Drop("downgrade")

    def learn(self, msg: Message) -> bool:
        """Remember msg's sender if msg echoes `seen`; True if that is news (to be saved)."""
        if not isinstance(msg.payload.get("seen"), dict) or msg.sender in self._names:
            return False
        self._learn(msg.sender)
        return True

    def _learn(self, name: str) -> None:
        self._names[name] = None
        boxes = [n for n in self._names if n.startswith("mac:")]
        for old in boxes[:-BOXES_KEPT]:
            del self._names[old]

    def to_json(self) -> list[str]:
        return list(self._names)

    @staticmethod
    def from_json(data: Any) -> Echoers:
        return Echoers([n for n in data if isinstance(n, str)] if isinstance(data, list) else [])


def admit_peer(kinds: tuple[int, ...], addresses: Mapping[str, str], me: str,
               source: str) -> Callable[[int, str], None]:
    """decode's `admit` for the heartbeat port: one of `kinds`, from a spec node other than this one (`me`),
    sent from that node's address (`addresses`: name -> address; `source`: the datagram's)."""

    def admit(kind: int, sender: str) -> None:
        if kind not in kinds:  # a GRANT of the claim port's, say, replayed to the heartbeat port
            raise Drop("malformed")
        if sender not in addresses or sender == me:
            raise Drop("unknown-sender")
        if source != addresses[sender]:
            raise Drop("spoofed-source")

    return admit


def admit_box(kinds: tuple[int, ...]) -> Callable[[int, str], None]:
    """decode's `admit` for the claim port: one of `kinds`, from `mac:` and a well-formed unicast MAC (a box
    without identity names itself by its NIC's)."""

    def admit(kind: int, sender: str) -> None:
        if kind not in kinds or not (sender.startswith("mac:") and unicast_mac(sender[4:])):
            raise Drop("unknown-sender")

    return admit

"""The claimer's I/O: multicast CLAIMs on every NIC's IPv6 link-local, collect GRANTs, until a slot is ours.
The decisions are claim.Claimer's; this only moves its messages.

Every CLAIM and RELEASE echoes the generation each node last answered with (`seen`): a node takes one only if
it echoes the generation it runs as now, so one captured before its restart is not taken (herd.daemon.wire). A
node not heard yet, or just restarted, answers with a PROVE: the message is said again, once the burst of
answers is read, with the generation learnt."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from herd.daemon.claim import Claimed, Claimer, Effect, NoFreeSlot, SendClaim, SendRelease
from herd.daemon.linklocal import send_on_link
from herd.daemon.wire import (
    KIND_CLAIM,
    KIND_GRANT,
    KIND_PROVE,
    KIND_RELEASE,
    KIND_STALE,
    Drop,
    Message,
    ReplayGuard,
    decode,
    encode,
)
from herd.spec import Role, Spec

ALL_NODES = "ff02::1"


REPLIES_QUEUED = 1024  # unread answers kept: a node answers each claim once, so a full queue is a flood


class _Replies(asyncio.DatagramProtocol):
    def __init__(self, limit: int = REPLIES_QUEUED) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(limit)
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # Anyone on the LAN can send to this port, authentic or not: what cannot be read in time is dropped,
        # not held in memory without end (the claim is said again, and the nodes answer again).
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1


async def claim_slot(spec: Spec, role: Role, key: bytes, mac: str, ifindexes: list[int], generation: int,
                     say: Any = print, raise_generation: Callable[[int], int] | None = None) -> str:
    """`raise_generation(seen)`: a persisted generation above `seen`, for when a node says it has seen a
    higher one from this box (reflashed with its clock behind) and drops its claims."""
    claimer = Claimer(spec, role, mac)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    send_on_link(sock)  # hop limit 255: the nodes take claims from this link only (herd.daemon.linklocal)
    sock.bind(("::", 0))
    sock.setblocking(False)
    transport, protocol = await loop.create_datagram_endpoint(_Replies, sock=sock)
    guard = ReplayGuard()
    names = {n.name for n in spec.nodes}
    seq = 0
    port = spec.membership.port
    seen: dict[str, int] = {}  # node: the generation of its newest authentic answer

    def admit(kind: int, sender: str) -> None:
        if kind not in (KIND_GRANT, KIND_STALE, KIND_PROVE) or sender not in names:
            raise Drop("unknown-sender")
    again: list[Effect] = []  # what nodes asked to hear again with their generation (PROVE)

    def perform(effects: list[Any]) -> str | None:
        nonlocal seq
        for effect in effects:
            match effect:
                case SendClaim(slot, round_id) | SendRelease(slot, round_id):
                    seq += 1
                    kind = KIND_CLAIM if isinstance(effect, SendClaim) else KIND_RELEASE
                    msg = Message(kind, f"mac:{mac}", generation, seq,
                                  {"slot": slot, "mac": mac, "round": round_id, "role": role.value,
                                   "seen": dict(seen)})
                    data = encode(msg, spec.name, key)
                    for index in ifindexes:
                        with contextlib.suppress(OSError):  # this NIC lost its link; the others may do
                            transport.sendto(data, (ALL_NODES, port, 0, index))
                case NoFreeSlot(r):
                    say(f"herd: no free {r} slot in the spec (or too few nodes answering); asking again")
                case Claimed(slot):
                    return str(slot)
        return None

    try:
        while True:
            won = perform(claimer.tick(loop.time()))
            if won is not None:
                return won
            if again and protocol.queue.empty():
                # Every node that asked, answered by one message: it echoes all their generations.
                perform(list(dict.fromkeys(again)))
                again.clear()
            try:
                data = await asyncio.wait_for(protocol.queue.get(), timeout=0.05)
            except TimeoutError:
                continue
            try:
                reply = decode(data, spec.name, key, admit)  # kind and sender checked before the HMAC
                guard.check(reply)
            except Drop:
                continue
            guard.accept(reply)
            seen[reply.sender] = reply.generation
            p = reply.payload
            if reply.kind == KIND_PROVE:
                if p.get("to") == f"mac:{mac}":
                    again.extend(claimer.on_prove(p.get("of"), p.get("slot"), p.get("round")))
                continue
            if reply.kind == KIND_STALE:
                had = p.get("seen")
                if p.get("to") == f"mac:{mac}" and isinstance(had, int) and not isinstance(had, bool) \
                        and had > generation:  # equal: a claim of this box's replayed, not news
                    old = generation
                    generation = raise_generation(had) if raise_generation else had + 1
                    say(f"herd: {reply.sender} had seen generation {had} from {mac}, which claimed with {old} "
                        f"(is the clock behind?): now {generation}")
                continue
            slot, round_id, granted = p.get("slot"), p.get("round"), p.get("granted")
            if isinstance(slot, str) and isinstance(round_id, str) and isinstance(granted, bool):
                won = perform(claimer.on_reply(reply.sender, slot, round_id, granted, loop.time()))
                if won is not None:
                    return won
    finally:
        transport.close()

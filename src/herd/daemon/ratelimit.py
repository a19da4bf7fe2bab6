"""A token bucket per source address, in a table of bounded size. Pure: the clock is an argument.

What it is for: a node answers some messages it does not take (a claim that does not prove it was sent after
the node started gets a PROVE; a message whose generation is behind gets a STALE), and the answer goes to the
datagram's source address, which the sender chose. A captured claim played back from a spoofed address would
have every node that hears it (it is multicast) send to that address, as often as it is played. So each
source gets `burst` answers at once and `rate` a second after that.

The table holds only sources still being limited: a bucket left alone for burst / rate seconds is full again,
as good as none, and is forgotten. When `sources` are being limited at once, a new one gets nothing until one
is forgotten: a flood from spoofed addresses cannot push a victim's bucket out of the table to have it refilled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class _Bucket:
    tokens: float
    at: float  # when tokens was worked out


class PerSource:
    def __init__(self, rate: float, burst: float, sources: int) -> None:
        if rate <= 0 or burst < 1 or sources < 1:
            raise ValueError("rate > 0, burst >= 1 and sources >= 1")
        self.rate = rate
        self.burst = burst
        self.sources = sources
        self._buckets: dict[str, _Bucket] = {}  # least recently asked first

    def allow(self, source: str, now: float) -> bool:
        """Whether one more answer may go to `source` at `now` (it is counted if so)."""
        self._forget_full(now)
        bucket = self._buckets.pop(source, None)
        if bucket is None:
            if len(self._buckets) >= self.sources:
                return False
            bucket = _Bucket(self.burst, now)
        else:  # a clock that went back refills nothing
            bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
            bucket.at = max(bucket.at, now)
        self._buckets[source] = bucket  # to the end: the most recently asked
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False

    def _forget_full(self, now: float) -> None:
        refill = self.burst / self.rate
        while self._buckets:  # oldest first: the first still being limited ends it (no scan of the table)
            source, bucket = next(iter(self._buckets.items()))
            if now - bucket.at < refill:
                return
            del self._buckets[source]

    def __len__(self) -> int:
        return len(self._buckets)


def source_of(addr: tuple[Any, ...]) -> str:
    """The key of a datagram's source address: the host, and an IPv6 one's scope (a link-local address is
    one per link: fe80::1 on eth0 and on eth1 are two hosts)."""
    host = str(addr[0])
    scope = addr[3] if len(addr) >= 4 else 0
    return f"{host}%{scope}" if scope else host


# herdd's PROVE and STALE answers: a box needs about one PROVE from each node it has not yet proven itself to,
# and a sender one STALE a second at most (loop.Daemon.check_fresh); every NIC of a box is a source of its own.
ANSWER_RATE = 1.0
ANSWER_BURST = 4.0
ANSWER_SOURCES = 256


def answers() -> PerSource:
    return PerSource(ANSWER_RATE, ANSWER_BURST, ANSWER_SOURCES)

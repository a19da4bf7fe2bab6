"""What one authenticated message may carry. Pure.

The cluster key is on every stick, so a stolen one signs anything: the HMAC says a message is the cluster's,
not that its values are sane. These are the limits on the values that a node keeps, passes on or writes
down, so that one message cannot grow every heartbeat past the wire's limit, break what herdd writes (JSON
with integers of thousands of digits, which Python will not even print), or put a string of its choosing
into slots.json and the console.

- Counters (a drain register's `version`, the storage `term`) are integers 0 <= n < 2**53: exact in every
  JSON reader (herdctl's, a Prometheus scrape's floats), and far more than a cluster counts up to in its life
  (one per operator's drain or undrain of a node, one per serving period of the nfs nodes).
- A counter is also taken only up to AHEAD above the highest the receiver knows: both grow by one per
  change, so a value that far ahead is not one the cluster made, and one message cannot take a counter up
  to the limit, where the next change (one more) would be refused by every node. Any lower value is taken as
  before: a node that was away (or restarted: drain registers live in memory) may have missed many changes,
  and refusing a storage term it missed would let it serve over newer data.
  (A forged term within these bounds makes a serving nfs node step down, as a real newer term would; it
  serves again as soon as both nfs nodes are up, with a term above the forged one. Nothing short of the key
  stops a key holder from forging values within the bounds: these keep one message from breaking herdd.)
- A drain register's `origin` is a spec node's name: the largest heartbeat the spec allows (herd.spec's
  heartbeat_bound) counts on that.
- A MAC (the claim of a box without identity) is written as `xx:xx:xx:xx:xx:xx`, lower-case, unicast.
"""

from __future__ import annotations

import re
from typing import Any

COUNTER_LIMIT = 2**53
AHEAD = 2**32

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")  # fullmatch: `$` would take a final newline


def counter(value: Any, known: int | None = None) -> bool:
    """An integer (not a bool) 0 <= value < COUNTER_LIMIT, and at most AHEAD above `known` (the receiver's
    highest) if that is given."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < COUNTER_LIMIT \
        and (known is None or value <= known + AHEAD)


def unicast_mac(value: Any) -> bool:
    """A NIC's MAC as herdd reads it from sysfs: lower-case, colon-separated, not multicast (the first octet's
    lowest bit) nor all zeros."""
    return isinstance(value, str) and _MAC.fullmatch(value) is not None and not int(value[:2], 16) & 1 \
        and value != "00:00:00:00:00:00"


def heartbeat(payload: dict[str, Any], known_term: int) -> tuple[dict[str, Any], list[str]]:
    """A heartbeat's payload without the storage terms in its health (`storage_term`, the highest its sender
    knows, and the DRBD report's `term`, its own disk's) that are out of bounds for a node knowing `known_term`
    as the highest; and the names of those left out, to be counted. (Drain registers: Membership.merge_admin.)"""
    health = payload.get("health")
    if not isinstance(health, dict):
        return payload, []
    out, refused = health, []
    if "storage_term" in health and not counter(health["storage_term"], known_term):
        out = {k: v for k, v in out.items() if k != "storage_term"}
        refused.append("storage_term")
    report = health.get("drbd")
    if isinstance(report, dict) and "term" in report and not counter(report["term"], known_term):
        out = {**out, "drbd": {k: v for k, v in report.items() if k != "term"}}
        refused.append("drbd.term")
    return ({**payload, "health": out} if refused else payload), refused

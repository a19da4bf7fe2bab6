"""What one authenticated message may carry. Pure.

The cluster key is on every stick, so a stolen one signs anything: the HMAC says a message is the cluster's,
not that its values are sane. These are the limits on the values that a node keeps, passes on or writes
down, so that one message cannot put a string of its choosing into slots.json and the console.

- A MAC (the claim of a box without identity) is written as `xx:xx:xx:xx:xx:xx`, lower-case, unicast.
"""

from __future__ import annotations

import re
from typing import Any

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")  # fullmatch: `$` would take a final newline


def unicast_mac(value: Any) -> bool:
    """A NIC's MAC as herdd reads it from sysfs: lower-case, colon-separated, not multicast (the first octet's
    lowest bit) nor all zeros."""
    return isinstance(value, str) and _MAC.fullmatch(value) is not None and not int(value[:2], 16) & 1 \
        and value != "00:00:00:00:00:00"

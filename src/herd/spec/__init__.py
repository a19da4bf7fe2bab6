"""The cluster spec: `cluster.toml` parsed into one frozen, validated model.

Both programs use it: the builder bakes the file into every image, and herdd reads it back on the node.
Every error names the key (`node[3].address`), the line where it could be found, and what to do.

The package; each module imports only from those above it (tests/unit/test_spec_package.py: no import cycle,
nothing but the standard library):
- model.py: every section as a frozen dataclass, and the enums (Role, Protocol, SiteRole…); no parsing.
- reader.py: Reader, which walks the parsed TOML and collects problems with key path and file:line.
- the parsers, one function per section, each module with the limits it checks: cluster.py ([cluster],
  [debian], [image], [access], [[database]]), network.py ([network], [membership], [[service]]), nodes.py
  ([[node]], the heartbeat bound), nfs.py ([nfs], DRBD's timers), site.py ([site]).
- load.py: parse() and load(): every section in turn, then the checks across sections; SpecError.

Callers import from here, not from the modules.
"""

from herd.spec.cluster import CLUSTER_NAME_MAX, valid_release
from herd.spec.load import SpecError, load, parse
from herd.spec.model import (
    Check,
    CheckKind,
    Database,
    Debian,
    Failback,
    Forwarding,
    Image,
    Membership,
    Network,
    Nfs,
    Node,
    Protocol,
    Role,
    Scheduler,
    Service,
    Site,
    SiteRole,
    Spec,
)
from herd.spec.network import LEASE_INTERVALS
from herd.spec.nfs import DRBD_DEADTIME_MAX_MS, DRBD_LIMITS, drbd_timing, drbd_timing_fits
from herd.spec.nodes import HEARTBEAT_LIMIT, heartbeat_bound
from herd.spec.reader import key_lines

__all__ = [
    "CLUSTER_NAME_MAX", "DRBD_DEADTIME_MAX_MS", "DRBD_LIMITS", "HEARTBEAT_LIMIT", "LEASE_INTERVALS",
    "Check", "CheckKind", "Database", "Debian", "Failback", "Forwarding", "Image", "Membership", "Network", "Nfs",
    "Node", "Protocol", "Role", "Scheduler", "Service", "Site", "SiteRole", "Spec", "SpecError",
    "drbd_timing", "drbd_timing_fits", "heartbeat_bound", "key_lines", "load", "parse", "valid_release",
]

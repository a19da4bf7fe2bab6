"""What DRBD says about the nfs nodes' replicated disk, and what herdd tells the others about it. Pure: the
text of /proc/drbd and `drbdadm get-gi` in, a Report out; the Report rides in every nfs node's heartbeat.

The kernel's module is DRBD 8.4 (Debian's kernel); /proc/drbd is its cheap, complete status:

     0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
        ns:2048 nr:0 dw:0 dr:2048 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:260096
            [>....................] sync'ed:  1.2% (260096/262144)K
            finish: 0:00:12 speed: 20,480 (20,480) K/sec
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

RESOURCE = "herd"
DEVICE = "/dev/drbd0"
MINOR = 0

# Metadata just made by create-md, never promoted: the current generation UUID DRBD 8.4 starts with.
_JUST_CREATED = {"0000000000000004", "0000000000000000"}


@dataclass(frozen=True)
class Report:
    """One nfs node's replicated disk, as it says in its heartbeats."""

    role: str = "Unconfigured"        # Primary, Secondary, Unconfigured (resource not up), Unknown
    connection: str = "Unconfigured"  # Connected, WFConnection, StandAlone, SyncSource, SyncTarget, …
    disk: str = "Unknown"             # UpToDate, Inconsistent, Outdated, Consistent, Diskless, DUnknown
    peer_disk: str = "DUnknown"       # the peer's disk as this node last knew it
    peer_role: str = "Unknown"        # the peer's role as DRBD sees it (Unknown while not connected)
    sync: float | None = None         # percent done while a resync runs
    fresh: bool = False               # metadata never promoted: the pair's first start
    serving: bool = False             # this node has decided to be the primary (mounts, exports, address)
    error: str | None = None          # the last failure setting the disk up or serving, for herdctl
    waiting: str = ""                 # why this node does not serve, for herdctl
    ready: bool = False               # serving, and done: NFS up, the service address held and announced

    @property
    def connected(self) -> bool:
        """Replicating, or resyncing, with the peer."""
        return self.connection in ("Connected", "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT",
                                   "VerifyS", "VerifyT")

    @property
    def in_sync(self) -> bool:
        """Connected with both disks up to date: every write is on both."""
        return self.connection == "Connected" and self.disk == "UpToDate" and self.peer_disk == "UpToDate"

    @property
    def primary(self) -> bool:
        return self.role == "Primary"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "connection": self.connection, "disk": self.disk,
                               "peer_disk": self.peer_disk, "peer_role": self.peer_role, "fresh": self.fresh,
                               "serving": self.serving}
        if self.ready:
            out["ready"] = True
        if self.sync is not None:
            out["sync"] = self.sync
        # Every heartbeat carries this: the texts are cut so it keeps within the room herd.spec counts for it
        # (a "waiting" that names every node still hearing the peer would grow with the cluster).
        if self.error:
            out["error"] = _cut(self.error)
        if self.waiting:
            out["waiting"] = _cut(self.waiting)
        return out

    @staticmethod
    def from_json(data: Any) -> Report | None:
        if not isinstance(data, dict):
            return None
        strings = [data.get(k) for k in ("role", "connection", "disk", "peer_disk", "peer_role")]
        if not all(isinstance(s, str) for s in strings):
            return None
        fresh, serving, sync, error = data.get("fresh"), data.get("serving"), data.get("sync"), data.get("error")
        waiting = data.get("waiting", "")
        if not isinstance(fresh, bool) or not isinstance(serving, bool):
            return None
        role, connection, disk, peer_disk, peer_role = (str(s) for s in strings)
        return Report(role, connection, disk, peer_disk, peer_role,
                      float(sync) if isinstance(sync, int | float) and not isinstance(sync, bool) else None,
                      fresh, serving, error if isinstance(error, str) else None,
                      waiting if isinstance(waiting, str) else "", data.get("ready") is True)

    def with_(self, **changes: Any) -> Report:
        return replace(self, **changes)


_LINE = re.compile(r"^\s*(\d+):\s+cs:(\S+)(?:\s+ro:(\w+)/(\w+)\s+ds:(\w+)/(\w+))?", re.MULTILINE)
_SYNCED = re.compile(r"sync'ed:\s*([\d.]+)%")


def parse_proc(text: str, minor: int = MINOR) -> Report:
    """The resource's state from /proc/drbd (a minor that is not listed is not configured)."""
    lines = list(_LINE.finditer(text))
    for i, m in enumerate(lines):
        if int(m.group(1)) != minor:
            continue
        if m.group(3) is None:  # " 0: cs:Unconfigured"
            return Report(connection=m.group(2))
        end = lines[i + 1].start() if i + 1 < len(lines) else len(text)
        synced = _SYNCED.search(text, m.end(), end)
        return Report(role=m.group(3), connection=m.group(2), disk=m.group(5), peer_disk=m.group(6),
                      peer_role=m.group(4), sync=float(synced.group(1)) if synced else None)
    return Report()


def is_fresh(get_gi: str) -> bool:
    """`drbdadm get-gi`: `CURRENT:BITMAP:HISTORY1:HISTORY2:flags…`; a current UUID of 4 (or 0) is metadata made
    by create-md and never promoted, on a disk that has never held data."""
    current = get_gi.strip().split(":", 1)[0].upper()
    return current in _JUST_CREATED


TEXT_MAX = 120  # characters of a report's error or waiting text


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX - 1] + "…"

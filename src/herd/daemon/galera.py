"""Who starts the Galera cluster: the bootstrap decision for the db nodes. Pure: what every db node reports in
its heartbeat goes in, one action comes out.

Galera replicates, but it cannot start itself: after a first boot or a whole-cluster power loss some node must
create the primary component (`--wsrep-new-cluster`), and it must be the one with the most advanced state, or
committed transactions are thrown away. Two nodes doing it make two clusters. The rules here:

- a node whose MariaDB runs is left alone;
- if another db node runs in a primary component, join it (Galera's IST/SST brings this node up to date);
- otherwise bootstrap only when *every* db node of the spec is alive and has reported its recovered position,
  none of them runs, and all that have a history share one cluster UUID; then the most advanced wins (highest
  seqno, then safe_to_bootstrap, then the first name) and the others wait for it to become primary.

Every node applies the same rules to the same reports, so exactly one node decides to bootstrap. A node that
cannot see all its peers never bootstraps: it waits (safe, not live; a lost db node needs a human, as a lost
disk does).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

NO_UUID = "00000000-0000-0000-0000-000000000000"


class Action(enum.StrEnum):
    NONE = "none"            # MariaDB runs here: nothing to decide
    WAIT = "wait"
    BOOTSTRAP = "bootstrap"  # galera_new_cluster
    JOIN = "join"            # start MariaDB; it joins the running primary component


@dataclass(frozen=True)
class Position:
    """A stopped node's place in the cluster's history (grastate.dat, or recovered from InnoDB)."""

    uuid: str = NO_UUID
    seqno: int = -1
    safe_to_bootstrap: bool = False

    @property
    def fresh(self) -> bool:
        return self.uuid == NO_UUID


@dataclass(frozen=True)
class Report:
    """What a db node says about its Galera state in every heartbeat."""

    running: bool = False                 # mariadbd is up (or starting)
    primary: bool = False                 # wsrep_cluster_status is Primary and the node is synced
    position: Position | None = None      # known while stopped; None: not recovered yet

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"running": self.running, "primary": self.primary}
        if self.position is not None:
            p = self.position
            out["position"] = {"uuid": p.uuid, "seqno": p.seqno, "safe": p.safe_to_bootstrap}
        return out

    @staticmethod
    def from_json(data: Any) -> Report | None:
        if not isinstance(data, dict):
            return None
        running, primary, position = data.get("running"), data.get("primary"), data.get("position")
        if not isinstance(running, bool) or not isinstance(primary, bool):
            return None
        pos = None
        if isinstance(position, dict):
            uuid, seqno, safe = position.get("uuid"), position.get("seqno"), position.get("safe")
            if isinstance(uuid, str) and isinstance(seqno, int) and isinstance(safe, bool):
                pos = Position(uuid, seqno, safe)
        return Report(running, primary, pos)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(me: str, db_nodes: list[str], reports: dict[str, Report | None], alive: set[str]) -> Decision:
    """db_nodes: every db node of the spec, in spec order; reports: the latest from each alive one (mine
    included); alive: who membership says is alive now."""
    mine = reports.get(me)
    if mine is not None and mine.running:
        return Decision(Action.NONE, "MariaDB is running")
    others = [n for n in db_nodes if n != me and n in alive]
    primaries = [n for n in others if (r := reports.get(n)) is not None and r.running and r.primary]
    if primaries:
        return Decision(Action.JOIN, f"{primaries[0]} is primary")
    starting = [n for n in others if (r := reports.get(n)) is not None and r.running]
    if starting:
        return Decision(Action.WAIT, f"{starting[0]} is starting")
    missing = [n for n in db_nodes if n not in alive]
    if missing:
        return Decision(Action.WAIT, f"waiting for {', '.join(missing)}: it may hold the newest data")
    positions: dict[str, Position] = {}
    for name in db_nodes:
        report = reports.get(name)
        if report is None or report.position is None:
            return Decision(Action.WAIT, f"waiting for {name}'s recovered position")
        positions[name] = report.position
    histories = {p.uuid for p in positions.values() if not p.fresh}
    if len(histories) > 1:
        return Decision(Action.WAIT, f"db nodes hold different clusters ({', '.join(sorted(histories))}): "
                                     "refusing to pick one; needs a human")
    order = {name: i for i, name in enumerate(db_nodes)}
    winner = max(db_nodes, key=lambda n: (positions[n].seqno, positions[n].safe_to_bootstrap, -order[n]))
    if winner == me:
        p = positions[me]
        return Decision(Action.BOOTSTRAP, "first start of the cluster" if p.fresh and p.seqno < 0 else
                        f"most advanced node (seqno {p.seqno})")
    return Decision(Action.WAIT, f"{winner} bootstraps (seqno {positions[winner].seqno})")


# -- parsing what MariaDB leaves on disk and prints ------------------------------------------------------

def parse_grastate(text: str) -> Position:
    fields = dict(re.findall(r"^(\w+):\s*(\S+)\s*$", text, re.MULTILINE))
    try:
        seqno = int(fields.get("seqno", "-1"))
    except ValueError:
        seqno = -1
    return Position(fields.get("uuid", NO_UUID), seqno, fields.get("safe_to_bootstrap", "0") == "1")


def parse_recovered(output: str) -> tuple[str, int] | None:
    """`galera_recovery` prints --wsrep_start_position=UUID:SEQNO (or nothing when there is nothing to
    recover)."""
    m = re.search(r"--wsrep_start_position=([0-9a-f-]{36}):(-?\d+)", output)
    return (m.group(1), int(m.group(2))) if m else None


def mark_safe_to_bootstrap(text: str) -> str:
    """grastate.dat with safe_to_bootstrap: 1 (MariaDB refuses --wsrep-new-cluster otherwise); herdd only
    does it on the node `decide` picked."""
    if re.search(r"^safe_to_bootstrap:", text, re.MULTILINE):
        return re.sub(r"^safe_to_bootstrap:.*$", "safe_to_bootstrap: 1", text, flags=re.MULTILINE)
    return text.rstrip("\n") + "\nsafe_to_bootstrap: 1\n"


def parse_status(output: str) -> dict[str, str]:
    """`SHOW GLOBAL STATUS LIKE 'wsrep_%'` in --batch --skip-column-names form."""
    out = {}
    for line in output.splitlines():
        name, _, value = line.partition("\t")
        if name:
            out[name] = value
    return out


def is_primary(status: dict[str, str]) -> bool:
    return status.get("wsrep_cluster_status") == "Primary" and status.get("wsrep_ready") == "ON" \
        and status.get("wsrep_local_state_comment") == "Synced"


def pick_db_host(db_nodes: list[str], alive: set[str], serving: dict[str, bool], current: str | None) -> str | None:
    """The db node the web pages should use: the current one while it is alive and serving (with Galera:
    primary and synced), else the first such in spec order. Every primary Galera node takes writes, so
    staying put avoids needless switching."""
    good = [n for n in db_nodes if n in alive and serving.get(n, False)]
    if current in good:
        return current
    return good[0] if good else None

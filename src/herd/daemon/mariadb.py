"""MariaDB/Galera on a db node, as herdd sees and drives it: read the local state (is it running, is it
primary, where is it in the cluster's history), write the node's own wsrep settings, start it as a joiner or
as the bootstrap node. Side effects only; the decisions are in galera.py. Blocking: run off the event loop."""

from __future__ import annotations

import subprocess
from pathlib import Path

from herd.daemon.galera import (
    Position,
    Report,
    is_primary,
    mark_safe_to_bootstrap,
    parse_grastate,
    parse_recovered,
    parse_status,
)

DATADIR = Path("/var/lib/mysql")
NODE_CONF = Path("/etc/mysql/mariadb.conf.d/70-herd-node.cnf")
UNIT = "mariadb.service"


def unit_active(unit: str) -> bool:
    """active or activating (a joiner receiving its state transfer is activating for a while)."""
    r = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, timeout=30)
    return r.stdout.strip() in ("active", "activating", "reloading")


def wsrep_status() -> dict[str, str]:
    r = subprocess.run(["mariadb", "--batch", "--skip-column-names", "-e", "SHOW GLOBAL STATUS LIKE 'wsrep_%'"],
                       capture_output=True, text=True, timeout=30)
    return parse_status(r.stdout) if r.returncode == 0 else {}


class Probe:
    """This node's Report, with the recovered position kept until MariaDB next runs: recovery starts
    mariadbd once (seconds on a thin client) and its answer cannot change while the server is stopped."""

    def __init__(self, datadir: Path = DATADIR) -> None:
        self.datadir = datadir
        self.position: Position | None = None
        self.status: dict[str, str] = {}
        self.error: str | None = None

    def read(self) -> Report:
        if unit_active(UNIT):
            self.position = None
            self.status = wsrep_status()
            return Report(running=True, primary=is_primary(self.status))
        self.status = {}
        if self.position is None:
            self.position = self.recover()
        return Report(running=False, primary=False, position=self.position)

    def recover(self) -> Position | None:
        grastate = self.datadir / "grastate.dat"
        if not grastate.exists():
            return Position()  # never part of a cluster
        position = parse_grastate(grastate.read_text())
        if position.fresh or position.seqno >= 0:
            return position  # a clean shutdown wrote the seqno
        # A crash (power loss): the seqno is in InnoDB; galera_recovery starts mariadbd --wsrep-recover.
        r = subprocess.run(["galera_recovery"], capture_output=True, text=True, timeout=600)
        recovered = parse_recovered(r.stdout)
        if r.returncode != 0 or recovered is None:
            self.error = (r.stderr.strip().splitlines() or ["galera_recovery failed"])[-1]
            return None
        self.error = None
        uuid, seqno = recovered
        return Position(uuid, seqno, position.safe_to_bootstrap)


def write_node_conf(name: str, address: str, path: Path = NODE_CONF) -> None:
    """The per-node wsrep settings: one image serves every db node, so these are written at boot."""
    from herd.daemon.state import write_atomic

    text = (f"# Written by herdd at boot: this db node's own Galera settings.\n[galera]\n"
            f"wsrep_node_name = {name}\nwsrep_node_address = {address}\n")
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text.encode(), 0o644)


def start(bootstrap: bool, datadir: Path = DATADIR) -> str | None:
    """Start MariaDB, joining the running cluster or (bootstrap) creating the primary component. Returns an
    error or None. Blocks until the server is ready, which for a joiner includes its state transfer."""
    if bootstrap:
        grastate = datadir / "grastate.dat"
        if grastate.exists():
            grastate.write_text(mark_safe_to_bootstrap(grastate.read_text()))
        command = ["galera_new_cluster"]
    else:
        command = ["systemctl", "start", UNIT]
    r = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or [f"{command[0]} exited {r.returncode}"])[-1]

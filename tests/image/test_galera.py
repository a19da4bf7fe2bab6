"""Galera with two db nodes and garbd on a director, in VMs that keep their disks across power cuts: herdd
bootstraps the cluster on exactly one node, the other joins; a write on one is read on the other; with one db
node gone the other stays primary thanks to garbd; after a whole-cluster power loss the most advanced node
bootstraps by itself and every committed row is there."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from herd.spec import Role

from ..netns.harness import wait_for
from .conftest import EXAMPLE, make_build
from .lab import Lab, start_lab

NODES = ("dir1", "db1", "db2")
DB2 = '''
[[node]]
name = "db2"
role = "db"
address = "192.168.50.42"
mac = "52:54:00:50:00:42"
'''
TABLE = "site.galera_test"


@pytest.fixture(scope="module")
def galera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    text = EXAMPLE.read_text()
    assert text.count("\n[access]") == 1
    build = make_build(tmp_path_factory.mktemp("galera-build"), text.replace("\n[access]", DB2 + "\n[access]"),
                       [Role.DIRECTOR, Role.DB])
    yield from start_lab(build, tmp_path_factory.mktemp("galera-lab"), NODES, vip_after=None, persistent=True)


def sql(lab: Lab, node: str, query: str) -> str:
    return lab.ssh(node, f"mariadb --batch --skip-column-names -e \"{query}\"").strip()


def wsrep(lab: Lab, node: str, name: str) -> str:
    out = sql(lab, node, f"SHOW GLOBAL STATUS LIKE '{name}'")
    return out.split("\t")[1] if "\t" in out else ""


def synced(lab: Lab, node: str, size: int) -> bool:
    try:
        return (wsrep(lab, node, "wsrep_cluster_status") == "Primary"
                and wsrep(lab, node, "wsrep_local_state_comment") == "Synced"
                and wsrep(lab, node, "wsrep_cluster_size") == str(size))
    except (AssertionError, OSError, subprocess.TimeoutExpired):
        return False  # not up (yet): ssh or mariadb refused


def wait_synced(lab: Lab, nodes: tuple[str, ...], size: int, timeout: float = 600) -> None:
    for node in nodes:
        try:
            wait_for(lambda node=node: synced(lab, node, size), timeout, every=3,
                     what=f"{node} primary and synced in a cluster of {size}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{node}'s console:\n{lab.vms[node].console()[-4000:]}") from None


def decisions(lab: Lab, node: str) -> list[str]:
    return re.findall(r"herd: galera: (bootstrap|join): ", lab.vms[node].console())


def rows(lab: Lab, node: str) -> list[str]:
    return sql(lab, node, f"SELECT note FROM {TABLE} ORDER BY id").splitlines()


def insert(lab: Lab, node: str, notes: list[str]) -> None:
    values = ",".join(f"('{n}')" for n in notes)
    sql(lab, node, f"INSERT INTO {TABLE} (note) VALUES {values}")  # autocommit: committed when it returns


def power_cycle(lab: Lab, *nodes: str) -> None:
    for node in nodes:
        lab.vms[node].stop()  # qemu killed: the power cord, not a shutdown
    for node in nodes:
        lab.power_on(node)


def test_one_node_bootstraps_the_other_joins_and_garbd_arbitrates(galera: Lab) -> None:
    lab = galera
    wait_synced(lab, ("db1", "db2"), 3)  # db1, db2 and garbd on dir1
    assert decisions(lab, "db1") == ["bootstrap"], lab.vms["db1"].console()[-3000:]
    assert decisions(lab, "db2") == ["join"], lab.vms["db2"].console()[-3000:]
    assert re.search(r"herd: galera: bootstrap: first start of the cluster", lab.vms["db1"].console())
    # MariaDB does not start by itself: herdd starts it (the unit is disabled in the image).
    assert lab.ssh("db1", "systemctl is-enabled mariadb.service mariadb.socket || true").split() == ["disabled"] * 2
    assert lab.ssh("db2", "cat /etc/mysql/mariadb.conf.d/70-herd-node.cnf").count("192.168.50.42") == 1
    # herdctl on the director shows garbd running and both db nodes primary.
    status = json.loads(lab.ssh("dir1", "herdctl status --json"))
    nodes = {n["name"]: n for n in status["nodes"]}
    wait_for(lambda: json.loads(lab.ssh("dir1", "herdctl status --json"))["nodes"][0]["health"].get("garbd"),
             60, every=2, what="garbd reported on dir1")
    for db in ("db1", "db2"):
        assert nodes[db]["state"] == "alive"
    # The spec's database and user were created on the cluster, and reached db2 by replication.
    wait_for(lambda: "site" in sql(lab, "db2", "SHOW DATABASES"), 120, every=2, what="database site on db2")
    assert sql(lab, "db2", "SELECT user FROM mysql.user WHERE user='site'") == "site"


def test_a_write_on_one_is_read_on_the_other(galera: Lab) -> None:
    lab = galera
    sql(lab, "db1", f"CREATE TABLE IF NOT EXISTS {TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(32))")
    insert(lab, "db1", ["from-db1"])
    insert(lab, "db2", ["from-db2"])
    assert rows(lab, "db2") == ["from-db1", "from-db2"]
    assert rows(lab, "db1") == ["from-db1", "from-db2"]


def test_whole_cluster_power_loss_comes_back_with_every_row(galera: Lab) -> None:
    lab = galera
    before = rows(lab, "db1")
    insert(lab, "db1", ["a1", "a2"])
    insert(lab, "db2", ["a3"])
    start = time.monotonic()
    power_cycle(lab, "db1", "db2")  # both at once
    wait_synced(lab, ("db1", "db2"), 3)
    print(f"whole-cluster power loss: primary again in {time.monotonic() - start:.0f} s")
    booted = [n for n in ("db1", "db2") if decisions(lab, n) == ["bootstrap"]]
    assert len(booted) == 1, {n: decisions(lab, n) for n in ("db1", "db2")}
    assert rows(lab, "db1") == rows(lab, "db2") == [*before, "a1", "a2", "a3"]


def test_with_garbd_the_survivor_stays_primary_and_after_a_power_loss_the_most_advanced_node_bootstraps(
        galera: Lab) -> None:
    """db1 goes first; db2 stays primary with garbd's vote and takes more writes; then db2 goes too. db2 must
    bootstrap even though db1 comes first by name, or the rows written in between would be lost; db1 joins
    and catches up on them."""
    lab = galera
    before = rows(lab, "db1")
    lab.vms["db1"].stop()
    wait_for(lambda: synced(lab, "db2", 2), 60, every=2, what="db2 primary with garbd alone")
    insert(lab, "db2", ["only-on-db2-1", "only-on-db2-2"])
    lab.vms["db2"].stop()
    lab.power_on("db1")
    lab.power_on("db2")
    wait_synced(lab, ("db1", "db2"), 3)
    assert decisions(lab, "db2") == ["bootstrap"], lab.vms["db2"].console()[-3000:]
    assert decisions(lab, "db1") == ["join"], lab.vms["db1"].console()[-3000:]
    assert re.search(r"herd: galera: bootstrap: most advanced node", lab.vms["db2"].console())
    assert rows(lab, "db1") == [*before, "only-on-db2-1", "only-on-db2-2"]

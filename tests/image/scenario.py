"""Pieces of the whole-cluster scenario shared by its test (test_cluster.py) and its benchmark
(bench/cluster.py): a client load on the VIP, waiting until the cluster has joined, reading the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..netns.harness import wait_for
from .lab import VM_NODES, Lab

TAGGED = Path(__file__).with_name("tagged.php")

# A client hammering the VIP: the static page and the test's PHP page (put_tagged_page: a row per request, with
# its ?tag=), one request every 0.1 s, a line of JSON per request, until the stop file appears.
LOAD = """
import json, os, sys, time, urllib.error, urllib.request
vip, stop = sys.argv[1], sys.argv[2]
i = 0
while not os.path.exists(stop):
    i += 1
    path = "/index.html" if i % 2 else f"/tagged.php?tag=r{i}"
    start = time.time()
    try:
        with urllib.request.urlopen(f"http://{vip}{path}", timeout=2) as r:
            code, body = r.status, r.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        code, body = e.code, str(e)
    except Exception as e:
        code, body = 0, str(e)
    print(json.dumps({"t": start, "path": path, "code": code, "body": body[:100]}), flush=True)
    time.sleep(0.1)
"""


def put_tagged_page(lab: Lab, export: str = "/srv/herd/www") -> None:
    """The test page into the docroot on the nfs node, once both web nodes serve it (the example's counter.php
    keeps one row per web node: it cannot say which requests were stored)."""
    lab.put("nfs1", [TAGGED], export)
    for address in ("192.168.50.21", "192.168.50.22"):
        wait_for(lambda address=address: lab.fetch_text("/tagged.php", address).strip() != "", 60, every=1,
                 what=f"{address} serving tagged.php")


def bring_everyone_up(lab: Lab) -> None:
    off = [name for name in VM_NODES if not lab.running(name)]
    for name in off:
        lab.power_on(name, background=True)
    lab.wait_ready(off)


def joined(lab: Lab, director: str) -> dict[str, Any] | None:
    """The director's status once it shows all six alive, a VIP holder and both web nodes in the table."""
    status = lab.status(director)
    states = {n["name"]: n["state"] for n in status["nodes"]}
    weights = {rs["name"]: rs["weight"] for svc in status["services"] for rs in svc["real_servers"]}
    if set(states.values()) == {"alive"} and status["vip"]["holder"] and weights == {"web1": 1, "web2": 1}:
        return status
    return None


def wait_joined(lab: Lab, timeout: float = 600) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        for director in ("dir1", "dir2"):
            if lab.running(director) and (status := joined(lab, director)):
                found.append(status)
                return True
        return False

    wait_for(check, timeout, every=3, what="six alive nodes, a VIP holder and both web nodes in the IPVS table")
    return found[-1]


def db_tags(lab: Lab) -> set[str]:
    out = lab.ssh("db1", "mariadb --batch --skip-column-names -e 'SELECT tag FROM site.tagged WHERE tag IS NOT NULL'")
    return set(out.split())

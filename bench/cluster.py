#!/usr/bin/env python3
"""Whole-cluster benchmark (figures, not asserts), on the example cluster as six QEMU VMs (TCG, 512 MB each):

- power-on to "all six joined" (every box powered on at once from a fresh copy of its image; median of --boots);
- client-visible outage per director failover (the VIP holder's VM switched off under a load of static and PHP
  requests; the longest gap between two answered requests; median/max of --failovers), failed requests per
  failover, and rows lost (PHP requests answered 200 whose row is not in the database: must be 0).

Results are kept in $HERD_CACHE/bench/cluster-<release>.json and shown beside the previous release's.

    python3 bench/cluster.py [--boots 3] [--failovers 5]    (as root; builds the example first, cache allowed)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "src"))

from tests.image.conftest import make_build  # noqa: E402
from tests.image.lab import VM_NODES, Lab, start_lab  # noqa: E402
from tests.image.scenario import LOAD, db_tags, put_tagged_page, wait_joined  # noqa: E402
from tests.netns.harness import wait_for  # noqa: E402

RESULTS = Path(os.environ.get("HERD_CACHE", "/var/cache/herd")) / "bench"


def failover(lab: Lab, stop_file: Path) -> dict[str, float]:
    holder = wait_joined(lab)["vip"]["holder"]
    other = "dir2" if holder == "dir1" else "dir1"
    load = subprocess.Popen(["ip", "netns", "exec", lab.client, sys.executable, "-c", LOAD,
                             str(lab.build.spec.network.vip), str(stop_file)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(5)
        takes = lab.vms[other].console().count(f"herd: {other} takes the VIP")
        killed = time.time()
        lab.vms[holder].stop()
        wait_for(lambda: lab.vms[other].console().count(f"herd: {other} takes the VIP") > takes, 60, every=0.5,
                 what=f"{other} taking the VIP")
        time.sleep(8)
    finally:
        stop_file.touch()
        out, _ = load.communicate(timeout=60)
        stop_file.unlink()
    results = [json.loads(line) for line in out.splitlines()]
    answered = [r["t"] for r in results if r["code"] == 200]
    gap = max((b - a for a, b in itertools.pairwise(answered) if a >= killed - 2), default=0.0)
    failed = sum(1 for r in results if r["code"] != 200)
    tags = {r["path"].split("tag=")[1] for r in results if r["code"] == 200 and "tag=" in r["path"]}
    lost = len(tags - db_tags(lab))
    lab.power_on(holder, background=True)
    lab.wait_ready([holder])
    return {"outage_s": round(gap, 2), "failed": failed, "lost": lost}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boots", type=int, default=3)
    p.add_argument("--failovers", type=int, default=5)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir="/var/tmp"))
    (work / "build").mkdir()
    build = make_build(work / "build", (PROJECT / "examples/cluster.toml").read_text())
    boots: list[float] = []
    runs: list[dict[str, float]] = []
    for i in range(args.boots):
        start = time.monotonic()
        lab_gen = start_lab(build, work / f"boot{i}", VM_NODES, vip_after=None, persistent=True)
        lab = next(lab_gen)
        try:
            wait_joined(lab, 900)
            boots.append(time.monotonic() - start)
            print(f"boot {i + 1}: all six joined after {boots[-1]:.0f} s", flush=True)
            if i == args.boots - 1:
                put_tagged_page(lab)
                for j in range(args.failovers):
                    runs.append(failover(lab, work / "stop"))
                    print(f"failover {j + 1}: {runs[-1]}", flush=True)
        finally:
            lab_gen.close()
            subprocess.run(["rm", "-rf", str(work / f"boot{i}")], check=False)
    release = build.spec.release
    figures: dict[str, Any] = {
        "release": release, "date": time.strftime("%Y-%m-%d"),
        "joined_s_median": round(statistics.median(boots), 1) if boots else None,
        "outage_s_median": statistics.median(r["outage_s"] for r in runs) if runs else None,
        "outage_s_max": max((r["outage_s"] for r in runs), default=None),
        "failed_per_failover_median": statistics.median(r["failed"] for r in runs) if runs else None,
        "rows_lost": sum(r["lost"] for r in runs),
        "boots": len(boots), "failovers": len(runs),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = sorted(p for p in RESULTS.glob("cluster-*.json") if p.name != f"cluster-{release}.json")
    (RESULTS / f"cluster-{release}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    if previous:
        print(f"previous release ({previous[-1].name}):\n{previous[-1].read_text()}")
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Replicated-storage benchmarks (figures, not asserts), on the DRBD lab of the QEMU tests (tests/image/
test_drbd.py: dir1, web1, nfs1, nfs2, each nfs node with a second disk; TCG-emulated VMs):

- the NFS service outage seen by a writer on the web node (fsync per line, 10 lines/s): the longest gap between
  acknowledged lines around each power cut of the serving nfs node, median and max over N failovers;
- acknowledged lines lost (target 0) and the resync time of the old primary once it is powered on again;
- write throughput (dd, O_DIRECT) on the DRBD filesystem of the serving node against its own root disk.

    python3 bench/storage.py [--failovers 5]     (as root; builds the lab's images first, cached trees help)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "src"))

from herd.spec import Role  # noqa: E402
from tests.image.conftest import make_build  # noqa: E402
from tests.image.lab import start_lab  # noqa: E402
from tests.image.test_drbd import (  # noqa: E402
    NODES,
    acked,
    check_lines,
    longest_gap,
    spec_text,
    start_writer,
    stop_writer,
    wait_in_sync,
)
from tests.netns.harness import wait_for  # noqa: E402


def throughput(lab: object, node: str, path: str) -> float:
    out = lab.ssh(node, f"dd if=/dev/zero of={path} bs=1M count=64 oflag=direct 2>&1; rm -f {path}")  # type: ignore[attr-defined]
    m = re.search(r"([\d.]+) ([MG])B/s", out)
    if not m:
        return 0.0
    return float(m.group(1)) * (1000 if m.group(2) == "G" else 1)


TAKEOVER = re.compile(r"herd: (\S+) serves the docroot on \S+ \(\S+ is down, silent ([\d.]+) s; "
                      r"ready ([\d.]+) s after the decision: ([^)]*)\)")


def takeover(console: str) -> tuple[float, float, dict[str, float]] | None:
    """From the new server's last takeover line: how long the old one had been silent when it decided, how long
    serving took, and each step of that."""
    found = TAKEOVER.findall(console)
    if not found:
        return None
    _, silent, ready, steps = found[-1]
    laps = {step: float(seconds) for step, seconds in re.findall(r"(\w+) ([\d.]+) s", steps)}
    return float(silent), float(ready), laps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failovers", type=int, default=5, help="power cuts of the serving node (%(default)s)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/storage.py needs root")
    work = Path(tempfile.mkdtemp(prefix="herd-bench-storage-"))
    lab_iter = None
    try:
        (work / "build").mkdir()
        build = make_build(work / "build", spec_text(), [Role.DIRECTOR, Role.WEB, Role.NFS])
        lab_iter = start_lab(build, work / "lab", NODES, vip_after=None, persistent=True)
        lab = next(lab_iter)
        wait_in_sync(lab, "nfs1", 600)
        lab.ssh("nfs1", "mkdir -p /srv/herd/www/writes && chown www-data /srv/herd/www/writes")
        drbd = throughput(lab, "nfs1", "/var/lib/herd/drbd/bench")
        local = throughput(lab, "nfs1", "/var/tmp/bench")
        start_writer(lab)
        outages, resyncs = [], []
        breakdowns: list[tuple[float, float, dict[str, float]]] = []
        server = "nfs1"
        for i in range(args.failovers):
            other = "nfs2" if server == "nfs1" else "nfs1"
            before = lab.vms[other].console().count(f"herd: {other} serves the docroot")
            lab.vms[server].stop()
            cut = time.time()
            wait_for(lambda other=other, before=before: lab.vms[other].console().count(
                f"herd: {other} serves the docroot") > before, 120, every=0.5, what=f"{other} serving")
            wait_for(lambda: acked(lab)[-1][1] > time.time() - 2, 120, every=1, what="the writer going on")
            time.sleep(3)
            outages.append(longest_gap(acked(lab), cut))
            lab.power_on(server)
            back = time.monotonic()
            wait_in_sync(lab, other, 600)
            resyncs.append(time.monotonic() - back)
            taken = takeover(lab.vms[other].console())
            detail = ""
            if taken is not None:
                silent, ready, laps = taken
                breakdowns.append(taken)
                detail = (f" = {server} silent {silent:.1f} s when {other} decided + {ready:.1f} s to serve ("
                          + ", ".join(f"{k} {v:.1f}" for k, v in laps.items())
                          + f"), the rest {outages[-1] - silent - ready:+.1f} s (the web node reconnecting; the"
                          " silence counts from the last heartbeat, the outage from the last acknowledged line)")
            print(f"failover {i + 1}: {server} -> {other}: writer outage {outages[-1]:.1f} s{detail}; "
                  f"{server} back in sync {resyncs[-1]:.0f} s after power-on", flush=True)
            server = other
        pairs = stop_writer(lab)
        try:
            check_lines(lab, server, pairs)
            lost = 0
        except AssertionError as exc:
            print(f"  {exc}")
            lost = -1
        print(f"NFS failover (power cut of the serving nfs node), {len(outages)} runs, writer fsyncing 10 lines/s:")
        print(f"  outage seen by the writer   median {statistics.median(outages):.1f} s   max {max(outages):.1f} s"
              "   (target < 10 s)")
        if breakdowns:
            steps = {k: statistics.median(b[2].get(k, 0.0) for b in breakdowns) for k in breakdowns[0][2]}
            silent = statistics.median(b[0] for b in breakdowns)
            serving = statistics.median(b[1] for b in breakdowns)
            print(f"  of which (medians)          silent before the decision {silent:.1f} s (deadtime, grace, "
                  f"everyone's verdict), serving {serving:.1f} s ("
                  + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()) + ")")
        print(f"  acknowledged lines lost     {'0' if lost == 0 else 'SOME (see above)'} of {len(pairs)}")
        print(f"  old primary back in sync    median {statistics.median(resyncs):.0f} s after its power-on "
              "(boot included)")
        print(f"write throughput (dd 64 MiB, O_DIRECT) on nfs1: DRBD {drbd:.1f} MB/s, local disk {local:.1f} MB/s")
    finally:
        if lab_iter is not None:
            lab_iter.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

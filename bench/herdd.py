#!/usr/bin/env python3
"""herdd benchmarks (figures, not asserts), with six herdd processes in network namespaces on one bridge:

- failure detection: kill a node, time until the last peer marks it dead; median and max over 20 kills
  (target: deadtime + one interval);
- RSS and CPU of an idle herdd (targets: RSS under 40 MB, CPU under 1 % of one core);
- the zipapp's start to ready, first run (unpacks into SHIV_ROOT) and later runs (target: under 1 s).

    python3 bench/herdd.py       (as root, after `tests/run` or `build.py` has made the venv and zipapp)
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "src"))

from herd.spec import load  # noqa: E402
from tests.netns.harness import Cluster, Herdd, wait_for  # noqa: E402

CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd"))


def detection(cluster: Cluster, kills: int) -> list[float]:
    names = list(cluster.nodes)
    times = []
    for i in range(kills):
        victim = cluster.nodes[names[i % len(names)]]
        others = [h for h in cluster.nodes.values() if h is not victim]
        wait_for(cluster.all_see_all_alive, 15, what="all alive")
        time.sleep(0.3)
        victim.kill()
        start = time.monotonic()
        pending = set(h.name for h in others)
        while pending:
            for h in others:
                if h.name in pending and h.states()[victim.name] == "dead":
                    pending.discard(h.name)
            time.sleep(0.005)
        times.append(time.monotonic() - start)
        victim.start()
    return times


def idle(cluster: Cluster, seconds: float) -> tuple[float, float]:
    procs = [psutil.Process(h.proc.pid) for h in cluster.nodes.values() if h.proc is not None]
    for p in procs:
        p.cpu_percent(None)
    time.sleep(seconds)
    cpu = max(p.cpu_percent(None) for p in procs)
    rss = max(p.memory_info().rss for p in procs) / 2**20
    return rss, cpu


def zipapp_start(cluster: Cluster, work: Path) -> list[float]:
    apps = sorted((CACHE / "zipapp").glob("*.pyz"), key=lambda p: p.stat().st_mtime)
    if not apps:
        return []
    ns = cluster.lan.host("zipapp")
    herdd = Herdd("dir1", ns, cluster.nodes["dir1"].spec_path, cluster.nodes["dir1"].key, work / "zipapp")
    shiv_root = work / "shiv"
    results = []
    for _ in range(3):
        herdd.log.unlink(missing_ok=True)
        herdd.work.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with open(herdd.log, "wb") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "/usr/bin/python3", str(apps[-1]), "--spec", str(herdd.spec_path),
                 "--key", str(herdd.key), "--state-dir", str(herdd.state), "--socket", str(herdd.socket),
                 "--sandbox", "--node", "dir1"], stdout=log, stderr=subprocess.STDOUT,
                env={"SHIV_ROOT": str(shiv_root), "PATH": os.environ["PATH"]})
        wait_for(lambda: "ready" in herdd.log.read_text(), 30, every=0.01, what="zipapp ready")
        results.append(time.monotonic() - start)
        proc.terminate()
        proc.wait()
    return results


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/herdd.py needs root (network namespaces)")
    spec_path = PROJECT / "examples/cluster.toml"
    spec = load(spec_path)
    work = Path(tempfile.mkdtemp(prefix="herd-bench-"))
    key = work / "cluster.key"
    key.write_text(secrets.token_hex(32))
    cluster = Cluster(spec, spec_path, key, work, f"b{os.getpid() % 100000}")
    try:
        cluster.start()
        wait_for(cluster.all_see_all_alive, 15, what="all alive")
        rss, cpu = idle(cluster, 10)
        times = detection(cluster, 20)
        # The zipapp node impersonates dir1 in its own namespace; stop the real one first.
        cluster.nodes["dir1"].kill()
        starts = zipapp_start(cluster, work)
    finally:
        cluster.close()
    m = spec.membership
    print(f"failure detection over {len(times)} kills: median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms (deadtime {m.deadtime_ms} ms + interval {m.interval_ms} ms "
          f"= {m.deadtime_ms + m.interval_ms} ms)")
    print(f"idle herdd, 6 nodes: RSS {rss:.1f} MB, CPU {cpu:.2f} % of one core (worst of the six, 10 s)")
    if starts:
        print(f"zipapp start to ready: first run {starts[0]:.2f} s (unpacks), then "
              + ", ".join(f"{s:.2f} s" for s in starts[1:]))
    else:
        print("zipapp start to ready: no zipapp in the cache yet (run build.py first)")


if __name__ == "__main__":
    main()

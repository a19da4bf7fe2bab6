#!/usr/bin/env python3
"""Off-site failover through DNS (figures, not asserts). Needs root, bind9 and dig (image/test-packages.txt).

The two sites of tests/netns/sites.py (two directors and a web node each, bind9 as the authoritative server
with a TSIG key). Each run: every node of the main site is killed (SIGKILL, and its cables pulled) and a
poller in the client namespace asks bind9 for the name every 20 ms until it answers with the backup VIP;
then the main site comes back and the name returns to it (auto failback) before the next run. The figure is
the time from the kill to the authoritative answer; the target is down_seconds + 1 s. The down timer starts
when the first failing probe round began, so detection costs up to one probe interval (0.5 s) on top of
down_seconds, and a round already under way at the kill can make it a little shorter than down_seconds.

    python3 bench/dns.py [--runs 5] [--down 3] [--up 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "src"))

from tests.netns.harness import wait_for  # noqa: E402
from tests.netns.sites import BACKUP_VIP, DNS, MAIN_VIP, NAME, Sites  # noqa: E402

# In the client namespace: waits for "go", then asks the server until the name is the wanted address.
POLL = ("import sys,time,dns.message,dns.query\n"
        "name,server,want=sys.argv[1:4]\n"
        "sys.stdin.readline(); t=time.monotonic()\n"
        "while True:\n"
        "  try:\n"
        "    r=dns.query.udp(dns.message.make_query(name,'A'),server,timeout=0.2)\n"
        "    if {a.address for s in r.answer for a in s}=={want}: break\n"
        "  except Exception: pass\n"
        "  time.sleep(0.02)\n"
        "print(time.monotonic()-t, flush=True)\n")


def main_seen_up(sites: Sites) -> bool:
    holder = sites.holder("b")
    return holder is not None and sites.site(holder)["main"] == "up"


def one_run(sites: Sites) -> float:
    poller = subprocess.Popen(["ip", "netns", "exec", sites.client, sys.executable, "-c", POLL, NAME, DNS,
                               BACKUP_VIP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(PROJECT / "src")})
    time.sleep(0.5)  # the poller is up (python started, dnspython imported)
    assert poller.stdin is not None
    poller.stdin.write("go\n")  # the clock starts before the first kill: killing takes some time too
    poller.stdin.flush()
    sites.kill_main()
    out, _ = poller.communicate(timeout=120)
    return float(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--down", type=float, default=3.0, help="[site] down_seconds (default 3)")
    p.add_argument("--up", type=float, default=4.0, help="[site] up_seconds (default 4)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/dns.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="herd-bench-dns-") as tmp:
        sites = Sites(Path(tmp), f"d{os.getpid() % 100000}", down=args.down, up=args.up)
        times = []
        try:
            wait_for(lambda: main_seen_up(sites), 60, what="the backup holder sees the main site up")
            for run in range(1, args.runs + 1):
                took = one_run(sites)
                times.append(took)
                print(f"run {run}: main site killed -> {NAME} is {BACKUP_VIP} at the server after {took:.2f} s",
                      flush=True)
                sites.revive_main()
                wait_for(lambda: sites.dig() == [MAIN_VIP], args.up + 60, every=0.2, what="failback")
                wait_for(lambda: main_seen_up(sites), 60, what="the backup holder sees the main site up")
        finally:
            sites.close()
    target = args.down + 1
    print(f"\ndeath -> backup VIP at the authoritative server, {len(times)} runs "
          f"(down_seconds {args.down:g}, probe every 0.5 s, check timeout 0.5 s):")
    print(f"  median {statistics.median(times):.2f} s   max {max(times):.2f} s   min {min(times):.2f} s   "
          f"target {target:g} s (down_seconds + 1 s): {'met' if max(times) <= target else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

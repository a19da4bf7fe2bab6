"""The acceptance test, as a user would live it: the example cluster's six boxes, each booted from its own copy
of its role's image (web1 and web2 from byte-identical copies: web1 known by its MAC, web2's box claiming the
free slot), join with no human input; the service keeps answering while the VIP holder and a web node die and
come back; and after a power loss of every box at once the cluster comes back by itself with the same
identities and data.

Runs last on the lab (lab.py), after the other lab tests, which may have left VMs switched off."""

from __future__ import annotations

import itertools
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

from ..netns.harness import wait_for
from .lab import VM_NODES, Lab
from .scenario import LOAD, bring_everyone_up, db_tags, put_tagged_page, wait_joined

GRACE = 3.0  # the load's 2 s client timeout, and the 0.5 s at which the test polls the console


def test_every_box_joins_with_no_human_input(lab: Lab) -> None:
    bring_everyone_up(lab)
    status = wait_joined(lab)
    assert len(status["nodes"]) == 6
    assert status["ipvs"] == "in sync"
    # web1 and web2 booted from copies of one image: web1 found itself by its MAC, web2's box claimed the slot.
    for name in VM_NODES:
        assert lab.ssh(name, "hostname").strip() == name
        how = f"claimed by {lab.macs[name]}" if name in lab.macs else "mac"
        assert json.loads(lab.ssh(name, "cat /var/lib/herd/identity.json"))["how"] == how
        # herdd's packages were unpacked at build time: nothing of it is written on the node
        assert lab.ssh(name, "ls -a /root/.shiv 2>/dev/null | wc -l").strip() == "0"


def test_the_service_rides_out_a_dying_director_and_web_node(lab: Lab, tmp_path: Path) -> None:
    bring_everyone_up(lab)
    status = wait_joined(lab)
    put_tagged_page(lab)
    holder = status["vip"]["holder"]
    other = "dir2" if holder == "dir1" else "dir1"
    stop = tmp_path / "stop"
    load = subprocess.Popen(["ip", "netns", "exec", lab.client, sys.executable, "-c", LOAD,
                             str(lab.build.spec.network.vip), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(8)  # a baseline with everyone up
        takes = lab.vms[other].console().count(f"herd: {other} takes the VIP")
        t_director = time.time()
        lab.vms[holder].stop()  # power cut of the VIP holder
        t_took = t_director + wait_for(
            lambda: lab.vms[other].console().count(f"herd: {other} takes the VIP") > takes, 60, every=0.5,
            what=f"{other} taking the VIP")
        time.sleep(8)
        downs = lab.vms[other].console().count("herd: web1 is down for http")
        t_web = time.time()
        lab.vms["web1"].stop()
        t_down = t_web + wait_for(
            lambda: lab.vms[other].console().count("herd: web1 is down for http") > downs, 60, every=0.5,
            what="web1 taken out of rotation")
        time.sleep(5)
        ups = lab.vms[other].console().count("herd: web1 is up for http")
        t_back = time.time()
        lab.power_on(holder, background=True)  # the four serving VMs keep the CPU while these two boot
        lab.power_on("web1", background=True)
        lab.wait_ready([holder, "web1"])
        wait_for(lambda: lab.vms[other].console().count("herd: web1 is up for http") > ups, 300, every=1,
                 what="web1 back in rotation")
        time.sleep(10)  # the returning director has listened for a deadtime: it could have taken the VIP by now
    finally:
        stop.touch()
        out, _ = load.communicate(timeout=60)
    results = [json.loads(line) for line in out.splitlines()]
    failed = [r for r in results if r["code"] != 200]
    # Requests may fail from a client timeout before a kill (one in flight when the power goes) until the
    # survivor has acted on it (taken the VIP, taken web1 out) and a request started then has had its timeout.
    # How long the survivor took is the benchmark's to report (TCG with six VMs on two cores is no measure).
    windows = [(t_director - 3, t_took + GRACE), (t_web - 3, t_down + GRACE)]
    outside = [r for r in failed if not any(a <= r["t"] <= b for a, b in windows)]
    if outside:
        herd = "\n".join(line for line in lab.vms[other].console().splitlines()[-400:] if "herd" in line)
        raise AssertionError(
            f"{len(outside)} requests failed outside the failover windows; seconds after the director's kill: "
            f"takeover seen {t_took - t_director:.1f}, web1 killed {t_web - t_director:.1f}, out of rotation "
            f"{t_down - t_director:.1f}, both back on {t_back - t_director:.1f}; failed at "
            f"{[round(r['t'] - t_director, 1) for r in outside[:30]]} ({outside[0]['body']}); {other} said:\n"
            f"{herd[-6000:]}")
    assert [r for r in results if r["t"] >= t_back and r["code"] != 200] == []  # coming back costs nothing
    php_ok = [r for r in results if r["path"].startswith("/tagged.php") and r["code"] == 200]
    static_ok = [r for r in results if r["path"] == "/index.html" and r["code"] == 200]
    assert len(php_ok) > 20 and len(static_ok) > 20, (len(php_ok), len(static_ok))
    tags = {r["path"].split("tag=")[1] for r in php_ok}
    missing = tags - db_tags(lab)
    assert not missing, f"answered PHP requests whose row is not in the database: {sorted(missing)[:10]}"
    answered = [r["t"] for r in results if r["code"] == 200]
    gaps = [b - a for a, b in itertools.pairwise(answered) if t_director - 1 <= a <= t_took + GRACE]
    gap = max(gaps, default=0.0)
    print(f"director failover: {len([r for r in failed if r['t'] < t_web])} failed requests, longest gap between "
          f"answers {gap:.1f} s; web node loss: {len([r for r in failed if r['t'] >= t_web])} "
          f"failed; {len(php_ok)} PHP rows all present")
    # The outage is bounded by the timing: the standby takes over a deadtime after the holder's last heartbeat
    # (at most an interval before the cut), announces the VIP at once; a request whose SYN went to the dead
    # holder meanwhile is sent again after TCP's first retransmission timeout (1 s); then a fraction of a
    # second to answer.
    timing = lab.build.spec.membership
    bound = (timing.deadtime_ms + timing.interval_ms) / 1000 + 1.5
    assert gap <= bound, f"the director failover left a {gap:.1f} s gap between answers (at most {bound:.1f} s)"
    # No preemption: the director that came back stays standby.
    assert lab.status(holder)["vip"]["holder"] == other
    assert lab.status(other)["vip"]["holder"] == other


def test_after_a_power_loss_of_every_box_the_cluster_comes_back_by_itself(lab: Lab) -> None:
    bring_everyone_up(lab)
    wait_joined(lab)
    before = db_tags(lab)
    assert before, "the previous test left rows to look for"
    identities = {name: lab.ssh(name, "cat /var/lib/herd/identity.json") for name in VM_NODES}
    marker = secrets.token_hex(8)
    lab.ssh("nfs1", f"echo {marker} > /srv/herd/www/power.txt && sync")
    for name in VM_NODES:
        lab.vms[name].stop()  # every plug pulled at once
    start = time.monotonic()
    for name in VM_NODES:
        lab.power_on(name)
    lab.wait_ready(list(VM_NODES), 900)
    wait_joined(lab, 900)
    print(f"power loss: every node joined again after {time.monotonic() - start:.0f} s")
    for name in VM_NODES:  # who is who outlives the power cut, a claimed slot too (no new claim)
        assert lab.ssh(name, "hostname").strip() == name
        assert lab.ssh(name, "cat /var/lib/herd/identity.json") == identities[name]
        assert "herd: claimed slot" not in lab.vms[name].console()
    wait_for(lambda: before <= db_tags(lab), 300, every=3, what="every row from before the power loss")
    wait_for(lambda: lab.fetch("/power.txt", 4) == [marker] * 4, 120, every=2, what="the file written before")

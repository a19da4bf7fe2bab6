#!/usr/bin/env python3
"""VIP failover, herd against keepalived (figures, not asserts). Needs root; installs Debian's keepalived
if missing.

For each system, 20 times: the VIP holder is killed (SIGKILL: a crash, not a polite stop), and a client on
the same bridge measures the time until its first successful TCP connection to the VIP. Same namespaces and
bridge for everyone; keepalived runs VRRP between two directors with its default advert_int (1 s) and its
fastest setting that stays stable here (advert_int 0.1, VRRPv3); herd with the example's timing and tuned
(interval 50 ms, deadtime 250 ms).

    python3 bench/failover.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "src"))

from herd.spec import load  # noqa: E402
from tests.netns.harness import Cluster, Lan, wait_for  # noqa: E402

VIP = "192.168.50.10"
SERVE = ("import socket,sys\n"
         "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         "s.bind(('0.0.0.0',8080)); s.listen()\n"
         "while True:\n"
         "  c,_=s.accept(); c.close()\n")
# Started just before the kill: tries every 10 ms, prints the seconds until a connection succeeds.
PROBE = ("import socket,sys,time\n"
         "sys.stdin.readline(); t=time.monotonic()\n"
         "while True:\n"
         "  try:\n"
         "    socket.create_connection((sys.argv[1],8080),timeout=0.05).close(); break\n"
         "  except OSError: time.sleep(0.01)\n"
         "print(time.monotonic()-t, flush=True)\n")


def measure(client: str, kill: object) -> float:
    probe = subprocess.Popen(["ip", "netns", "exec", client, sys.executable, "-c", PROBE, VIP],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    kill()  # type: ignore[operator]
    assert probe.stdin is not None
    probe.stdin.write("go\n")
    probe.stdin.flush()
    out, _ = probe.communicate(timeout=30)
    return float(out)


def reboot(ns: str) -> None:
    """What a reboot clears and a killed process leaves behind: the VIP on the interface."""
    subprocess.run(["ip", "-n", ns, "addr", "del", f"{VIP}/24", "dev", "eth0"], capture_output=True)


def servers(namespaces: list[str]) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVE]) for ns in namespaces]


def herd_runs(runs: int, work: Path, interval_ms: int = 200, deadtime_ms: int = 1000) -> list[float]:
    text = (PROJECT / "examples/cluster.toml").read_text()
    text = text.replace("interval_ms = 200", f"interval_ms = {interval_ms}").replace(
        "deadtime_ms = 1000", f"deadtime_ms = {deadtime_ms}")
    spec_path = work / f"cluster-{deadtime_ms}.toml"
    spec_path.write_text(text)
    key = work / "cluster.key"
    key.write_text(secrets.token_hex(32))
    cluster = Cluster(load(spec_path), spec_path, key, work / f"herd-{deadtime_ms}", f"f{deadtime_ms}")
    procs = []
    try:
        cluster.start()
        client = cluster.lan.host("client", address="192.168.50.99/24")
        procs = servers([cluster.nodes["dir1"].ns, cluster.nodes["dir2"].ns])
        times = []
        for _ in range(runs):
            wait_for(lambda: {h.status()["vip"]["holder"] for h in cluster.nodes.values()} - {None} != set()
                     and all(set(h.states().values()) == {"alive"} for h in cluster.nodes.values()), 20)
            holder = cluster.nodes["dir1"].status()["vip"]["holder"]
            time.sleep(1.5)

            def crash(holder: str = holder) -> None:
                cluster.lan.unplug(holder)  # a power cut: nothing of it answers any more
                cluster.nodes[holder].kill()

            times.append(measure(client, crash))
            reboot(cluster.nodes[holder].ns)
            cluster.lan.unplug(holder, plugged=True)
            cluster.nodes[holder].start()
        return times
    finally:
        for p in procs:
            p.kill()
        cluster.close()


KEEPALIVED = """\
global_defs {{
    router_id {name}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {advert}
    {version}
    virtual_ipaddress {{
        {vip}/24
    }}
}}
"""


def keepalived_runs(runs: int, work: Path, advert: float) -> list[float]:
    lan = Lan(f"k{os.getpid() % 10000}{int(advert * 10)}")
    daemons: dict[str, subprocess.Popen[bytes]] = {}
    procs = []
    try:
        nss = {"k1": lan.host("k1", address="192.168.50.11/24"), "k2": lan.host("k2", address="192.168.50.12/24")}
        client = lan.host("client", address="192.168.50.99/24")
        procs = servers(list(nss.values()))

        def start(name: str) -> None:
            conf = work / f"{name}-{advert}.conf"
            conf.write_text(KEEPALIVED.format(name=name, priority=200 if name == "k1" else 100, advert=advert,
                                              version="" if advert >= 1 else "version 3", vip=VIP))
            # Fresh pid files each start: a killed keepalived leaves its own behind.
            run = Path(tempfile.mkdtemp(prefix=f"{name}-{advert}-", dir=work))
            daemons[name] = subprocess.Popen(
                ["ip", "netns", "exec", nss[name], "keepalived", "-n", "-l", "-P", "-f", str(conf),
                 "-p", str(run / "k.pid"), "-r", str(run / "v.pid")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def holder() -> str | None:
            for name, ns in nss.items():
                out = subprocess.run(["ip", "-n", ns, "addr", "show", "eth0"], capture_output=True, text=True).stdout
                if VIP in out:
                    return name
            return None

        for name in nss:
            start(name)
        times = []
        for _ in range(runs):
            wait_for(lambda: holder() is not None and all(d.poll() is None for d in daemons.values()), 20)
            # Settled: a restarted higher-priority keepalived preempts; kill only once that is over and the
            # holder has kept the VIP for a while.
            stable_since, name = time.monotonic(), holder()
            while time.monotonic() - stable_since < max(5 * advert, 1.5):
                time.sleep(0.05)
                now_holder = holder()
                if now_holder != name:
                    stable_since, name = time.monotonic(), now_holder
            assert name is not None

            def kill(name: str = name) -> None:
                # A power cut: the cable goes dead and keepalived with it.
                lan.unplug(name)
                for pid in subprocess.run(["ip", "netns", "pids", nss[name]], capture_output=True,
                                          text=True).stdout.split():
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}").exists() else b""
                    if b"keepalived" in cmd:
                        os.kill(int(pid), signal.SIGKILL)

            times.append(measure(client, kill))
            daemons[name].wait()
            reboot(nss[name])
            lan.unplug(name, plugged=True)
            start(name)
        return times
    finally:
        for d in daemons.values():
            d.kill()
        for p in procs:
            p.kill()
        subprocess.run(["pkill", "-f", f"keepalived -n -l -P -f {work}"], capture_output=True)
        lan.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/failover.py needs root (network namespaces)")
    if shutil.which("keepalived") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "keepalived"], check=True)
        subprocess.run(["systemctl", "disable", "--now", "keepalived"], capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="herd-failover-"))
    try:
        results = {
            "herd default (deadtime 1 s, interval 200 ms)": herd_runs(args.runs, work),
            "herd tuned (deadtime 250 ms, interval 50 ms)": herd_runs(args.runs, work, 50, 250),
            "keepalived default (advert_int 1 s)": keepalived_runs(args.runs, work, 1.0),
            "keepalived tuned (advert_int 0.1 s, VRRPv3)": keepalived_runs(args.runs, work, 0.1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    herd = statistics.median(next(iter(results.values())))
    print(f"VIP failover, kill -> first TCP connect to the VIP, {args.runs} runs each:")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"  {name:45} median {med * 1000:6.0f} ms   max {max(times) * 1000:6.0f} ms   "
              f"{med / herd:4.1f} x herd's median")

if __name__ == "__main__":
    main()

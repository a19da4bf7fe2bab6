"""Load balancing for real, in QEMU (the Debian kernel has IPVS; the host's has not), in the lab (lab.py).
Through the VIP the client reaches both web nodes; Apache stopped on one takes it out of the IPVS table
(weight 0) and started again puts it back; an open connection survives the director's power cut."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from ..netns.harness import wait_for
from .lab import Lab


def ipvs_table(lab: Lab) -> dict[str, tuple[str, str]]:
    """real server -> (forwarding, weight) for the VIP's service, from `ipvsadm -Ln` in the director VM."""
    out = lab.ssh("dir1", "ipvsadm -Ln")
    vip = lab.build.spec.network.vip
    assert re.search(rf"TCP\s+{re.escape(str(vip))}:80 wlc", out), out
    return {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"->\s+([\d.]+):80\s+(\w+)\s+(\d+)", out)}


def test_ipvsadm_shows_the_spec(lab: Lab) -> None:
    dir1 = lab.vms["dir1"]
    assert dir1.wait_for(r"herd: dir1 takes the VIP", 120), dir1.console()[-3000:]
    for web in ("web1", "web2"):  # once it has mounted the docroot (the check page is on it)
        assert dir1.wait_for(rf"herd: {web} is up for http", 300), dir1.console()[-3000:]
    wait_for(lambda: ipvs_table(lab) == {"192.168.50.21": ("Route", "1"), "192.168.50.22": ("Route", "1")}, 60,
             every=2, what="both real servers in the table with weight 1")


def test_the_vip_reaches_both_web_nodes(lab: Lab) -> None:
    answers = lab.fetch("/herd-node", 20)
    assert set(answers) == {"web1", "web2"}, answers


def test_a_stopped_apache_is_quiesced_and_comes_back(lab: Lab) -> None:
    service = lab.build.spec.services[0]
    check = service.check
    dir1 = lab.vms["dir1"]
    lab.ssh("web1", "systemctl stop apache2")
    stopped = time.monotonic()
    wait_for(lambda: "herd: web1 is down for http" in dir1.console(), 60, every=0.2, what="web1 down")
    took = time.monotonic() - stopped
    # fall failures in a row, the first up to one interval after the stop (checks run on their own beat).
    assert took <= (check.fall + 1) * check.interval + check.timeout + 2, f"{took:.1f} s"
    assert ipvs_table(lab)["192.168.50.21"] == ("Route", "0")
    assert set(lab.fetch("/herd-node", 10)) == {"web2"}
    ups = dir1.console().count("herd: web1 is up for http")
    lab.ssh("web1", "systemctl start apache2")
    started = time.monotonic()
    wait_for(lambda: dir1.console().count("herd: web1 is up for http") > ups, 60, every=0.2, what="web1 up again")
    took = time.monotonic() - started
    assert took <= (check.rise + 1) * check.interval + check.timeout + 2, f"{took:.1f} s"
    wait_for(lambda: ipvs_table(lab)["192.168.50.21"] == ("Route", "1"), 30, every=2, what="weight back")
    assert set(lab.fetch("/herd-node", 20)) == {"web1", "web2"}


def test_the_holder_runs_the_connection_sync_master(lab: Lab) -> None:
    # herdd checks the kernel's sync threads every 5 s and restarts what is missing: give it two rounds.
    outs: list[str] = []

    def master_only() -> bool:
        outs.append(lab.ssh("dir1", "ipvsadm -L --daemon"))
        return re.search(r"master sync daemon .*syncid=1", outs[-1]) is not None and "backup" not in outs[-1]

    try:
        wait_for(master_only, 15, every=1, what="the master sync daemon alone on dir1")
    except AssertionError:
        log = lab.ssh("dir1", "journalctl -b -u herdd --no-pager | grep -Ei 'ipvs|VIP' | tail -30")
        raise AssertionError(f"ipvsadm -L --daemon on dir1: {outs[-1]!r}; herdd said:\n{log}") from None


def test_herdctl_on_the_director_shows_the_services(lab: Lab) -> None:
    out = lab.ssh("dir1", "herdctl status --json")
    status = json.loads(out)
    assert status["vip"]["holder"] == "dir1"
    (svc,) = status["services"]
    assert {rs["name"]: rs["weight"] for rs in svc["real_servers"]} == {"web1": 1, "web2": 1}
    assert status["ipvs"] == "in sync"
    assert {n["name"]: n["state"] for n in status["nodes"]}["dir2"] == "alive"


KEEPALIVE = ("import socket,sys,time\n"
             "s=socket.create_connection((sys.argv[1],80),timeout=10)\n"
             "for i in range(int(sys.argv[2])):\n"
             "  s.sendall(b'GET /herd-node HTTP/1.1\\r\\nHost: vip\\r\\n\\r\\n')\n"
             "  data=b''\n"
             "  while not data.endswith(b'\\n') or b'\\r\\n\\r\\n' not in data:\n"
             "    chunk=s.recv(4096)\n"
             "    if not chunk: raise SystemExit('closed by peer')\n"
             "    data+=chunk\n"
             "  print(data.split(b'\\r\\n\\r\\n',1)[1].decode().strip(), flush=True)\n"
             "  time.sleep(0.5)\n")


def synced_connection(lab: Lab, director: str, vip: str) -> bool:
    """Does `director`'s IPVS table hold an established connection from the client to the VIP?"""
    out = lab.ssh(director, "ipvsadm -Lnc")
    return re.search(rf"TCP\s+\S+\s+ESTABLISHED\s+192\.168\.50\.99:\d+\s+{re.escape(vip)}:80\s", out) is not None


def test_connections_survive_a_director_failover(lab: Lab) -> None:
    """dir2 learns dir1's connections from the kernel's sync daemon; when dir1 dies (its VM is switched off),
    an open keep-alive connection through the VIP goes on, through dir2, to the same web node."""
    dir2 = lab.vms["dir2"]
    assert dir2.wait_for(r"ipvs: connection sync backup", 120), dir2.console()[-3000:]
    assert dir2.wait_for(r"herd: web2 is up for http", 120)
    vip = str(lab.build.spec.network.vip)
    requests = 40  # 20 s of them: time for the sync, the power cut and the takeover
    client = subprocess.Popen(["ip", "netns", "exec", lab.client, sys.executable, "-c", KEEPALIVE, vip,
                               str(requests)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The master sends its sync messages in batches (the kernel flushes them within about 2 s): cut the power
    # once dir2 knows the connection, as a real failure would find it a few seconds into a connection.
    wait_for(lambda: synced_connection(lab, "dir2", vip), 15, every=0.5, what="the connection synced to dir2")
    lab.vms["dir1"].stop()  # power cut
    out, err = client.communicate(timeout=120)
    answers = out.split()
    assert client.returncode == 0, f"the connection broke: {err}; answers so far {answers}"
    assert len(answers) == requests and len(set(answers)) == 1, answers  # one connection, one real server
    assert dir2.wait_for(r"herd: dir2 takes the VIP", 10)

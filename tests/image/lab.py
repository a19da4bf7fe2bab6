"""The lab: the cluster's nodes as QEMU VMs on one bridge (inside a namespace the harness makes), and a client
namespace on the same LAN. Shared by the QEMU tests that need several nodes, and by `tests/lab` (by hand).
Every VM boots its own copy of its role's image when `persistent`, as if each box got its own stick."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.spec import Role

from ..netns.harness import Cluster, wait_for
from .conftest import Build
from .qemu import VM

# Every node a VM. web2 and nfs1 boot once dir1 holds the VIP (dir1, web1, db1 and dir2 are a quorum): web1 is up
# before its docroot's server is, dir1 is the holder the tests expect, and a web2 box that must claim its slot
# finds the strict majority of members that grant it (4 of 6) already there.
VM_NODES = ("dir1", "web1", "db1", "dir2", "web2", "nfs1")
NETNS_NODES: tuple[str, ...] = ()  # none needed now; the harness still gives the LAN and the client
FETCH = ("import sys,urllib.request\n"
         "for _ in range(int(sys.argv[2])):\n"
         "  try: print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())\n"
         "  except OSError as e: print('error', e)\n")


DATA_DISK = 256 * 2**20  # small: DRBD's first full sync of it takes seconds, not minutes, under TCG
# With two nfs nodes, nfs2 gets no data disk but a stick this much larger than its image: root grows by 1 GiB,
# and DRBD goes on the rest (nfs.disk = "auto" both ways). nfs1 gets a second disk.
STICKS = {"nfs2": 1024 * 2**20 + DATA_DISK}
_LABS = itertools.count()  # each lab its own namespace names, even within one process


@dataclass
class Lab:
    build: Build
    cluster: Cluster
    client: str
    vms: dict[str, VM]
    work: Path
    persistent: bool = False
    macs: dict[str, str] = field(default_factory=dict)  # boxes whose MAC is not the spec's

    def ssh(self, node: str, command: str, timeout: float = 60) -> str:
        r = subprocess.run(self._ssh(node, command), capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"ssh {node} {command!r}: {r.stderr}"
        return r.stdout

    def put(self, node: str, files: list[Path], into: str, timeout: float = 300) -> None:
        """Copy files (all in one folder) into a node's folder `into`, made if missing; sparse files stay
        sparse on the way (tar)."""
        (folder,) = {f.parent for f in files}
        tar = subprocess.Popen(["tar", "-cS", "-C", str(folder), *(f.name for f in files)], stdout=subprocess.PIPE)
        try:
            r = subprocess.run(self._ssh(node, f"mkdir -p {into} && tar -xS -C {into}"), stdin=tar.stdout,
                               capture_output=True, text=True, timeout=timeout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
        assert r.returncode == 0 and tar.returncode == 0, f"copying {files} to {node}: {r.stderr}"

    def _ssh(self, node: str, command: str) -> list[str]:
        address = str(self.build.spec.node_named(node).address)  # type: ignore[union-attr]
        return ["ip", "netns", "exec", self.client, "ssh", "-i", str(self.build.ssh_key),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=20", "-o", "BatchMode=yes", f"root@{address}", command]

    def fetch_text(self, path: str, host: str) -> str:
        code = "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
        return subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", code, f"http://{host}{path}"],
                              capture_output=True, text=True, timeout=60).stdout

    def fetch(self, path: str, times: int, host: str | None = None) -> list[str]:
        url = f"http://{host or self.build.spec.network.vip}{path}"
        r = subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", FETCH, url, str(times)],
                           capture_output=True, text=True, timeout=120)
        return r.stdout.split("\n")[:-1]

    def power_on(self, name: str, background: bool = False) -> None:
        """Boot a VM again from its own disk, on the same tap (after `vms[name].stop()`, a power cut).
        background: at the lowest CPU priority until `wait_ready` has seen it ready (call it), so that the VMs
        serving meanwhile keep their CPU."""
        self.vms[name] = self.cluster_vm(name, background)

    def cable(self, name: str, plugged: bool) -> None:
        """Pull (or put back) a VM's cable at the switch: a partition, the VM itself running on."""
        tap = f"{self.cluster.lan.tag}{name}"
        subprocess.run(["ip", "-n", self.cluster.lan.switch, "link", "set", tap, "up" if plugged else "down"],
                       check=True)

    def running(self, name: str) -> bool:
        return self.vms[name].proc.poll() is None

    def wait_ready(self, names: list[str], timeout: float = 600) -> None:
        nodes = []
        for name in names:
            vm = self.vms[name]
            pattern = r"herd: \S+ \S+ ready" if name in self.macs else rf"herd: {name} \S+ ready"
            assert vm.wait_for(pattern, timeout), f"{name} not ready:\n{vm.console()[-3000:]}"
            # A box with a MAC of its own is whichever slot it claimed (named in its ready line).
            nodes += re.findall(r"herd: (\S+) \S+ ready", vm.console())[-1:]
        # herdd says ready while sshd's unit may still be making its host key or starting (a starved TCG VM).
        for node in nodes:
            wait_for(lambda node=node: self.answers(node), timeout, every=2, what=f"{node}'s sshd answering")
        for name in names:
            self.vms[name].foreground()

    def answers(self, node: str) -> bool:
        try:
            self.ssh(node, "true", timeout=30)
        except (AssertionError, subprocess.TimeoutExpired):
            return False
        return True

    def hand_vip_to(self, director: str) -> None:
        """Make `director` the VIP holder the tests expect. While the later VMs boot, six TCG VMs on two cores
        can starve the holder's peers past its lease; it lets go, the other director takes over, and without
        preemption keeps the VIP. Its herdd restarted hands the VIP over at once (as `systemctl stop` does)."""
        def holder() -> str | None:
            try:
                found: str | None = self.status(director)["vip"]["holder"]
            except (AssertionError, subprocess.TimeoutExpired, ValueError):
                return None
            return found

        wait_for(lambda: holder() is not None, 120, every=2, what="a VIP holder")
        other = holder()
        if other == director:
            return
        print(f"lab: {other} holds the VIP (a starved lease while the lab booted); handing it to {director}",
              file=sys.stderr)
        self.ssh(str(other), "systemctl restart herdd")
        wait_for(lambda: holder() == director, 120, every=2, what=f"{director} holding the VIP")

    def status(self, node: str) -> dict[str, Any]:
        """`herdctl status --json` on a node, as its operator would run it."""
        result: dict[str, Any] = json.loads(self.ssh(node, "herdctl status --json"))
        return result

    def cluster_vm(self, name: str, background: bool = False) -> VM:
        return _vm(self.build, self.cluster, self.work, name, self.persistent, self.macs.get(name), background)


def _vm(build: Build, cluster: Cluster, work: Path, name: str, persistent: bool, mac: str | None = None,
        background: bool = False) -> VM:
    """The VM for spec node `name`; with `mac`, a box with that MAC instead of the spec's (a MAC the spec does
    not list: the box claims a slot of its role). background: see VM."""
    node = build.spec.node_named(name)
    assert node is not None and (mac or node.mac) is not None
    tap = f"{cluster.lan.tag}{name}"
    image = build.images[node.role]
    extra = STICKS.get(name, 0) if build.spec.replicated_storage and persistent else 0
    if persistent:
        # A stick of its own, as if flashed for this box: its writes survive power cuts.
        image = work / name / "disk.img"
        if not image.exists():
            image.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "--sparse=always", str(build.images[node.role]), str(image)], check=True)
            if extra:  # a larger stick and no second disk: growroot keeps the rest of it for DRBD
                with open(image, "r+b") as f:
                    f.truncate(image.stat().st_size + extra)
    disks = []
    if node.role == Role.NFS and build.spec.replicated_storage and not extra:
        # The nfs node's data disk for DRBD (nfs.disk = "auto" finds it as /dev/vdb), kept across power cuts.
        data = work / name / "data.img"
        if not data.exists():
            data.parent.mkdir(parents=True, exist_ok=True)
            with open(data, "wb") as f:
                f.truncate(DATA_DISK)
        disks.append(data)
    vm = VM(image, "bios", work / name, [mac or node.mac or ""], taps=[tap], netns=cluster.lan.switch,
            persistent=persistent, disks=disks, background=background)
    wait_for(lambda: subprocess.run(["ip", "-n", cluster.lan.switch, "link", "show", tap],
                                    capture_output=True).returncode == 0, 30, what=f"{tap}")
    subprocess.run(["ip", "-n", cluster.lan.switch, "link", "set", tap, "master", "br0", "up"], check=True)
    return vm


def start_lab(build: Build, work: Path, nodes: tuple[str, ...] = VM_NODES, vip_after: str | None = "dir2",
              persistent: bool = False, macs: dict[str, str] | None = None) -> Generator[Lab, None, None]:
    """Boot `nodes` as VMs on the lab's LAN, in order; after `vip_after` has started, wait until dir1 holds
    the VIP before booting the rest."""
    cluster = Cluster(build.spec, build.spec_path, build.key, work, f"l{os.getpid() % 10000}{next(_LABS)}",
                      only=set(NETNS_NODES))
    vms: dict[str, VM] = {}
    try:
        client = cluster.lan.host("client", address="192.168.50.99/24")
        if vip_after is None:
            cluster.start()
        serving = False  # once the first nodes serve, the later ones boot in the background
        for name in nodes:
            vms[name] = _vm(build, cluster, work, name, persistent, (macs or {}).get(name), background=serving)
            if name == vip_after:
                serving = True
                cluster.start()
                assert vms["dir1"].wait_for(r"herd: dir1 takes the VIP", 400), vms["dir1"].console()[-3000:]
        lab = Lab(build, cluster, client, vms, work, persistent, macs or {})
        lab.wait_ready(list(vms), 600)
        if vip_after is not None:
            lab.hand_vip_to("dir1")
        yield lab
    finally:
        for vm in vms.values():
            vm.stop()
        stop_strays(work)
        cluster.close()


def stop_strays(work: Path) -> None:
    """Any QEMU still running on a disk or socket under `work`: one whose start an interrupt (Ctrl-C, `down`)
    cut short, after its process was made but before the lab knew of it."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("qemu-system") and f"{work}/" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

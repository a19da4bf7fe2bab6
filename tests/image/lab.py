"""The lab: director, web and nfs VMs on one bridge, the rest of the cluster as herdd processes in network
namespaces, and a client namespace on the same LAN. Shared by the QEMU tests that need several nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..netns.harness import Cluster, wait_for
from .conftest import Build
from .qemu import VM

# Every node a VM. dir2 and nfs1 boot once dir1 holds the VIP (dir1, web1, web2 and db1 are a quorum): the
# web nodes are up before their docroot's server is, and dir1 is the holder the tests expect.
VM_NODES = ("dir1", "web1", "web2", "db1", "dir2", "nfs1")
NETNS_NODES: tuple[str, ...] = ()  # none needed now; the harness still gives the LAN and the client
FETCH = ("import sys,urllib.request\n"
         "for _ in range(int(sys.argv[2])):\n"
         "  try: print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())\n"
         "  except OSError as e: print('error', e)\n")


@dataclass
class Lab:
    build: Build
    cluster: Cluster
    client: str
    vms: dict[str, VM]
    work: Path
    persistent: bool = False

    def ssh(self, node: str, command: str, timeout: float = 60) -> str:
        address = str(self.build.spec.node_named(node).address)  # type: ignore[union-attr]
        r = subprocess.run(["ip", "netns", "exec", self.client, "ssh", "-i", str(self.build.ssh_key),
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "ConnectTimeout=20", "-o", "BatchMode=yes", f"root@{address}", command],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"ssh {node} {command!r}: {r.stderr}"
        return r.stdout

    def fetch_text(self, path: str, host: str) -> str:
        code = "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
        return subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", code, f"http://{host}{path}"],
                              capture_output=True, text=True, timeout=60).stdout

    def fetch(self, path: str, times: int, host: str | None = None) -> list[str]:
        url = f"http://{host or self.build.spec.network.vip}{path}"
        r = subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", FETCH, url, str(times)],
                           capture_output=True, text=True, timeout=120)
        return r.stdout.split("\n")[:-1]

    def power_on(self, name: str) -> None:
        """Boot a VM again from its own disk, on the same tap (after `vms[name].stop()`, a power cut)."""
        self.vms[name] = self.cluster_vm(name)

    def cluster_vm(self, name: str) -> VM:
        return _vm(self.build, self.cluster, self.work, name, self.persistent)


def _vm(build: Build, cluster: Cluster, work: Path, name: str, persistent: bool) -> VM:
    node = build.spec.node_named(name)
    assert node is not None and node.mac is not None
    tap = f"{cluster.lan.tag}{name}"
    image = build.images[node.role]
    if persistent:
        # A stick of its own, as if flashed for this box: its writes survive power cuts.
        image = work / name / "disk.img"
        if not image.exists():
            image.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "--sparse=always", str(build.images[node.role]), str(image)], check=True)
    vm = VM(image, "bios", work / name, [node.mac], taps=[tap], netns=cluster.lan.switch, persistent=persistent)
    wait_for(lambda: subprocess.run(["ip", "-n", cluster.lan.switch, "link", "show", tap],
                                    capture_output=True).returncode == 0, 30, what=f"{tap}")
    subprocess.run(["ip", "-n", cluster.lan.switch, "link", "set", tap, "master", "br0", "up"], check=True)
    return vm


def start_lab(build: Build, work: Path, nodes: tuple[str, ...] = VM_NODES, vip_after: str | None = "db1",
              persistent: bool = False) -> Iterator[Lab]:
    """Boot `nodes` as VMs on the lab's LAN, in order; after `vip_after` has started, wait until dir1 holds
    the VIP before booting the rest."""
    cluster = Cluster(build.spec, build.spec_path, build.key, work, f"l{os.getpid() % 100000}",
                      only=set(NETNS_NODES))
    vms: dict[str, VM] = {}
    try:
        client = cluster.lan.host("client", address="192.168.50.99/24")
        if vip_after is None:
            cluster.start()
        for name in nodes:
            vms[name] = _vm(build, cluster, work, name, persistent)
            if name == vip_after:
                cluster.start()
                assert vms["dir1"].wait_for(r"herd: dir1 takes the VIP", 400), vms["dir1"].console()[-3000:]
        for name, vm in vms.items():
            assert vm.wait_for(rf"herd: {name} \S+ ready", 400), f"{name}:\n{vm.console()[-3000:]}"
        yield Lab(build, cluster, client, vms, work, persistent)
    finally:
        for vm in vms.values():
            vm.stop()
        cluster.close()

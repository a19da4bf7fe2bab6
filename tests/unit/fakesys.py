"""A fake sysfs tree, mountinfo and swaps file, laid out like the kernel's, for the flash target checks."""

from __future__ import annotations

import os
from pathlib import Path

from herd.build.target import System

GiB = 2**30
BUSES = {
    "usb": "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block",
    "sata": "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block",
    "mmc": "devices/pci0000:00/0000:00:1e.6/mmc_host/mmc0/mmc0:0001/block",
    "virtual": "devices/virtual/block",
}


class FakeSys:
    def __init__(self, root: Path) -> None:
        self.sysfs = root / "sys"
        self.mountinfo = root / "mountinfo"
        self.swaps = root / "swaps"
        self.mountinfo.write_text("22 27 0:21 / /proc rw,relatime - proc proc rw\n")
        self.swaps.write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
        self._mount_id = 100

    def system(self) -> System:
        return System(self.sysfs, self.mountinfo, self.swaps)

    def _node(self, path: Path, name: str, devnum: str, size: int, ro: bool) -> Path:
        path.mkdir(parents=True)
        (path / "dev").write_text(devnum + "\n")
        (path / "size").write_text(f"{size // 512}\n")
        (path / "ro").write_text("1\n" if ro else "0\n")
        (path / "holders").mkdir()
        for link in (self.sysfs / "dev/block" / devnum, self.sysfs / "class/block" / name):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(path, link.parent))
        return path

    def disk(self, name: str, devnum: str, *, bus: str = "usb", removable: bool = True, size: int = 16 * GiB,
             vendor: str = "SanDisk", model: str = "Cruzer Blade", ro: bool = False,
             backing: str = "/var/tmp/stick.img") -> Path:
        path = self._node(self.sysfs / BUSES[bus] / name, name, devnum, size, ro)
        (path / "removable").write_text("1\n" if removable else "0\n")
        if bus != "virtual":
            (path / "device").mkdir()
            (path / "device/vendor").write_text(f"{vendor:8}\n")
            (path / "device/model").write_text(f"{model:16}\n")
        if name.startswith("loop"):
            (path / "loop").mkdir()
            (path / "loop/backing_file").write_text(backing + "\n")
        return path

    def partition(self, disk: Path, name: str, devnum: str, size: int = GiB) -> Path:
        path = self._node(disk / name, name, devnum, size, ro=False)
        (path / "partition").write_text(name[-1] + "\n")
        return path

    def stacked(self, name: str, devnum: str, on: list[Path], *, dm_name: str = "", md: bool = False) -> Path:
        """A dm or md device made of the given disks or partitions (they list it in holders/)."""
        path = self.disk(name, devnum, bus="virtual", removable=False)
        if md:
            (path / "md").mkdir()
        else:
            (path / "dm").mkdir()
            (path / "dm/name").write_text(dm_name + "\n")
        (path / "slaves").mkdir()
        for member in on:
            (member / "holders" / name).symlink_to(os.path.relpath(path, member / "holders"))
        return path

    def mount(self, devnum: str, point: str, source: str = "/dev/whatever", fstype: str = "ext4") -> None:
        self._mount_id += 1
        with self.mountinfo.open("a") as f:
            f.write(f"{self._mount_id} 1 {devnum} / {point} rw,relatime shared:1 - {fstype} {source} rw\n")

    def swap(self, path: str, kind: str = "partition") -> None:
        with self.swaps.open("a") as f:
            f.write(f"{path}\t\t\t\t{kind}\t1048572\t\t0\t\t-2\n")

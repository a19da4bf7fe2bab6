"""`herd.pyz flash` on a node of the lab, as on any Debian 12 host: the one-file builder run by the box's own
python3, writing to USB sticks plugged into the running VM (QEMU's usb-storage, seen through the guest's real
kernel, sysfs and udev, where the unit tests fake sysfs or use loop devices). A removable stick and a
USB-attached fixed disk are written and verified, and what landed on them is read back on the host and mounted
in the guest; the root disk, a partition, a mounted stick, a device-mapper member, active swap and a stick too
small are refused with nothing written; a stick pulled out while it is written, or while it is read back,
fails with exit 1 and says so, never "verified"."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from herd.build import bmap as bmaps
from herd.build.make_pyz import main as make_pyz

from ..netns.harness import wait_for
from .lab import Lab
from .qemu import ANSI

NODE = "web2"
HOME = "/dev/shm/flash"  # in the VM's RAM: nothing of the test stays on its disk
FLASH = f"cd {HOME} && SHIV_ROOT={HOME}/shiv COLUMNS=300 python3 herd.pyz flash t.img"
MiB = 2**20
STICK = 64 * MiB
FILES = 4  # random files of 2 MiB on the image's ext4 partition
SLOW = 1 * MiB  # bytes/s: a slow stick, so it can be pulled out in the middle


@dataclass
class Kit:
    lab: Lab
    work: Path
    image: Path
    bmap: bmaps.Bmap
    files: dict[str, str]          # file name on the image's filesystem: sha256
    plugged: list[str] = field(default_factory=list)

    def run(self, command: str, timeout: float = 180) -> tuple[int, str]:
        """(exit code, stdout and stderr) of a shell command on the node."""
        out = self.lab.ssh(NODE, f"{{ {command} ; }} 2>&1; echo rc=$?", timeout)
        body, rc = out.rstrip("\n").rsplit("rc=", 1)
        return int(rc), ANSI.sub("", body).replace("\r", "")  # script(1) passes on the progress bar's escapes

    def flash(self, device: str, extra: str = "--yes") -> tuple[int, str]:
        return self.run(f"{FLASH} {device} {extra}")

    def start_flash(self, device: str, name: str) -> None:
        """Flash in the background on the node: its output in HOME/NAME.log, its exit code in HOME/NAME.rc."""
        self.lab.ssh(NODE, f"setsid sh -c '{FLASH} {device} --yes > {HOME}/{name}.log 2>&1; "
                           f"echo $? > {HOME}/{name}.rc' < /dev/null > /dev/null 2>&1 &")

    def plug(self, name: str, size: int = STICK, removable: bool = True, read_bps: int = 0,
             write_bps: int = 0) -> tuple[str, Path]:
        """A new stick (a raw file here, zeros) plugged into the node; its /dev name there, and its file."""
        stick = self.work / f"{name}.img"
        with open(stick, "wb") as f:
            f.truncate(size)
        before = set(self.lab.ssh(NODE, "ls /sys/block").split())
        self.lab.vms[NODE].plug_stick(name, stick, removable, read_bps, write_bps)
        self.plugged.append(name)
        found: list[str] = []

        def appeared() -> bool:
            found[:] = sorted(set(self.lab.ssh(NODE, "udevadm settle; ls /sys/block").split()) - before)
            return bool(found) and self.lab.ssh(NODE, f"cat /sys/block/{found[0]}/size").strip() != "0"

        wait_for(appeared, 90, every=1, what=f"stick {name} showing up in {NODE}")
        assert len(found) == 1, found
        return f"/dev/{found[0]}", stick

    def unplug(self, name: str) -> None:
        self.lab.vms[NODE].unplug(name)
        self.plugged.remove(name)

    def sectors(self, device: str) -> tuple[int, int]:
        """(sectors read, sectors written) so far, as the node's kernel counts them for the device."""
        fields = self.lab.ssh(NODE, f"cat /sys/class/block/{Path(device).name}/stat").split()
        return int(fields[2]), int(fields[6])

    def mapped_ranges_equal(self, stick: Path) -> bool:
        with open(self.image, "rb") as a, open(stick, "rb") as b:
            for r in self.bmap.ranges:
                offset, length = self.bmap.span(r)
                a.seek(offset)
                b.seek(offset)
                if a.read(length) != b.read(length):
                    return False
        return True


def make_image(work: Path) -> tuple[Path, dict[str, str]]:
    """A small disk image like ours: GPT, one ext4 partition (made with mkfs.ext4 -d, nothing mounted) holding
    random files, holes between; and the files' sha256."""
    tree = work / "tree"
    tree.mkdir()
    rng = random.Random(6)
    files = {}
    for i in range(FILES):
        data = rng.randbytes(2 * MiB)
        (tree / f"f{i}").write_bytes(data)
        files[f"f{i}"] = hashlib.sha256(data).hexdigest()
    part = work / "part.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "herdtest", "-d", str(tree), str(part), "30M"], check=True)
    image = work / "t.img"
    with open(image, "wb") as f:
        f.truncate(40 * MiB)
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)], check=True, text=True,
                   input="label: gpt\nstart=2048, size=61440, type=linux, name=herdtest\n")
    with open(part, "rb") as src, open(image, "r+b") as dst:
        for offset, length in bmaps.data_extents(src.fileno()):
            src.seek(offset)
            dst.seek(1 * MiB + offset)
            dst.write(src.read(length))
    return image, files


@pytest.fixture(scope="module")
def kit(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    work = tmp_path_factory.mktemp("sticks")
    assert make_pyz([str(work / "herd.pyz")]) == 0
    image, files = make_image(work)
    bmap = bmaps.create(image)
    (work / "t.img.bmap").write_text(bmaps.to_xml(bmap))
    lab.put(NODE, [work / "herd.pyz", image, work / "t.img.bmap"], HOME)
    kit = Kit(lab, work, image, bmap, files)
    try:
        yield kit
    finally:
        for name in list(kit.plugged):
            kit.unplug(name)
        lab.ssh(NODE, f"umount /mnt 2>/dev/null; swapoff -a; dmsetup remove_all; rm -rf {HOME}")


def test_a_removable_stick_and_a_usb_disk_are_written_verified_and_readable(kit: Kit) -> None:
    stick, stick_file = kit.plug("s1", removable=True)
    # Asked at a terminal (script(1) gives it one), as a user would be: the stick described, then "yes".
    rc, out = kit.run(f"printf 'yes\\n' | script -qec '{FLASH} {stick}' /dev/null")
    assert rc == 0, out
    assert re.search(rf"{stick}: QEMU QEMU HARDDISK, 64\.0 MiB \(removable, USB\)", out), out
    assert "Type yes to write it" in out and re.search(r"verified", out), out
    assert kit.mapped_ranges_equal(stick_file)

    disk, disk_file = kit.plug("s2", removable=False)  # a USB SSD: fixed, but on USB
    rc, out = kit.run(f"{FLASH} {disk} --yes")
    assert rc == 0 and re.search(rf"flashed t\.img to {disk}: wrote .* verified", out), out
    assert kit.mapped_ranges_equal(disk_file)

    # The stick as a box would use it: its partition table read, its filesystem mounted, every file intact.
    kit.lab.ssh(NODE, f"blockdev --rereadpt {stick} && udevadm settle && mount -o ro {stick}1 /mnt")
    try:
        sums = kit.lab.ssh(NODE, "cd /mnt && sha256sum f*")
    finally:
        kit.lab.ssh(NODE, "umount /mnt")
    assert {name: digest for digest, name in (line.split() for line in sums.splitlines())} == kit.files


def test_what_must_not_be_written_is_refused_and_left_alone(kit: Kit) -> None:
    stick, stick_file = kit.plug("s3")
    rc, out = kit.flash(stick)
    assert rc == 0, out
    kit.lab.ssh(NODE, f"blockdev --rereadpt {stick} && udevadm settle")
    small, small_file = kit.plug("s4", size=16 * MiB)
    root = kit.lab.ssh(NODE, "lsblk -no PKNAME $(findmnt -no SOURCE /)").strip()

    def head(path: Path) -> bytes:
        """Where a flash starts (the GPT): what the kernel itself never writes on an active swap disk."""
        with open(path, "rb") as f:
            return f.read(64 * 1024)

    def whole(path: Path) -> bytes:
        return path.read_bytes()

    setups = [
        # (why, set up on the node, what to flash, the reason expected, undo on the node, the stick's file on
        # this host that must stay as it was, how much of it). The root disk is written by its own system all
        # the time: that the refusal leaves the sticks alone is what can be seen.
        ("the root disk", "true", f"/dev/{root}", rf"/dev/{root}\d \(on /dev/{root}\) holds the root filesystem /",
         "true", stick_file, whole),
        ("a partition", "true", f"{stick}1", rf"{stick}1 is a partition of {stick}", "true", stick_file, whole),
        ("mounted", f"mount -o ro {stick}1 /mnt", stick,
         rf"{stick}1 \(on {stick}\) is mounted on /mnt: unmount it first", "umount /mnt", stick_file, whole),
        ("a device-mapper member", f"dmsetup create herdtest --table '0 2048 linear {stick} 0'", stick,
         rf"{stick} is in use by dm-\d+", "dmsetup remove herdtest", stick_file, whole),
        ("too small", "true", small, rf"{small} is 16\.0 MiB, smaller than the image \(40\.0 MiB\)", "true",
         small_file, whole),
        ("active swap", f"mkswap -q {small} && swapon {small}", small, rf"{small} is active swap", "swapoff -a",
         small_file, head),
    ]
    for why, setup, target, expected, undo, watched, part in setups:
        kit.lab.ssh(NODE, setup)
        try:
            before = part(watched)
            rc, out = kit.flash(target)
            after = part(watched)
        finally:
            kit.lab.ssh(NODE, undo)
        assert rc == 2 and re.search(expected, out) and "will not write" in out, f"{why}: {out}"
        assert after == before, f"{why}: written to"


def test_a_stick_pulled_out_while_written_fails(kit: Kit) -> None:
    stick, _ = kit.plug("s5", write_bps=SLOW)
    kit.start_flash(stick, "s5")
    wait_for(lambda: kit.sectors(stick)[1] >= 2048, 120, every=0.5, what="the first MiB written")
    kit.unplug("s5")
    wait_for(lambda: kit.run(f"test -s {HOME}/s5.rc")[0] == 0, 120, every=1, what="flash ending")
    rc = int(kit.lab.ssh(NODE, f"cat {HOME}/s5.rc"))
    out = kit.lab.ssh(NODE, f"cat {HOME}/s5.log")
    assert rc == 1, out
    assert re.search(rf"error: writing {stick} failed after [\d.]+ (KiB|MiB): .*; the target is incomplete", out), out
    assert "verified" not in out


def test_a_stick_pulled_out_while_read_back_fails(kit: Kit) -> None:
    stick, _ = kit.plug("s6", read_bps=SLOW)
    kit.start_flash(stick, "s6")
    mapped = kit.bmap.mapped_bytes // 512
    read_when_written: list[int] = []

    def reading_back() -> bool:
        read, written = kit.sectors(stick)
        if written < mapped:
            return False
        read_when_written[:1] = read_when_written[:1] or [read]
        return read - read_when_written[0] >= 2048

    wait_for(reading_back, 120, every=0.5, what="the stick written, and a MiB of it read back")
    kit.unplug("s6")
    wait_for(lambda: kit.run(f"test -s {HOME}/s6.rc")[0] == 0, 120, every=1, what="flash ending")
    rc = int(kit.lab.ssh(NODE, f"cat {HOME}/s6.rc"))
    out = kit.lab.ssh(NODE, f"cat {HOME}/s6.log")
    assert rc == 1, out
    assert re.search(rf"error: (reading {stick} back failed after|verification failed: {stick} does not read back)",
                     out), out
    assert "verified" not in out

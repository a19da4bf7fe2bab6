"""What `build.py flash` refuses to write to, decided on a fake sysfs tree (and on this machine's real root disk):
every refusal, and the sticks it accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herd.build.target import (
    BlockDevice,
    Other,
    RegularFile,
    System,
    Use,
    changes,
    read_block_device,
    read_target,
    refusals,
    unescape,
)

from .fakesys import FakeSys, GiB

IMAGE = 700 * 2**20


@pytest.fixture
def fake(tmp_path: Path) -> FakeSys:
    return FakeSys(tmp_path)


def check(fake: FakeSys, devnum: str, image_size: int = IMAGE) -> list[str]:
    return refusals(read_block_device(devnum, fake.system()), image_size)


def test_usb_stick_is_accepted_and_described(fake: FakeSys) -> None:
    disk = fake.disk("sdx", "8:16")
    fake.partition(disk, "sdx1", "8:17")
    fake.disk("sdw", "8:32", removable=False)  # a USB disk that does not say removable: still a USB disk
    dev = read_block_device("8:16", fake.system())
    assert dev == BlockDevice(name="sdx", size=16 * GiB, removable=True, usb=True, loop=False, read_only=False,
                              vendor="SanDisk", model="Cruzer Blade")
    assert dev.description == "SanDisk Cruzer Blade, 16.0 GiB (removable, USB)"
    assert refusals(dev, IMAGE) == []
    assert check(fake, "8:32") == []


def test_removable_card_reader_and_loop_device_are_accepted(fake: FakeSys) -> None:
    fake.disk("mmcblk9", "179:0", bus="mmc", removable=True)
    fake.disk("loop7", "7:7", bus="virtual", removable=False, size=GiB)
    assert check(fake, "179:0") == []
    loop = read_block_device("7:7", fake.system())
    assert loop.loop and loop.description == "loop device /var/tmp/stick.img, 1.0 GiB (loop)"
    assert refusals(loop, IMAGE) == []


def test_partition(fake: FakeSys) -> None:
    disk = fake.disk("sdx", "8:16")
    fake.partition(disk, "sdx1", "8:17", size=8 * GiB)
    assert check(fake, "8:17") == ["/dev/sdx1 is a partition of /dev/sdx: give the whole disk, /dev/sdx"]


def test_internal_disk(fake: FakeSys) -> None:
    fake.disk("sdy", "8:48", bus="sata", removable=False, vendor="ATA", model="Samsung SSD 870")
    assert check(fake, "8:48") == ["/dev/sdy is neither removable nor attached over USB: it looks like an "
                                   "internal disk"]
    assert read_block_device("8:48", fake.system()).description == "ATA Samsung SSD 870, 16.0 GiB"


def test_mounted(fake: FakeSys) -> None:
    disk = fake.disk("sdx", "8:16")
    fake.partition(disk, "sdx1", "8:17")
    fake.partition(disk, "sdx2", "8:18")
    fake.mount("8:18", "/media/me/my\\040stick")
    fake.mount("8:18", "/srv/again")
    fake.mount("8:18", "/srv/thrice")
    assert check(fake, "8:16") == [
        "/dev/sdx2 (on /dev/sdx) is mounted on /media/me/my stick, /srv/again and 1 more: unmount it first"]


def test_mounted_whole_disk_found_by_its_source_when_the_numbers_are_anonymous(fake: FakeSys) -> None:
    fake.disk("sdx", "8:16")
    fake.mount("0:45", "/mnt/btrfs", source="/dev/sdx", fstype="btrfs")  # btrfs: st_dev is anonymous
    assert check(fake, "8:16") == ["/dev/sdx is mounted on /mnt/btrfs: unmount it first"]


def test_root_disk(fake: FakeSys) -> None:
    disk = fake.disk("sdy", "8:0", bus="sata", removable=False)
    fake.partition(disk, "sdy1", "8:1")
    fake.partition(disk, "sdy2", "8:2")
    fake.partition(disk, "sdy3", "8:3")
    fake.mount("8:1", "/boot/efi")
    fake.mount("8:2", "/")
    fake.mount("8:2", "/home")
    fake.swap("/dev/sdy3")
    assert check(fake, "8:0") == [
        "/dev/sdy is neither removable nor attached over USB: it looks like an internal disk",
        "/dev/sdy1 (on /dev/sdy) holds /boot/efi: this is the running system's disk",
        "/dev/sdy2 (on /dev/sdy) holds the root filesystem /: this is the running system's disk",
        "/dev/sdy3 (on /dev/sdy) is active swap: swapoff it first",
    ]


def test_root_on_lvm_on_a_usb_disk(fake: FakeSys) -> None:
    """Even a USB disk is refused when it carries the system: / on LVM on one of its partitions."""
    disk = fake.disk("sdx", "8:16")
    part = fake.partition(disk, "sdx2", "8:18")
    fake.stacked("dm-0", "253:0", [part], dm_name="vg-root")
    fake.mount("253:0", "/")
    assert check(fake, "8:16") == [
        "/dev/dm-0 (on /dev/sdx) holds the root filesystem /: this is the running system's disk",
        "/dev/sdx2 (on /dev/sdx) is in use by dm-0 (vg-root) (an LVM, dm-crypt or RAID member): deactivate "
        "that first",
    ]


def test_swap(fake: FakeSys) -> None:
    disk = fake.disk("sdx", "8:16")
    fake.partition(disk, "sdx1", "8:17")
    fake.swap("/dev/sdx1")
    fake.swap("/var/swapfile", kind="file")
    assert check(fake, "8:16") == ["/dev/sdx1 (on /dev/sdx) is active swap: swapoff it first"]


def test_device_mapper_member_and_device(fake: FakeSys) -> None:
    disk = fake.disk("sdx", "8:16")
    fake.stacked("dm-3", "253:3", [disk], dm_name="vg-data-pv")
    assert check(fake, "8:16") == ["/dev/sdx is in use by dm-3 (vg-data-pv) (an LVM, dm-crypt or RAID member): "
                                   "deactivate that first"]
    assert check(fake, "253:3") == ["/dev/dm-3 is a device-mapper device (LVM, dm-crypt…), not a disk"]


def test_md_member(fake: FakeSys) -> None:
    disk = fake.disk("sdx", "8:16")
    part = fake.partition(disk, "sdx1", "8:17")
    fake.stacked("md0", "9:0", [part], md=True)
    assert check(fake, "8:16") == ["/dev/sdx1 (on /dev/sdx) is in use by md0 (an LVM, dm-crypt or RAID "
                                   "member): deactivate that first"]
    assert check(fake, "9:0") == ["/dev/md0 is a software RAID (md) device, not a disk"]


def test_too_small_and_read_only(fake: FakeSys) -> None:
    fake.disk("sdx", "8:16", size=512 * 2**20, ro=True)
    assert check(fake, "8:16") == ["/dev/sdx is read-only (a write-protect switch?)",
                                   "/dev/sdx is 512.0 MiB, smaller than the image (700.0 MiB)"]
    assert check(fake, "8:16", image_size=512 * 2**20) == ["/dev/sdx is read-only (a write-protect switch?)"]


def test_loop_device_mounted_or_too_small(fake: FakeSys) -> None:
    fake.disk("loop7", "7:7", bus="virtual", removable=False, size=0)
    fake.mount("7:7", "/mnt")
    assert check(fake, "7:7") == ["/dev/loop7 is mounted on /mnt: unmount it first",
                                  "/dev/loop7 is 0 bytes, smaller than the image (700.0 MiB)"]


def test_regular_files(tmp_path: Path, fake: FakeSys) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"x" * 4096)
    system = fake.system()
    new = read_target(tmp_path / "vm.img", image, system)
    assert new == RegularFile(tmp_path / "vm.img", exists=False)
    assert refusals(new, IMAGE) == []
    old = tmp_path / "old.img"
    old.write_bytes(b"y" * 100)
    st = old.stat()
    assert read_target(old, image, system) == RegularFile(old, exists=True, size=100, identity=(st.st_dev, st.st_ino))
    same = read_target(image, image, system)
    assert refusals(same, IMAGE) == [f"{image} is the image itself"]
    link = tmp_path / "link.img"
    link.symlink_to(image)
    assert refusals(read_target(link, image, system), IMAGE) == [f"{link} is the image itself"]
    fake.swap(str(old), kind="file")
    assert refusals(read_target(old, image, system), IMAGE) == [f"{old} is an active swap file"]
    gone = Path("/dev/herd-test-no-such-stick")
    assert refusals(read_target(gone, image, system), IMAGE) == [
        f"{gone} does not exist: is the stick plugged in? (see lsblk)"]
    assert read_target(tmp_path, image, system) == Other(tmp_path, "directory")
    assert refusals(read_target(Path("/dev/null"), image, system), IMAGE) == [
        "/dev/null is a character device, not a block device or a regular file"]


def test_a_dangling_link_or_a_relative_path_into_dev_is_an_unplugged_stick(tmp_path: Path, fake: FakeSys,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the path leads, not how it is spelt: a file is made only outside /dev."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"x" * 4096)
    gone = "/dev/herd-test-no-such-stick"
    link = tmp_path / "stick"
    link.symlink_to(gone)
    assert refusals(read_target(link, image, fake.system()), IMAGE) == [
        f"{link} is a symbolic link to {gone}, which does not exist: is the stick plugged in? (see lsblk)"]
    monkeypatch.chdir(tmp_path)
    relative = Path(os.path.relpath(gone, tmp_path))
    assert str(relative).startswith("..")
    assert refusals(read_target(relative, image, fake.system()), IMAGE) == [
        f"{relative} does not exist: is the stick plugged in? (see lsblk)"]
    elsewhere = tmp_path / "vm-disk"
    elsewhere.symlink_to(tmp_path / "new.img")  # not followed to make a file either
    assert refusals(read_target(elsewhere, image, fake.system()), IMAGE) == [
        f"{elsewhere} is a symbolic link to {tmp_path / 'new.img'}, which does not exist: give that path itself "
        "to make a new file there"]


def test_what_backs_a_loop_device_is_refused(tmp_path: Path, fake: FakeSys) -> None:
    """A loop device neither holds nor claims what it reads from: writing under it would change a disk in use."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"x" * 4096)
    backing = tmp_path / "stick.img"
    backing.write_bytes(b"y" * 100)
    disk = fake.disk("sdx", "8:16")
    fake.partition(disk, "sdx1", "8:17")
    fake.disk("loop5", "7:5", bus="virtual", removable=False, backing=f"{backing} (deleted)")
    fake.disk("loop6", "7:6", bus="virtual", removable=False, backing="/dev/sdx1")
    assert refusals(read_target(backing, image, fake.system()), IMAGE) == [
        f"{backing} is the backing file of /dev/loop5: losetup -d it first"]
    assert check(fake, "8:16") == ["/dev/sdx1 (on /dev/sdx) is the backing store of /dev/loop6: losetup -d it first"]


def test_changes_names_what_differs() -> None:
    """Facts read before the question and again from the opened device: another stick under the same name."""
    before = BlockDevice(name="sdx", size=16 * GiB, removable=True, usb=True, loop=False, read_only=False,
                         vendor="SanDisk", model="Cruzer Blade", diskseq="41")
    assert changes(before, before) == []
    after = BlockDevice(name="sdx", size=32 * GiB, removable=True, usb=True, loop=False, read_only=False,
                        vendor="Kingston", model="DataTraveler", diskseq="42")
    assert changes(before, after) == ["size 16.0 GiB → 32.0 GiB", "vendor SanDisk → Kingston",
                                      "model Cruzer Blade → DataTraveler", "diskseq 41 → 42"]
    assert changes(before, RegularFile(Path("/dev/sdx"), exists=True)) == [
        "it is a regular file now, not block device /dev/sdx"]


def test_unescape() -> None:
    assert unescape(r"/media/my\040stick\011x") == "/media/my stick\tx"
    assert unescape("\\") == "\\" and unescape(r"a\04") == r"a\04"


def test_this_machines_root_disk_is_refused() -> None:
    """The real sysfs and /proc: whatever disk holds / here is refused, and says so."""
    dev = os.stat("/").st_dev
    system = System()
    name = system.name_of(f"{os.major(dev)}:{os.minor(dev)}")
    if name is None:
        pytest.skip("/ is not on a block device here (a container?): nothing real to refuse")
    devnum = (Path("/sys/class/block") / name / "dev").read_text().strip()
    disk = read_block_device(devnum, system)
    whole = disk.partition_of or disk.name
    target = read_block_device((Path("/sys/class/block") / whole / "dev").read_text().strip(), system)
    assert Use(name, "mount", "/") in target.uses
    assert any("holds the root filesystem /" in r for r in refusals(target, 1))

"""What `build.py flash` may write to, decided from facts: the facts come from sysfs and /proc (a reader that
takes their paths, so tests give it a fake tree), the decision is a pure function returning the reasons to
refuse, every one of them at once. The facts are read twice: by path before asking, and again for the very
device (or file) opened to write, so that one changed in between is not written (changes()).

Allowed: a regular file (made if missing; for tests and VM disks), or a whole block device that is removable
or attached over USB (or a loop device, which stands in for a stick in tests), unmounted, holding no mounted
filesystem, swap, device-mapper/LVM or md member, backing no loop device, and not smaller than the image."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

SYSFS = Path("/sys")
MOUNTINFO = Path("/proc/self/mountinfo")
SWAPS = Path("/proc/swaps")
# Filesystems whose files are the kernel's knobs and views, not storage: writing an image into one changes
# the running system (/proc/sys/kernel/hostname, /sys/…), and their files say they are empty.
KERNEL_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs",
    "bpf", "efivarfs", "pstore", "hugetlbfs", "mqueue", "fusectl", "binfmt_misc", "autofs", "rpc_pipefs",
    "nfsd",
})


@dataclass(frozen=True)
class Use:
    device: str   # kernel name: the disk, one of its partitions, or something stacked on them (dm-0, md0)
    what: str     # "mount" | "swap" | "holder" | "loop"
    detail: str   # the mount point, "" for swap, the holder's name, the loop device it backs


@dataclass(frozen=True)
class BlockDevice:
    name: str                         # sdb, loop3, sdb1
    size: int                         # bytes
    removable: bool
    usb: bool                         # the sysfs device path goes through a USB controller
    loop: bool
    read_only: bool
    partition_of: str | None = None   # the whole disk, when this is a partition
    kind: str = "disk"                # disk | dm | md
    vendor: str = ""
    model: str = ""
    diskseq: str = ""                 # the disk's, new for every medium it sees (kernel 5.15+; else "")
    uses: tuple[Use, ...] = ()
    backing: tuple[str, ...] = ()     # a loop device: why what backs it must not be written either

    @property
    def description(self) -> str:
        what = " ".join(w for w in (self.vendor, self.model) if w) or "unknown model"
        tags = [t for t, on in (("removable", self.removable), ("USB", self.usb), ("loop", self.loop)) if on]
        return f"{what}, {human(self.size)}" + (f" ({', '.join(tags)})" if tags else "")


@dataclass(frozen=True)
class RegularFile:
    path: Path
    exists: bool
    size: int = 0
    is_image: bool = False     # the target is the image itself
    swap: bool = False         # an active swap file
    under_dev: bool = False    # a missing file in /dev: an unplugged stick, not a file to make
    identity: tuple[int, int] | None = None   # (st_dev, st_ino) of an existing file
    dangling: str = ""         # the path is a symbolic link to this, which does not exist
    loops: tuple[str, ...] = ()               # the loop devices it is the backing file of
    filesystem: str = ""       # the type of the filesystem it is on, when known


@dataclass(frozen=True)
class Other:
    path: Path
    kind: str                  # "directory", "character device", ...


Target = BlockDevice | RegularFile | Other


def human(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


# ---------------------------------------------------------------------------------------------------------
# The decision


def refusals(target: Target, image_size: int) -> list[str]:
    """Why the image must not be written to this target; empty when it may."""
    if isinstance(target, Other):
        return [f"{target.path} is a {target.kind}, not a block device or a regular file"]
    if isinstance(target, RegularFile):
        reasons = []
        plugged = ": is the stick plugged in? (see lsblk)" if target.under_dev else ""
        if target.dangling:
            # Not followed to make a file: a link is not made into a file where it happens to point.
            hint = plugged or ": give that path itself to make a new file there"
            reasons.append(f"{target.path} is a symbolic link to {target.dangling}, which does not exist{hint}")
        elif target.under_dev:
            reasons.append(f"{target.path} does not exist{plugged}")
        if target.filesystem in KERNEL_FILESYSTEMS:
            reasons.append(f"{target.path} is on {target.filesystem}, one of the kernel's interfaces, not storage")
        if target.is_image:
            reasons.append(f"{target.path} is the image itself")
        if target.swap:
            reasons.append(f"{target.path} is an active swap file")
        reasons += [f"{target.path} is the backing file of /dev/{loop}: losetup -d it first" for loop in target.loops]
        return reasons
    dev = target
    name = f"/dev/{dev.name}"
    reasons = []
    if dev.partition_of:
        reasons.append(f"{name} is a partition of /dev/{dev.partition_of}: give the whole disk, "
                       f"/dev/{dev.partition_of}")
    if dev.kind == "dm":
        reasons.append(f"{name} is a device-mapper device (LVM, dm-crypt…), not a disk")
    elif dev.kind == "md":
        reasons.append(f"{name} is a software RAID (md) device, not a disk")
    elif not (dev.removable or dev.usb or dev.loop):
        reasons.append(f"{name} is neither removable nor attached over USB: it looks like an internal disk")
    if dev.read_only:
        reasons.append(f"{name} is read-only (a write-protect switch?)")
    mounted: dict[str, list[str]] = {}
    for use in dev.uses:
        if use.what == "mount":
            mounted.setdefault(use.device, []).append(use.detail)
    for device, points in mounted.items():
        on = _on(device, dev.name)
        system = [p for p in points if p in ("/", "/boot", "/boot/efi")]
        if system:
            label = "the root filesystem /" if "/" in system else system[0]
            reasons.append(f"{on} holds {label}: this is the running system's disk")
        else:
            more = f" and {len(points) - 2} more" if len(points) > 2 else ""
            reasons.append(f"{on} is mounted on {', '.join(points[:2])}{more}: unmount it first")
    for use in dev.uses:
        if use.what == "swap":
            reasons.append(f"{_on(use.device, dev.name)} is active swap: swapoff it first")
        elif use.what == "holder":
            reasons.append(f"{_on(use.device, dev.name)} is in use by {use.detail} (an LVM, dm-crypt or RAID "
                           "member): deactivate that first")
        elif use.what == "loop":
            reasons.append(f"{_on(use.device, dev.name)} is the backing store of /dev/{use.detail}: losetup -d "
                           "it first")
    if dev.size < image_size:
        reasons.append(f"{name} is {human(dev.size)}, smaller than the image ({human(image_size)})")
    reasons += dev.backing
    return reasons


def _on(device: str, target: str) -> str:
    return f"/dev/{device}" + ("" if device == target else f" (on /dev/{target})")


def changes(old: Target, new: Target) -> list[str]:
    """How two readings of a target's facts differ: why the target opened is not the one checked."""
    if type(old) is not type(new):
        return [f"it is {_kind_of(new)} now, not {_kind_of(old)}"]
    found = []
    for f in dataclasses.fields(old):
        was, now = getattr(old, f.name), getattr(new, f.name)
        if was == now:
            continue
        if f.name == "size":
            found.append(f"size {human(was)} → {human(now)}")
        elif f.name in ("uses", "loops"):
            found.append("what uses it")
        elif f.name == "identity":
            found.append("another file")
        else:
            found.append(f"{f.name} {was or '-'} → {now or '-'}")
    return found


def _kind_of(target: Target) -> str:
    if isinstance(target, BlockDevice):
        return f"block device /dev/{target.name}"
    if isinstance(target, RegularFile):
        return "a regular file" if target.exists else "missing"
    return f"a {target.kind}"


# ---------------------------------------------------------------------------------------------------------
# Reading the facts


@dataclass
class System:
    """Where the facts come from: the real system by default, a fake tree in tests."""
    sysfs: Path = SYSFS
    mountinfo: Path = MOUNTINFO
    swaps: Path = SWAPS
    _names: dict[str, str] = field(default_factory=dict)

    def name_of(self, devnum: str) -> str | None:
        """Kernel name of a block device from its major:minor."""
        if devnum not in self._names:
            link = self.sysfs / "dev/block" / devnum
            self._names[devnum] = link.resolve().name if link.exists() else ""
        return self._names[devnum] or None

    def name_of_path(self, path: str) -> str:
        """Kernel name of a device given by path (/dev/sdb1, /dev/mapper/vg-swap), else the path's name."""
        try:
            st = os.stat(path)
            if stat.S_ISBLK(st.st_mode):
                found = self.name_of(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
                if found:
                    return found
        except OSError:
            pass
        return os.path.basename(os.path.realpath(path))

    def block(self, name: str) -> Path:
        return (self.sysfs / "class/block" / name).resolve()

    def device_name(self, path: str) -> str | None:
        """Kernel name of the block device at PATH; for a missing /dev node, its name (a node udev removed,
        or one of a fake tree). None for anything else: a regular file called sdb is not sdb."""
        try:
            st = os.stat(path)
        except OSError:
            real = os.path.realpath(path)
            return os.path.basename(real) if real.startswith("/dev/") else None
        return self.name_of(devnum(st.st_rdev)) if stat.S_ISBLK(st.st_mode) else None

    def loops(self) -> list[tuple[str, str]]:
        """(loop device, its backing file's path) of every attached loop device. The kernel adds " (deleted)"
        to a backing file since unlinked: the path is still where it was, so it is kept as a match."""
        found = []
        for entry in sorted((self.sysfs / "class/block").glob("loop*")):
            backing = read_text(self.block(entry.name) / "loop/backing_file")
            if backing:
                found.append((entry.name, backing.removesuffix(" (deleted)")))
        return found


def devnum(rdev: int) -> str:
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def read_text(path: Path, default: str = "") -> str:
    """A sysfs, proc or cgroup file's value, stripped; `default` if it cannot be read."""
    try:
        return path.read_text().strip()
    except OSError:
        return default


def unescape(field: str) -> str:
    """/proc's octal escapes (\\040 for a space) in paths."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(system: System) -> list[tuple[str, str]]:
    """(device name, mount point) of every mount backed by a block device."""
    found = []
    for line in read_text(system.mountinfo).splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        source = line.split(" - ", 1)[1].split()
        name = system.name_of(fields[2])
        if name is None and len(source) > 1 and source[1].startswith("/dev/"):
            name = system.name_of_path(unescape(source[1]))
        if name:
            found.append((name, unescape(fields[4])))
    return found


def filesystem_of(st_dev: int, system: System) -> str:
    """The type of the mounted filesystem with this st_dev (mountinfo's major:minor), "" if not found."""
    number = devnum(st_dev)
    for line in read_text(system.mountinfo).splitlines():
        fields = line.split()
        if " - " in line and len(fields) > 2 and fields[2] == number:
            return line.split(" - ", 1)[1].split()[0]
    return ""


def swaps(system: System) -> list[str]:
    """Active swap areas: device names for devices, paths for files."""
    out = []
    for line in read_text(system.swaps).splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            path = unescape(fields[0])
            out.append(system.name_of_path(path) if fields[1] == "partition" else os.path.realpath(path))
    return out


def _stack(system: System, disk: Path) -> list[str]:
    """The disk, its partitions, and everything stacked on any of them (holders, transitively)."""
    members = [disk.name, *sorted(p.name for p in disk.iterdir() if (p / "partition").is_file())]
    seen: list[str] = []
    todo = list(members)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        holders = system.block(name) / "holders"
        if holders.is_dir():
            todo += sorted(h.name for h in holders.iterdir())
    return seen


def _holder_label(system: System, name: str) -> str:
    dm = read_text(system.block(name) / "dm/name")
    return f"{name} ({dm})" if dm else name


def read_block_device(number: str, system: System | None = None, image: Path | None = None) -> BlockDevice:
    """The facts about one block device (major:minor) and everything that uses it; for a loop device, also
    whether what backs it may be written (`image`: the image about to be written)."""
    system = system or System()
    path = (system.sysfs / "dev/block" / number).resolve()
    name = path.name
    partition_of = path.parent.name if (path / "partition").is_file() else None
    disk = path.parent if partition_of else path
    root = system.sysfs.resolve()
    relative = path.relative_to(root).parts if path.is_relative_to(root) else path.parts
    loop = disk.name.startswith("loop")
    stack = _stack(system, disk)
    members = set(stack)
    uses: list[Use] = []
    uses += [Use(dev, "mount", point) for dev, point in mounts(system) if dev in members]
    uses += [Use(dev, "swap", "") for dev in swaps(system) if dev in members]
    direct = [disk.name] + [n for n in stack if (disk / n / "partition").is_file()]
    for member in direct:
        holders = system.block(member) / "holders"
        if holders.is_dir():
            uses += [Use(member, "holder", _holder_label(system, h.name)) for h in sorted(holders.iterdir())]
    # A loop device does not show as a holder of what backs it, nor does it take an exclusive claim on it.
    for loop_device, backing in system.loops():
        backed = system.device_name(backing)
        if backed in members:
            uses.append(Use(backed, "loop", loop_device))
    vendor, model = read_text(disk / "device/vendor"), read_text(disk / "device/model")
    backing_file = read_text(disk / "loop/backing_file").removesuffix(" (deleted)") if loop else ""
    if loop and not model:
        vendor, model = "loop device", backing_file
    return BlockDevice(
        name=name,
        size=int(read_text(path / "size", "0") or 0) * 512,
        removable=read_text(disk / "removable") == "1",
        usb=any(part.startswith("usb") for part in relative),
        loop=loop,
        read_only=read_text(path / "ro") == "1",
        partition_of=partition_of,
        kind="dm" if (path / "dm").is_dir() else "md" if (path / "md").is_dir() else "disk",
        vendor=vendor,
        model=model,
        diskseq=read_text(disk / "diskseq"),
        uses=tuple(uses),
        backing=_backing_refusals(disk.name, backing_file, system, image) if backing_file else (),
    )


def _backing_refusals(loop: str, backing: str, system: System, image: Path | None) -> tuple[str, ...]:
    """A loop device writes through to what backs it: a disk that must not be written (the root disk, one
    with a mounted partition) must not be written through a loop device either."""
    try:
        st = os.stat(backing)
    except OSError:
        return ()  # the file was deleted since: nothing else can reach it
    if stat.S_ISBLK(st.st_mode):
        under = read_block_device(devnum(st.st_rdev), system, image)
        # This very loop device is the one use of it that does not count.
        under = dataclasses.replace(under, uses=tuple(u for u in under.uses
                                                      if not (u.what == "loop" and u.detail == loop)))
        why = refusals(under, 0)
    elif stat.S_ISREG(st.st_mode) and image is not None and _identity(str(image)) == (st.st_dev, st.st_ino):
        why = [f"{backing} is the image itself"]
    else:
        why = []
    return tuple(f"/dev/{loop} writes through to {backing}, which must not be written: {reason}" for reason in why)


def read_target(path: Path, image: Path, system: System | None = None) -> Target:
    """What PATH is, in the terms refusals() decides on. OSError for a path that cannot be looked at."""
    system = system or System()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        # Where the path leads, not how it is spelt: ../dev/sdb and a link to /dev/sdb are in /dev too.
        real = os.path.realpath(path)
        return RegularFile(path, exists=False, under_dev=Path(real).parts[1:2] == ("dev",),
                           dangling=real if os.path.islink(path) else "")
    return _read_stat(path, st, image, system)


def read_opened(fd: int, path: Path, image: Path, system: System | None = None) -> Target:
    """What the open FD (opened from PATH) is: for a device the facts of the fd's own major:minor, for a file
    those of the fd's own inode, whatever PATH leads to by now."""
    return _read_stat(path, os.fstat(fd), image, system or System())


def _read_stat(path: Path, st: os.stat_result, image: Path, system: System) -> Target:
    if stat.S_ISBLK(st.st_mode):
        return read_block_device(devnum(st.st_rdev), system, image)
    if stat.S_ISREG(st.st_mode):
        identity = (st.st_dev, st.st_ino)
        return RegularFile(path, exists=True, size=st.st_size, is_image=_identity(str(image)) == identity,
                           swap=any(_identity(p) == identity for p in swaps(system)),
                           identity=identity,
                           loops=tuple(loop for loop, backing in system.loops() if _identity(backing) == identity),
                           filesystem=filesystem_of(st.st_dev, system))
    kind = ("directory" if stat.S_ISDIR(st.st_mode) else "character device" if stat.S_ISCHR(st.st_mode)
            else "special file")
    return Other(path, kind)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino

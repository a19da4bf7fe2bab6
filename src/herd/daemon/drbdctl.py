"""The replicated docroot's engines on an nfs node, driven by herdd: DRBD (drbdadm), the filesystem on it,
the NFS server. Side effects only (the decisions are in storage.py); blocking, so herdd runs them in a thread
of their own, one at a time.

Layout on the DRBD filesystem (mounted on MOUNT): `www/` is bind-mounted on the spec's export; `nfsdcld/` is
nfsdcld's storage directory (nfs.conf.d/herd.conf), so the NFS server that takes over knows the clients of the
one before, lets them reclaim their open files (NFSv4 state recovery) instead of failing them, and ends its
grace period as soon as they all have.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from herd.build.target import BlockDevice, System, read_block_device
from herd.daemon.drbd import DEVICE, RESOURCE, Report, is_fresh, parse_proc

PROC = Path("/proc/drbd")
BACKING = Path("/dev/herd-data")  # what the resource file names as its disk: a link herdd makes at boot
STICK_PART = Path("/dev/disk/by-partlabel/herd-data")  # the stick's free space, made a partition by growroot
MOUNT = Path("/var/lib/herd/drbd")
LABEL = "herd-data"
MIN_SIZE = 64 * 2**20
NFS_UNITS = ("nfs-server.service", "nfsdcld.service")
BLANK_PROBE = 4 * 2**20  # a disk whose first 4 MiB are zeros never held a filesystem
SKIPPED = ("loop", "ram", "zram", "sr", "fd", "dm-", "md", "drbd", "nbd")  # never a data disk


class EngineError(Exception):
    pass


def run(argv: list[str], timeout: float = 120, input: str | None = None) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise EngineError(f"`{' '.join(argv)}` did not finish in {timeout:.0f} s") from None
    except FileNotFoundError:
        raise EngineError(f"{argv[0]} is not installed") from None
    if r.returncode != 0:
        tail = (r.stderr.strip() or r.stdout.strip() or f"exit {r.returncode}").splitlines()[-1]
        raise EngineError(f"`{' '.join(argv)}` failed: {tail}")
    return r.stdout


# -- the data disk -----------------------------------------------------------------------------------------

def candidates(devices: Iterable[BlockDevice]) -> list[BlockDevice]:
    """Disks that may hold the replicated docroot when nfs.disk is "auto", best first: whole disks, writable,
    not loop or stacked devices, big enough, holding nothing mounted, no swap and no holder but DRBD (ours,
    once attached); internal disks before removable or USB ones. The boot stick holds / and so never qualifies."""
    fit = [d for d in devices if d.partition_of is None and d.kind == "disk" and not d.loop and not d.read_only
           and d.size >= MIN_SIZE
           and all(u.what == "holder" and u.detail.startswith("drbd") for u in d.uses)]
    return sorted(fit, key=lambda d: (d.removable or d.usb, d.name))


def choose_disk(setting: str, system: System | None = None, stick_part: Path = STICK_PART) -> Path:
    """The backing disk: nfs.disk as given; for "auto", the partition growroot made of the stick's free space
    if there is one, else the best candidate disk."""
    if setting != "auto":
        if not Path(setting).exists():
            raise EngineError(f"nfs.disk {setting} does not exist on this node")
        return Path(setting)
    if stick_part.exists():  # growroot kept the rest of the stick: there was no disk of its own at first boot
        return stick_part
    system = system or System()
    devices = []
    for entry in sorted((system.sysfs / "class/block").iterdir()):
        path = entry.resolve()
        if (path / "partition").is_file() or entry.name.startswith(SKIPPED):
            continue
        devices.append(read_block_device((path / "dev").read_text().strip(), system))
    found = candidates(devices)
    if not found:
        raise EngineError("no data disk: nfs.disk is \"auto\", this node has no disk but the one it booted "
                          "from, and its stick had no room left at first boot (add a second disk, or name one "
                          "in nfs.disk)")
    return Path("/dev") / found[0].name


def link_backing(disk: Path) -> None:
    """/dev/herd-data -> the disk (/dev is made afresh at every boot)."""
    target = os.path.realpath(disk)
    if os.path.islink(BACKING) and os.readlink(BACKING) == target:
        return
    with contextlib.suppress(FileNotFoundError):
        BACKING.unlink()
    BACKING.symlink_to(target)


def blank(disk: Path) -> bool:
    with open(disk, "rb") as f:
        return not any(f.read(BLANK_PROBE))


def signature(disk: Path) -> str | None:
    """What blkid finds on the disk (a filesystem, a partition table, DRBD's metadata), or None."""
    r = subprocess.run(["blkid", "-p", "-o", "export", str(disk)], capture_output=True, text=True, timeout=60)
    return None if r.returncode == 2 else found_by_blkid(r.stdout)


def found_by_blkid(export: str) -> str | None:
    """The content type in `blkid -p -o export` output. A partition's own entry in its disk's table
    (PART_ENTRY_*: name, type, offset) is not content: the herd-data partition growroot makes has one."""
    fields = dict(line.split("=", 1) for line in export.splitlines() if "=" in line)
    return fields.get("TYPE") or fields.get("PTTYPE")


def bring_up(disk: Path) -> bool:
    """Metadata (made once, on a disk that holds nothing), then attach and connect. Returns whether the
    metadata was made now. Never writes to a disk that holds data of another kind."""
    if PROC.exists() and parse_proc(PROC.read_text()).role != "Unconfigured":
        return False  # up already (herdd restarted)
    run(["modprobe", "drbd"])
    # Loaded now, not by the first takeover's NFS server start: a second saved when it counts.
    run(["modprobe", "nfsd"])
    link_backing(disk)
    made = False
    # blkid knows DRBD's metadata block (drbdadm dump-md would refuse one left "unclean" by a power cut).
    found = signature(disk)
    if found != "drbd":
        if found is not None or not blank(disk):
            raise EngineError(f"{disk} holds {found or 'data'}: herd never overwrites a disk; if it is to hold "
                              f"the replicated docroot, wipe it (wipefs -a {disk}; dd if=/dev/zero of={disk} "
                              "bs=1M count=4)")
        run(["drbdadm", "--", "--force", "create-md", RESOURCE], input="yes\n")
        made = True
    run(["drbdadm", "up", RESOURCE])
    return made


def read_report() -> Report:
    try:
        return parse_proc(PROC.read_text())
    except OSError:  # no module loaded yet
        return Report()


def fresh() -> bool:
    r = subprocess.run(["drbdadm", "get-gi", RESOURCE], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and is_fresh(r.stdout)


# -- roles ---------------------------------------------------------------------------------------------------

def primary(force: bool = False) -> None:
    run(["drbdadm", "primary", *(["--force"] if force else []), RESOURCE])


def secondary() -> None:
    run(["drbdadm", "secondary", RESOURCE])


def disconnect() -> None:
    # --force: at once, without the clean handshake a peer that cannot be reached would be waited for.
    run(["drbdadm", "--", "--force", "disconnect", RESOURCE])


def connect(discard_mine: bool) -> None:
    # 8.4: options go after "--"; a StandAlone resource must be disconnected before it can connect again.
    subprocess.run(["drbdadm", "disconnect", RESOURCE], capture_output=True, timeout=60)
    run(["drbdadm", *(["--", "--discard-my-data"] if discard_mine else []), "connect", RESOURCE])


def outdate() -> None:
    run(["drbdadm", "outdate", RESOURCE])


def make_filesystem() -> None:
    """ext4 on the device: only at the pair's first start (storagelink keeps a mark on disk from the forced
    promotion until this is done, so a power cut in between is finished later, never anything else)."""
    # nodiscard: the blocks are fresh anyway, and DRBD would send every discard over the link too.
    run(["mkfs.ext4", "-q", "-F", "-L", LABEL, "-m", "0", "-E", "nodiscard", DEVICE], timeout=900)


# -- serving ---------------------------------------------------------------------------------------------

def mounted(point: Path, proc_mounts: Path = Path("/proc/mounts")) -> bool:
    return any(line.split()[1:2] == [str(point)] for line in proc_mounts.read_text().splitlines())


def serve(export: Path, site: Path, lap: Callable[[str], None] = lambda step: None) -> bool:
    """Mount the filesystem, bind its parts into place, start the NFS server. Returns whether the docroot was
    seeded with the example site (an empty one, at the first start). `lap` is told when each step is done."""
    MOUNT.mkdir(parents=True, exist_ok=True)
    if not mounted(MOUNT):
        run(["mount", "-o", "noatime", DEVICE, str(MOUNT)])
    lap("mount")
    seeded = False
    www, clients = MOUNT / "www", MOUNT / "nfsdcld"
    for directory in (www, clients, export):
        directory.mkdir(parents=True, exist_ok=True)
    if site.is_dir() and not any(www.iterdir()):
        shutil.copytree(site, www, dirs_exist_ok=True)
        seeded = True
    if not mounted(export):
        run(["mount", "--bind", str(www), str(export)])
    run(["systemctl", "start", "nfs-server.service"], timeout=180)
    lap("nfs")
    return seeded


def stop_serving(export: Path) -> None:
    """Stop the NFS server and unmount everything on the DRBD device (whatever state serve() left), so it can
    be demoted. Processes still holding files there are killed: a node that stops serving must let go."""
    subprocess.run(["systemctl", "stop", *NFS_UNITS], capture_output=True, timeout=180)
    for point in (export, MOUNT):
        for attempt in range(3):
            if not mounted(point):
                break
            r = subprocess.run(["umount", str(point)], capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                break
            subprocess.run(["fuser", "-km", str(point)], capture_output=True, timeout=60)
            time.sleep(0.5 * (attempt + 1))
        if mounted(point):
            raise EngineError(f"cannot unmount {point}")


def nfs_running() -> bool:
    try:
        return int(Path("/proc/fs/nfsd/threads").read_text().strip() or 0) > 0
    except (OSError, ValueError):
        return False

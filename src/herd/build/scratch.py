"""Where a build assembles its root trees: its scratch space, a fresh folder in the cache directory that is gone
when the build ends.

Root trees are tens of thousands of small files, and on a disk creating them is most of what a warm build does:
unpacking a cached role tree took 17 s on the development machine's disk and 1 s in RAM, and a cold
debootstrap 97 s against 83 s. So, when the machine has the memory, the folder gets a tmpfs of the build's own
(not /dev/shm: that is often nodev, and too small in containers). Only the trees live there; cached tarballs and
images go to disk as before. A build killed outright (SIGKILL, power) leaves its folder behind, mounted or not;
the next build clears folders whose build is gone."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from herd.build.fs import mounts_under, remove_tree
from herd.build.run import CommandError, run
from herd.build.steps import BuildError
from herd.build.target import read_text

GiB = 2**30
MODES = ("auto", "ram", "disk")
# A cold build holds the base tree and every role's tree at once: 0.5 GiB for the base, 0.5 to 0.8 for a role
# (the example's, 2026-12); rounded up. The headroom is what the rest of the machine keeps.
BASE_NEED = 1 * GiB
ROLE_NEED = 1 * GiB
HEADROOM = 2 * GiB
NAME = re.compile(r"^build-(\d+)-")
FS_NAME = "herd-scratch"


@dataclass(frozen=True)
class Choice:
    in_ram: bool
    why: str      # shown in the build's first lines
    size: int     # the tmpfs's limit, bytes (0 on disk): a ceiling, not memory taken up front
    forced: bool  # asked for with --scratch: no falling back


def choose(mode: str, roles: int, mem_available: int) -> Choice:
    """Where to work. `auto`: RAM when what the build may hold plus the headroom fits in available memory."""
    need = BASE_NEED + ROLE_NEED * roles
    if mode == "disk":
        return Choice(False, "on disk (--scratch disk)", 0, True)
    size = max(need, mem_available - HEADROOM)
    if mode == "ram":
        return Choice(True, f"in RAM (--scratch ram; up to {size / GiB:.1f} GiB)", size, True)
    if mem_available >= need + HEADROOM:
        return Choice(True, f"in RAM (up to {size / GiB:.1f} GiB)", size, False)
    return Choice(False, f"on disk ({mem_available / GiB:.1f} GiB of memory available, "
                         f"{(need + HEADROOM) / GiB:.0f} GiB wanted for RAM)", 0, False)


def mem_available(meminfo: Path = Path("/proc/meminfo"), proc_cgroup: Path = Path("/proc/self/cgroup"),
                  cgroups: Path = Path("/sys/fs/cgroup")) -> int:
    """Memory the build may still take: the machine's available memory, or less if this process's cgroup (a
    container's, say) has a limit closer by: a tmpfs's pages count against it, and past it the build is killed."""
    available = 0
    for line in read_text(meminfo).splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    room = cgroup_room(proc_cgroup, cgroups)
    return available if room is None else min(available, room)


UNLIMITED = 2**62  # cgroup v1 says "no limit" with a number near 2**63


def cgroup_room(proc_cgroup: Path, cgroups: Path) -> int | None:
    """What this process's memory cgroup, and each one above it, may still take (its limit less its use; the
    tightest); None when none of them has a limit. cgroup v2 (memory.max) and v1 (memory.limit_in_bytes)."""
    rooms = []
    for line in read_text(proc_cgroup).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, where = parts
        if controllers == "":
            top, limit_file, use_file = cgroups, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            top, limit_file, use_file = cgroups / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        folder = top / where.lstrip("/")
        while True:
            limit, use = read_text(folder / limit_file), read_text(folder / use_file)
            if limit.isdigit() and use.isdigit() and int(limit) < UNLIMITED:
                rooms.append(max(int(limit) - int(use), 0))
            if folder == top or not folder.is_relative_to(top):
                break
            folder = folder.parent
    return min(rooms) if rooms else None


def is_mount_point(path: Path) -> bool:
    return str(path.resolve()) in mounts_under(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unmount(path: Path) -> None:
    """Unmount a scratch tmpfs. A chroot's last processes may hold it for a moment after an interrupt; if they
    still do after a few seconds, detach it (the kernel frees it when they are gone)."""
    for attempt in range(10):
        try:
            run(["umount", path])
            return
        except CommandError:
            if attempt < 9:
                time.sleep(0.5)
    run(["umount", "--lazy", path])


# The lock each build holds on its scratch folder's .lock file while it runs, by folder.
_held: dict[Path, int] = {}


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _lock(path: Path) -> int | None:
    """An exclusive lock on the folder's lock file, or None if a running build holds it."""
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release(path: Path) -> None:
    """Remove a scratch folder, unmounting its tmpfs first if it has one; then its lock."""
    if is_mount_point(path):
        unmount(path)
        path.rmdir()
    else:
        remove_tree(path)
    fd = _held.pop(path, None)
    lock_path(path).unlink(missing_ok=True)
    if fd is not None:
        os.close(fd)


def clear_stale(cache_dir: Path) -> list[Path]:
    """Remove the scratch folders of builds that are no longer running; returns them. A running build holds a
    lock on its folder's .lock file: a process id alone would not do, as builds in two containers sharing the
    cache see each other's ids as dead. A folder with no lock file (an older herd's) is judged by its id."""
    cleared = []
    for path in sorted(cache_dir.glob("build-*")) if cache_dir.is_dir() else ():
        m = NAME.match(path.name)
        if not m or not path.is_dir() or path in _held:
            continue
        if lock_path(path).exists():
            fd = _lock(path)
            if fd is None:
                continue  # its build is running
            _held[path] = fd
        elif int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        release(path)
        cleared.append(path)
    for lock in sorted(cache_dir.glob("build-*.lock")) if cache_dir.is_dir() else ():
        folder = lock.with_name(lock.name.removesuffix(".lock"))
        if not folder.exists() and (fd := _lock(folder)) is not None:  # a build killed as it let go
            lock.unlink(missing_ok=True)
            os.close(fd)
    return cleared


def make(cache_dir: Path, choice: Choice) -> tuple[Path, str]:
    """A fresh scratch folder in cache_dir, and where it is (for the build's first lines). If a tmpfs cannot be
    mounted (a container without the right to), `auto` works on disk; `--scratch ram` is an error."""
    path = Path(tempfile.mkdtemp(prefix=f"build-{os.getpid()}-", dir=cache_dir))
    fd = _lock(path)
    assert fd is not None, "a lock file nobody else knows of yet"
    _held[path] = fd
    if not choice.in_ram:
        return path, choice.why
    try:
        run(["mount", "-t", "tmpfs", "-o", f"size={choice.size},mode=0700", FS_NAME, path])
    except CommandError as exc:
        if choice.forced:
            release(path)
            raise BuildError(f"--scratch ram: cannot mount a tmpfs on {path}: {' '.join(exc.tail)}") from None
        return path, f"on disk (could not mount a tmpfs: {' '.join(exc.tail)})"
    return path, choice.why

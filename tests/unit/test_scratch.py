"""The build's scratch space: where it goes (pure), and the real tmpfs mounted, released, and cleared after a
build that was killed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herd.build import scratch
from herd.build.scratch import GiB, choose

needs_root = pytest.mark.root  # mounting a tmpfs


def fs_type(path: Path) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(path.resolve()):
                return fields[fields.index("-") + 1]
    return None


def test_auto_works_in_ram_when_the_memory_is_there() -> None:
    c = choose("auto", roles=4, mem_available=16 * GiB)
    assert c.in_ram and not c.forced
    assert c.size == 14 * GiB  # a ceiling: all but the headroom
    assert c.why == "in RAM (up to 14.0 GiB)"


def test_auto_works_on_disk_when_memory_is_short_and_says_why() -> None:
    c = choose("auto", roles=4, mem_available=6 * GiB)
    assert not c.in_ram and c.size == 0
    assert c.why == "on disk (6.0 GiB of memory available, 7 GiB wanted for RAM)"
    # One role needs less: the same machine builds it in RAM.
    assert choose("auto", roles=1, mem_available=6 * GiB).in_ram


def cgroup_tree(root: Path, files: dict[str, str], membership: str) -> tuple[Path, Path, Path]:
    """A fake /proc/meminfo (16 GiB available), /proc/self/cgroup and /sys/fs/cgroup."""
    root.mkdir()
    meminfo = root / "meminfo"
    meminfo.write_text(f"MemTotal: {32 * 2**20} kB\nMemAvailable: {16 * 2**20} kB\n")
    proc = root / "cgroup"
    proc.write_text(membership)
    for name, text in files.items():
        (root / "sys" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "sys" / name).write_text(text + "\n")
    return meminfo, proc, root / "sys"


def test_a_containers_memory_limit_is_what_is_available(tmp_path: Path) -> None:
    """cgroup v2: the container's 4 GiB limit (its parent has more) with 1 GiB used leaves 3 GiB, not the host's 16:
    a tmpfs filled past the limit would get the build killed, so auto works on disk."""
    v2 = cgroup_tree(tmp_path / "v2", {"memory.max": str(8 * GiB), "memory.current": str(2 * GiB),
                                       "box/memory.max": str(4 * GiB), "box/memory.current": str(1 * GiB)},
                     "0::/box\n")
    assert scratch.mem_available(*v2) == 3 * GiB
    assert not choose("auto", roles=4, mem_available=scratch.mem_available(*v2)).in_ram
    # cgroup v1, as on this machine: the memory controller's own hierarchy; no limit is a number near 2**63.
    v1 = cgroup_tree(tmp_path / "v1", {"memory/memory.limit_in_bytes": "9223372036854771712",
                                       "memory/memory.usage_in_bytes": str(5 * GiB),
                                       "memory/ci/job/memory.limit_in_bytes": str(6 * GiB),
                                       "memory/ci/job/memory.usage_in_bytes": str(1 * GiB)},
                     "4:memory:/ci/job\n1:cpu:/\n0::/\n")
    assert scratch.mem_available(*v1) == 5 * GiB
    unlimited = cgroup_tree(tmp_path / "none", {"memory.max": "max", "memory.current": str(GiB)}, "0::/\n")
    assert scratch.mem_available(*unlimited) == 16 * GiB


def test_forced_modes() -> None:
    disk = choose("disk", roles=1, mem_available=64 * GiB)
    assert not disk.in_ram and disk.forced
    ram = choose("ram", roles=4, mem_available=1 * GiB)
    assert ram.in_ram and ram.forced
    assert ram.size == 5 * GiB  # never below what the build may hold, even if the memory is not there


@needs_root
def test_a_ram_scratch_is_a_tmpfs_of_its_own_and_goes_away(tmp_path: Path) -> None:
    path, where = scratch.make(tmp_path, choose("ram", roles=1, mem_available=8 * GiB))
    try:
        assert path.parent == tmp_path and path.name.startswith(f"build-{os.getpid()}-")
        assert fs_type(path) == "tmpfs"
        assert where.startswith("in RAM")
        assert oct(path.stat().st_mode & 0o777) == "0o700"
        (path / "tree").mkdir()
        (path / "tree" / "file").write_bytes(b"x" * 4096)
    finally:
        scratch.release(path)
    assert fs_type(path) is None
    assert not path.exists()


@needs_root
def test_a_disk_scratch_is_a_plain_folder(tmp_path: Path) -> None:
    path, where = scratch.make(tmp_path, choose("disk", roles=1, mem_available=8 * GiB))
    assert fs_type(path) is None and where == "on disk (--scratch disk)"
    (path / "file").write_text("x")
    scratch.release(path)
    assert not path.exists()


@needs_root
def test_a_tmpfs_still_in_use_is_detached(tmp_path: Path) -> None:
    """After Ctrl-C a chroot's last process may still sit in the tree: the scratch goes away all the same."""
    path, _ = scratch.make(tmp_path, choose("ram", roles=1, mem_available=8 * GiB))
    holder = subprocess.Popen(["sleep", "60"], cwd=path)
    try:
        scratch.release(path)
        assert fs_type(path) is None
        assert not path.exists()
    finally:
        holder.kill()
        holder.wait()


@needs_root
def test_the_scratch_of_a_killed_build_is_cleared(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process: a build killed outright
    dead = tmp_path / f"build-{gone.pid}-abc123"
    dead.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "herd-scratch", dead], check=True)
    (dead / "half-made-tree").mkdir()
    dead_on_disk = tmp_path / f"build-{gone.pid}-def456"
    (dead_on_disk / "root").mkdir(parents=True)
    running = tmp_path / "build-1-xyz789"  # pid 1 is always running
    running.mkdir()
    older = tmp_path / "build-k2j3h4"      # no pid in its name: not ours to judge
    older.mkdir()
    try:
        assert scratch.clear_stale(tmp_path) == [dead, dead_on_disk]
        assert fs_type(dead) is None and not dead.exists() and not dead_on_disk.exists()
        assert running.is_dir() and older.is_dir()
    finally:
        if fs_type(dead):
            subprocess.run(["umount", dead])


def test_a_build_holding_its_lock_is_running_whatever_its_process_id(tmp_path: Path) -> None:
    """A build in another container (another PID namespace) sharing the cache: its process id names nothing
    here, but it holds its folder's lock, so its scratch stays; once it is gone, the folder goes."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    other = tmp_path / f"build-{gone.pid}-abc123"
    (other / "root").mkdir(parents=True)
    hold = ("import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(scratch.lock_path(other))], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert scratch.clear_stale(tmp_path) == []
        assert (other / "root").is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert scratch.clear_stale(tmp_path) == [other]
    assert not other.exists() and not scratch.lock_path(other).exists()
    orphan = tmp_path / "build-1-zzz.lock"  # its folder removed, the build killed before the lock went
    orphan.write_text("")
    assert scratch.clear_stale(tmp_path) == [] and not orphan.exists()


def test_a_builds_own_scratch_is_never_cleared_and_its_lock_goes_with_it(tmp_path: Path) -> None:
    path, _ = scratch.make(tmp_path, choose("disk", roles=1, mem_available=8 * GiB))
    assert scratch.lock_path(path).exists()
    assert scratch.clear_stale(tmp_path) == []
    scratch.release(path)
    assert sorted(tmp_path.iterdir()) == []

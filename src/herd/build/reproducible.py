"""Same inputs, same image bytes: the pieces that take time stamps out of a build.

- Every file's times in the root tree are clamped to SOURCE_DATE_EPOCH (files from packages keep their older
  mtimes; anything made during the build gets the epoch) and atime is set to mtime, before `mkfs.ext4 -d`
  copies them. mkfs.ext4 sorts directory entries itself and takes its own time from E2FSPROGS_FAKE_TIME.
- What cannot be held still on the tree is ctime (the kernel stamps it) and atime (reading a directory, as
  mkfs does, updates it), and mkfs.ext4 copies both; so after mkfs every used inode's ctime and atime are set
  to the epoch with debugfs (`time_commands`), the used inodes read from dumpe2fs's free-inode ranges
  (`used_inodes`).
- The ESP: mkfs.fat and mtools take SOURCE_DATE_EPOCH (the volume label is written by mlabel, since mkfs.fat
  stamps its label entry with the real time), files are copied with their mtime set to the epoch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from herd.build.run import run

FIRST_INODE = 11  # inodes below are ext4's reserved ones (2 is the root directory)


def clamp_tree(tree: Path, epoch: int) -> int:
    """Set every path's mtime to min(mtime, epoch) in whole seconds (and its atime to the same); the number of
    paths changed. Symlinks themselves, never their targets."""
    changed = 0
    stack = [tree]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                if _clamp(entry.path, st, epoch):
                    changed += 1
    return changed + _clamp(str(tree), tree.lstat(), epoch)


def _clamp(path: str, st: os.stat_result, epoch: int) -> bool:
    mtime = min(int(st.st_mtime), epoch)
    if st.st_mtime_ns == mtime * 10**9:
        return False  # (atime is left: reading a directory changes it anyway; debugfs sets it after mkfs)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)
    return True


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        out.append((int(low), int(high or low)))
    return out


def used_inodes(dumpe2fs: str) -> list[int]:
    """Inodes in use, from `dumpe2fs` output: each group's inodes but its "Free inodes:" ranges; the root
    directory and every inode from the first non-reserved one."""
    found = re.search(r"^Inodes per group:\s+(\d+)", dumpe2fs, re.M)
    if found is None:
        raise ValueError("dumpe2fs output without 'Inodes per group'")
    per_group = int(found.group(1))
    used: list[int] = []
    group = None
    for line in dumpe2fs.splitlines():
        if m := re.match(r"Group (\d+):", line):
            group = int(m.group(1))
        elif group is not None and (m := re.match(r"\s+Free inodes:(.*)$", line)):
            first, last = group * per_group + 1, (group + 1) * per_group
            free: set[int] = set()
            for low, high in _ranges(m.group(1)):
                free.update(range(low, high + 1))
            used += [i for i in range(first, last + 1) if i not in free and (i == 2 or i >= FIRST_INODE)]
            group = None
    return used


def time_commands(inodes: list[int], epoch: int) -> str:
    """A debugfs command file setting each inode's ctime and atime to the epoch (atime too: reading a
    directory, as mkfs does, updates it)."""
    return "".join(f"sif <{i}> ctime @{epoch}\nsif <{i}> atime @{epoch}\n" for i in inodes)


def set_inode_times(fs: str, epoch: int, script: Path) -> None:
    """Every used inode's ctime and atime to the epoch, in the ext4 filesystem fs (`IMAGE?offset=N` for one
    inside a disk image); script is a scratch file for debugfs's commands."""
    script.write_text(time_commands(used_inodes(run(["dumpe2fs", fs])), epoch))
    # E2FSPROGS_FAKE_TIME: debugfs stamps the superblock's write time when it closes the filesystem.
    run(["debugfs", "-w", "-f", script, fs], env={"E2FSPROGS_FAKE_TIME": str(epoch)})

"""File-system helpers for root trees: safe removal (never through a mount), tarballs, sizes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from herd.build.run import OnLine, run

TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"]


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if (point + "/").startswith(prefix):
                found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """rm -rf, but refuse if anything is mounted inside (it would delete the host's files through it)."""
    if not path.exists() and not path.is_symlink():
        return
    busy = mounts_under(path)
    if busy:
        raise RuntimeError(f"refusing to delete {path}: still mounted inside it: {', '.join(busy)}")
    for attempt in range(5):
        try:
            shutil.rmtree(path)
            return
        except OSError:
            # A killed chroot's last processes may still be writing for a moment.
            if attempt == 4:
                raise
            time.sleep(0.5)


def pack(tree: Path, tarball: Path, what: str = ".", on_line: OnLine | None = None) -> None:
    """tree (or `what`, a path relative to it) into a zstd tarball; `unpack` into a tree puts it back in place."""
    run(["tar", *TAR_FLAGS, "-I", "zstd -T0 -3", "-cf", tarball, "-C", tree, what], on_line=on_line)


def unpack(tarball: Path, tree: Path, on_line: OnLine | None = None) -> None:
    tree.mkdir(parents=True, exist_ok=True)
    run(["tar", *TAR_FLAGS, "-I", "zstd -T0", "-xpf", tarball, "-C", tree], on_line=on_line)


def tree_bytes(tree: Path) -> tuple[int, int]:
    """(bytes the tree needs on ext4 with 4 KiB blocks, number of inodes)."""
    total, inodes = 0, 0
    for path in [tree, *tree.rglob("*")]:
        inodes += 1
        if path.is_symlink():
            continue
        if path.is_file():
            total += -(-path.stat().st_size // 4096) * 4096
        elif path.is_dir():
            total += 4096
    return total, inodes

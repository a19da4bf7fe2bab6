"""Reproducible images, the pure pieces and the filesystem steps on small images: time stamps clamped in a tree,
used inodes from dumpe2fs, and two ext4 filesystems made from trees with different ctimes (the kernel stamps
them) coming out byte-identical once ctimes and atimes are set."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from herd.build.reproducible import clamp_tree, set_inode_times, time_commands, used_inodes
from herd.build.run import run

EPOCH = 1700000000
DUMPE2FS = """\
Filesystem volume name:   herd-root
Inode count:              16384
Inodes per group:         8192
First inode:              11

Group 0: (Blocks 0-32767) csum 0x1234 [ITABLE_ZEROED]
  Primary superblock at 0, Group descriptors at 1-1
  Free blocks: 3000-32767
  Free inodes: 16-20, 25, 30-8192
Group 1: (Blocks 32768-65535) csum 0x5678 [INODE_UNINIT, ITABLE_ZEROED]
  Free blocks: 32768-65535
  Free inodes: 8193-8194, 8196-16384
"""


def test_used_inodes_from_dumpe2fs() -> None:
    assert used_inodes(DUMPE2FS) == [2, 11, 12, 13, 14, 15, 21, 22, 23, 24, 26, 27, 28, 29, 8195]


def test_used_inodes_of_a_full_group() -> None:
    text = "Inodes per group: 16\nGroup 0: (Blocks 0-1)\n  Free inodes: \nGroup 1: (Blocks 2-3)\n  Free inodes: 17-32\n"
    assert used_inodes(text) == [2, *range(11, 17)]


def test_used_inodes_needs_the_header() -> None:
    with pytest.raises(ValueError):
        used_inodes("Group 0:\n  Free inodes: 1-10\n")


def test_time_commands() -> None:
    assert time_commands([2, 11], 5) == ("sif <2> ctime @5\nsif <2> atime @5\n"
                                         "sif <11> ctime @5\nsif <11> atime @5\n")


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "etc/herd").mkdir(parents=True)
    (tree / "etc/herd/release").write_text("RELEASE=1\n")
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/tool").write_text("#!/bin/sh\n")
    os.utime(tree / "usr/bin/tool", (EPOCH - 500, EPOCH - 1000))  # from a package: older than the epoch
    (tree / "usr/bin/link").symlink_to("tool")
    return tree


def test_clamp_tree(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    assert clamp_tree(tree, EPOCH) == 7  # every path (5 directories, a file, a symlink) but the older file
    for path in [tree, *tree.rglob("*")]:
        st = path.lstat()
        assert st.st_mtime <= EPOCH and st.st_mtime_ns % 10**9 == 0, path
    assert (tree / "usr/bin/tool").stat().st_mtime == EPOCH - 1000  # from a package: older stays older
    assert (tree / "etc/herd/release").stat().st_mtime == EPOCH
    assert (tree / "usr/bin/link").lstat().st_mtime == EPOCH  # the link itself
    assert clamp_tree(tree, EPOCH) == 0


def ext4(tree: Path, image: Path, fix_ctimes: bool) -> str:
    with open(image, "wb") as f:
        f.truncate(16 * 2**20)
    offset = 1 * 2**20
    uuid = "3a0b6f7e-1d2c-4b5a-9e8f-7c6d5e4f3a2b"
    run(["mkfs.ext4", "-q", "-F", "-U", uuid, "-E", f"offset={offset},root_owner=0:0,hash_seed={uuid}",
         "-d", tree, image, "8M"], env={"E2FSPROGS_FAKE_TIME": str(EPOCH)})
    if fix_ctimes:
        fs = f"{image}?offset={offset}"
        set_inode_times(fs, EPOCH, image.with_suffix(".debugfs"))
        run(["e2fsck", "-fn", fs])  # still a clean filesystem
    return hashlib.sha256(image.read_bytes()).hexdigest()


def test_two_ext4_images_of_one_tree_are_identical(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_tree(tmp_path / "a")
    clamp_tree(first, EPOCH)
    time.sleep(1.1)  # the second tree's ctimes are a second later
    second = make_tree(tmp_path / "b")
    clamp_tree(second, EPOCH)
    assert ext4(first, tmp_path / "a.img", False) != ext4(second, tmp_path / "b.img", False)
    fixed = ext4(first, tmp_path / "a.img", True)
    time.sleep(1.1)  # and the second filesystem is written a second later (the superblock's write time)
    assert ext4(second, tmp_path / "b.img", True) == fixed


def test_cleaning_the_docs_does_not_depend_on_directory_order(tmp_path: Path) -> None:
    """A doc that is a symlink to another package's doc went or stayed depending on whether its target had been
    deleted first: images built in RAM (tmpfs) and on disk (ext4) differed by a few such links."""
    from herd.build.steps.tree import clean

    kept = set()
    for order in ("target first", "link first"):
        tree = tmp_path / order.replace(" ", "-")
        docs = tree / "usr/share/doc"
        (docs / "python3.11-minimal").mkdir(parents=True)
        (docs / "python3.11").mkdir()
        (docs / "base-files").mkdir()
        real = docs / "python3.11-minimal/changelog.gz"
        link = docs / "python3.11/changelog.gz"
        for path in ((real, link) if order == "target first" else (link, real)):
            if path == real:
                path.write_bytes(b"log")
            else:
                path.symlink_to("../python3.11-minimal/changelog.gz")
        (docs / "base-files/FAQ").symlink_to("../../base-files/FAQ")  # dangling in the tree
        (docs / "base-files/copyright").write_text("GPL")
        (docs / "python3.11/copyright").symlink_to("../python3.11-minimal/copyright")
        clean(tree)
        left = {str(p.relative_to(docs)) for p in docs.rglob("*") if not p.is_dir() or p.is_symlink()}
        kept.add(frozenset(left))
    assert kept == {frozenset({"base-files/copyright", "python3.11/copyright"})}

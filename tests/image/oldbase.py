"""A cached base tree made older the way the archives make it old: the kernel of the suite's point release
instead of the security archive's newer one (an ABI change: a new package, the old one and the modules herd
compressed to remove). Stored under a state no archive has, so the next build of that recipe must upgrade it.
Shared by test_archive_moved.py and bench/build.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from herd.build.chroot import in_chroot
from herd.build.dpkg import installed_packages, stale_kernels
from herd.build.fs import pack, remove_tree, unpack

MARKER = "usr/share/herd-test/made-before"  # a file no package has: in an image only if built from this tree


@dataclass(frozen=True)
class OldBase:
    entry: Path  # the cache entry written
    newest: str  # the kernel image package the archives have now (linux-image-<abi>)
    newest_version: str  # the kernel metapackage's version now
    older: str  # the point release's kernel image package, in the old tree
    older_version: str


def status(tree: Path) -> str:
    return (tree / "var/lib/dpkg/status").read_text(errors="replace")


def make_older(current: Path, cache: Path, recipe_key: str, suite: str, kernel: str, work: Path) -> OldBase:
    """The base tarball `current` (today's) with the point release's kernel, as cache/rootfs/base-<recipe>.old."""
    tree = work / "old-base"
    unpack(current, tree)
    newest, _ = stale_kernels(status(tree), kernel)
    newest_version = installed_packages(status(tree))[kernel]
    in_chroot(tree, cache / "debs", f"INITRD=No apt-get install -y -q --allow-downgrades {kernel}/{suite}\n"
              f"apt-get purge -y -q {newest}")
    older, _ = stale_kernels(status(tree), kernel)
    older_version = installed_packages(status(tree))[kernel]
    remove_tree(tree / "usr/lib/modules" / newest.removeprefix("linux-image-"))  # herd's compressed modules
    (tree / MARKER).parent.mkdir(parents=True)
    (tree / MARKER).write_text("the old base\n")
    (cache / "rootfs").mkdir(exist_ok=True)
    entry = cache / "rootfs" / f"base-{recipe_key}.made-before-the-archives-moved.tar.zst"
    pack(tree, entry)
    remove_tree(tree)
    return OldBase(entry, newest, newest_version, older, older_version)

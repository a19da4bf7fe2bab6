"""Writing into a root tree as the build host's root. A Debian tree holds absolute symlinks meant for inside the
chroot (and a package or a planted file may add others): followed from outside it, they point at the *host*.
So every path is resolved and checked to stay inside the tree, and a symlink where a file goes is replaced,
never followed. The overlay, the chroot's policy-rc.d and the tree step all write and delete through here."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from herd.build.fs import remove_tree

DIR_MODE = 0o755  # a folder made in the tree, whatever the umask


class TreeError(Exception):
    pass


def safe_path(root: Path, rel: PurePosixPath) -> Path:
    """root/rel, guaranteed inside root even where the tree holds absolute symlinks (which point at the
    *host* when followed from outside the chroot)."""
    real_root = Path(os.path.realpath(root))
    dest = root.joinpath(*rel.parts)
    parent = Path(os.path.realpath(dest.parent))
    if parent != real_root and real_root not in parent.parents:
        raise TreeError(f"/{rel}: its directory resolves outside the image tree ({parent})")
    return parent / dest.name


def real_dir(root: Path, rel: PurePosixPath) -> Path:
    """Where root/rel really is, which must be inside the tree: a folder to walk or delete in (a link named by
    rel itself is followed too, unlike safe_path)."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(root.joinpath(*rel.parts)))
    if real != real_root and real_root not in real.parents:
        raise TreeError(f"/{rel}: resolves outside the image tree ({real})")
    return real


def make_dirs(root: Path, rel: PurePosixPath) -> Path:
    """root/rel as a folder inside the tree, where it really is. Each folder made here is 0755 whatever the
    umask; the ones already there are left as they are."""
    for depth in range(1, len(rel.parts) + 1):
        path = safe_path(root, PurePosixPath(*rel.parts[:depth]))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        os.chmod(path, DIR_MODE)
    return real_dir(root, rel)


def write_file(root: Path, rel: PurePosixPath, data: bytes, mode: int) -> None:
    """Write one file into the tree atomically; a symlink in its place is replaced, never followed."""
    make_dirs(root, rel.parent)
    dest = safe_path(root, rel)
    tmp = dest.with_name(f".{dest.name}.herd-tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o777)
        try:
            os.write(fd, data)
            if os.geteuid() == 0:
                os.fchown(fd, 0, 0)  # image files belong to root, whoever owns the overlay checkout
            os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def remove(root: Path, rel: PurePosixPath) -> None:
    """Remove root/rel: a file, a symlink (never what it points to) or a folder with all it holds (never through
    a mount, herd.build.fs.remove_tree). Nothing there is fine."""
    path = safe_path(root, rel)
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    else:
        path.unlink(missing_ok=True)

"""Reading the checkout for what goes into an image or herd.pyz: overlay/, examples/site, herd's own sources.

A symlink in the checkout is followed only while it stays inside it. One to /etc/shadow or /root/.ssh/id_rsa,
followed by the build host's root, would carry a host secret into every image, the docroot or herd.pyz; one to
a file the copy leaves out (a cluster key beside its spec) would carry that. Such a link, a dangling one, a loop
or anything but a file or a directory is refused with a CheckoutError naming it, and a copy checks every file
before it writes any, so a refused checkout leaves nothing half-written.

Nor are the checkout's modes taken as they are: cloned with umask 002, its files are group-writable, and an image
must not be (sshd's StrictModes shuts root out over a group-writable authorized_keys). A file is 0644, or 0755 if
its owner may run it; a folder a copy makes is 0755.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

Skip = Callable[[str], bool]  # a file or directory name the walk leaves out
FILE_MODE, EXEC_MODE, DIR_MODE = 0o644, 0o755, 0o755


class CheckoutError(Exception):
    pass


def nothing(name: str) -> bool:
    return False


def image_mode(st_mode: int) -> int:
    """A checkout file's mode in an image or herd.pyz: only whether its owner may run it counts."""
    return EXEC_MODE if st_mode & stat.S_IXUSR else FILE_MODE


@dataclass(frozen=True)
class Source:
    path: Path           # in the checkout, as walked (a symlink's own path, not its target's)
    rel: PurePosixPath   # relative to what was walked
    mode: int            # in the image: image_mode() of the file's


def _real(root: Path, path: Path, skip: Skip) -> Path:
    """Where path really is, which must be inside root and not something the walk leaves out."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    what = f"{path} is a symlink to {real}" if path.is_symlink() else f"{path} leads to {real}"
    if real != real_root and real_root not in real.parents:
        raise CheckoutError(f"{what}, outside {root}: the build copies nothing from outside it into an image or "
                            "herd.pyz (it could be a host secret); replace the link with a copy of what it should "
                            "hold, or remove it")
    if any(skip(part) for part in real.relative_to(real_root).parts):
        raise CheckoutError(f"{what}, which the build leaves out (a secret, a hidden file, a cache); replace the "
                            "link with a copy of what it should hold, or remove it")
    return real


def _collect(root: Path, path: Path, rel: PurePosixPath, skip: Skip, seen: frozenset[Path],
             out: list[Source]) -> None:
    real = _real(root, path, skip)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise CheckoutError(f"{path} is a symlink to {real}, which does not exist; fix or remove it") from None
    if stat.S_ISREG(st.st_mode):
        out.append(Source(path, rel, image_mode(st.st_mode)))
    elif stat.S_ISDIR(st.st_mode):
        if real in seen:
            raise CheckoutError(f"{path} is a symlink to {real}, a folder it is in (a loop); remove it")
        for name in sorted(os.listdir(path)):
            if not skip(name):
                _collect(root, path / name, rel / name, skip, seen | {real}, out)
    else:
        raise CheckoutError(f"{path}: neither a file nor a folder (a device, a socket, a FIFO); remove it")


def walk(root: Path, base: Path, skip: Skip = nothing) -> list[Source]:
    """Every file under base (a folder in root), sorted, with its path relative to base."""
    out: list[Source] = []
    _collect(root, base, PurePosixPath(), skip, frozenset(), out)
    return out


def sources(root: Path, names: Iterable[str], skip: Skip = nothing) -> list[Source]:
    """Every file of root's entries `names` (files or folders), with its path relative to root."""
    out: list[Source] = []
    for name in names:
        _collect(root, root / name, PurePosixPath(name), skip, frozenset(), out)
    return out


def read(root: Path, path: Path) -> bytes:
    """path's bytes, checked again as it is read: inside root, and a regular file."""
    real = _real(root, path, nothing)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CheckoutError(f"{path}: cannot read it: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CheckoutError(f"{path}: not a regular file")
        return f.read()


def copy(root: Path, names: Iterable[str], dest: Path, skip: Skip = nothing) -> None:
    """root's entries `names` (files or folders) into dest, made here: every file is checked before any is
    written; each keeps its time stamp and gets its image mode, and every folder is 0755, whatever the umask."""
    files = sources(root, names, skip)
    dest.mkdir(parents=True)
    os.chmod(dest, DIR_MODE)
    for f in files:
        target = dest.joinpath(*f.rel.parts)
        for depth in range(1, len(f.rel.parts)):
            folder = dest.joinpath(*f.rel.parts[:depth])
            if not folder.is_dir():
                folder.mkdir()
                os.chmod(folder, DIR_MODE)
        data = read(root, f.path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            os.fchmod(out.fileno(), f.mode)
        st = os.stat(f.path)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

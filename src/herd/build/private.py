"""What carries the cluster's secrets stays its owner's: every image holds the cluster key (a director's also the
TSIG secret), so the release folder is 0700 and its images, compressed copies and block maps 0600, and a key file
others could read or replace is refused before a build uses it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Make `path` (and any missing parent) a folder only its owner can enter; an existing one is closed too."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def create_private(path: Path) -> int:
    """Open `path` for writing, made empty and 0600 whatever the umask (an existing file's mode is set too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def _access_problem(option: str, path: Path, uid: int | None, mask: int, owners: str, exposed: str) -> str | None:
    """Why `path` must not be trusted: owned by another user than `uid` (this process's) or root, or with any of
    the `mask` mode bits; `owners` and `exposed` end the two messages."""
    uid = os.geteuid() if uid is None else uid
    st = path.stat()
    if st.st_uid not in (uid, 0):
        return f"{option}: {path} belongs to another user (uid {st.st_uid}); {owners}"
    if st.st_mode & mask:
        return exposed.format(option=option, path=path, mode=f"{stat.S_IMODE(st.st_mode):04o}")
    return None


def key_problem(option: str, path: Path, uid: int | None = None) -> str | None:
    """Why an existing secret (`--key`, `--release-key`, `--site-key`) must not be used as it is, or None.
    Readable by others, it is no secret (anyone could forge heartbeats, derive the database passwords, sign
    releases every node takes, repoint the public names); writable by another user, or owned by one, it could be
    swapped for a key of theirs."""
    return _access_problem(option, path, uid, 0o077, "a key must be yours or root's",
                           "{option}: {path} is open to other users (mode {mode}); make it private with "
                           "`chmod 600 {path}` (and keep a copy only where you trust every user)")


def cache_problem(option: str, path: Path, uid: int | None = None) -> str | None:
    """Why an existing cache folder must not be used, or None. Its entries are trusted by name (a root tree, a
    zipapp): a folder another user can write into, or owns, would let them plant what goes into every image."""
    return _access_problem(option, path, uid, 0o022, "use a cache folder of yours or root's",
                           "{option}: {path} can be written by other users (mode {mode}), who could plant a root "
                           "tree that goes into every image; make it yours alone with `chmod go-w {path}`")

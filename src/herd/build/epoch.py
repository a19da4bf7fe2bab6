"""SOURCE_DATE_EPOCH for a build (https://reproducible-builds.org/specs/source-date-epoch/): the one time stamp
that goes into images, so two builds of the same inputs are the same bytes.

Where it comes from, first that applies:
  1. `SOURCE_DATE_EPOCH` in the environment (a release pipeline pins it);
  2. the spec file's last git commit, when the file is tracked and unmodified;
  3. the spec file's modification time (an edited or untracked spec: the date it last changed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from herd.build.run import CommandError, run

MAX_EPOCH = 2**32 - 1


class EpochError(Exception):
    pass


def choose(environ_value: str | None, git_time: int | None, mtime: float) -> tuple[int, str]:
    """(epoch, where it came from). Pure."""
    if environ_value is not None:
        value = environ_value.strip()
        # ASCII digits (str.isdigit() takes "²"), and a time the image's 32-bit time fields (initramfs cpio,
        # gzip, the FAT of the EFI partition) can hold.
        if not re.fullmatch(r"[0-9]+", value) or int(value) > MAX_EPOCH:
            raise EpochError(f"SOURCE_DATE_EPOCH={environ_value!r}: must be a whole number of seconds since 1970, "
                             f"at most {MAX_EPOCH} (2106-02-07)")
        return int(value), "SOURCE_DATE_EPOCH"
    if git_time is not None:
        return git_time, "the spec's last git commit"
    return int(mtime), "the spec file's modification time"


def git_commit_time(path: Path) -> int | None:
    """The commit time of the last commit touching path, if git tracks it and it is unmodified."""
    where: list[str | Path] = ["git", "--no-pager", "-C", path.parent.resolve(), "--no-optional-locks"]
    try:
        if run([*where, "status", "--porcelain", "--", path.name]).strip():
            return None  # modified (or untracked): the commit does not describe this content
        out = run([*where, "log", "-1", "--format=%ct", "--", path.name]).strip()
    except CommandError:
        return None  # no git, or not a repository
    return int(out) if out.isdigit() else None


def source_date_epoch(spec: Path, environ: Mapping[str, str]) -> tuple[int, str]:
    value = environ.get("SOURCE_DATE_EPOCH")
    git_time = None if value is not None else git_commit_time(spec)
    return choose(value, git_time, spec.stat().st_mtime)

"""`/etc/herd/release`: which release an image is, as `KEY=value` lines (os-release style, no quoting).

The builder renders it from `overlay/common/etc/herd/release.j2`; herdd reads it once and reports the release in
its status, so `herdctl status` tells which image a node runs.

    RELEASE=2026.11.0
    CLUSTER=demo
    ROLE=web
    HERD_VERSION=0.1.0
    BUILD_DATE=2026-11-25T00:00:00Z
    SOURCE_DATE_EPOCH=1795564800
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from pathlib import Path

RELEASE_FILE = Path("/etc/herd/release")
Version = tuple[int, ...]
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def build_date(epoch: int) -> str:
    """The image's date, from SOURCE_DATE_EPOCH, in UTC (ISO 8601)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> dict[str, str]:
    """KEY=value lines; blank lines and `#` comments skipped. A file of one bare line (images before the
    KEY=value format) is that release."""
    fields: dict[str, str] = {}
    bare = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            fields[key.strip()] = value.strip()
        else:
            bare.append(line)
    if not fields and len(bare) == 1:
        fields["RELEASE"] = bare[0]
    return fields


def read(path: Path = RELEASE_FILE) -> dict[str, str] | None:
    """The file's fields, or None when there is no such file (a node run outside an image, in tests)."""
    try:
        return parse(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


@functools.cache
def installed() -> str | None:
    """This image's release, read once per process; None outside an image."""
    fields = read(RELEASE_FILE)
    return None if fields is None else fields.get("RELEASE") or None


def version_of(release: str) -> Version:
    """A release's version: the dot-separated numbers its name starts with, compared number by number, so
    2026.12.0 > 2026.11.10 > 2026.11.9, and 2026.11 < 2026.11.0 (a shorter run of the same numbers is older).
    What follows the numbers only names the release (7.0+rc1 and 7.0-hotfix are both version 7.0). ValueError
    for a release that does not start with a number: update bundles are ordered by version, and a node refuses
    one older than what it runs."""
    found = _VERSION.match(release)
    if found is None:
        raise ValueError(f"release {release!r} does not start with a version number (like 2026.11.0)")
    return tuple(int(n) for n in found.group().split("."))


def version_text(version: Version) -> str:
    return ".".join(str(n) for n in version) or "none"


def installed_version() -> Version:
    """The version of the release this node runs; () (older than any) outside an image or for a release of an
    image that named it otherwise."""
    name = installed()
    try:
        return version_of(name) if name else ()
    except ValueError:
        return ()

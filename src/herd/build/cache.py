"""Content-keyed cache of build products (root tree tarballs, the zipapp) under /var/cache/herd.

An entry is complete or absent: it is written to a temporary name and renamed, so a build killed half-way
leaves the cache as valid as it found it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Cache:
    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def lookup(self, kind: str, key: str, suffix: str) -> Path | None:
        path = self.path(kind, key, suffix)
        return path if self.enabled and path.is_file() else None

    @contextmanager
    def store(self, kind: str, key: str, suffix: str) -> Iterator[Path]:
        """Yield a temporary path to write; on success it becomes the entry (kept even with --no-cache, so
        the next cached build benefits)."""
        final = self.path(kind, key, suffix)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def prune(self, kind: str, keep: set[str]) -> None:
        """Drop entries of one kind not in keep (old bases after a recipe change), so the cache stays bounded."""
        folder = self.root / kind
        for entry in folder.glob("*") if folder.is_dir() else ():
            if entry.name.split(".")[0] not in keep and not entry.name.startswith("."):
                entry.unlink(missing_ok=True)

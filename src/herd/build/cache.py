"""Content-keyed cache of build products (root tree tarballs, the zipapp) under /var/cache/herd.

An entry is complete or absent: it is written to a temporary name and renamed, so a build killed half-way
leaves the cache as valid as it found it. Each new herdd or package list makes new entries (a base tarball is
some 300 MB), so after a build the entries of each kind it did not use go, beyond the most recently used few:
the cache stays bounded, and going back to the last releases stays fast."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Per kind: how many entries this build did not use stay (newest use first). Ten is two releases' root trees
# (a base and four roles each) or five herdd versions (a zipapp and its unpacked tree each).
KEEP_UNUSED = 10


class Cache:
    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        self.used: set[Path] = set()

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def lookup(self, kind: str, key: str, suffix: str) -> Path | None:
        path = self.path(kind, key, suffix)
        if not (self.enabled and path.is_file()):
            return None
        self._use(path)
        return path

    def newest(self, kind: str, prefix: str, suffix: str) -> Path | None:
        """The most recently used complete entry whose name starts with prefix (an older state of a tree)."""
        if not self.enabled:
            return None
        found = []
        with contextlib.suppress(OSError):
            for entry in (self.root / kind).iterdir():
                if entry.name.startswith(prefix) and entry.name.endswith(suffix) and entry.is_file():
                    found.append((entry.stat().st_mtime_ns, entry.name, entry))
        if not found:
            return None
        path = max(found)[2]
        self._use(path)
        return path

    def _use(self, path: Path) -> None:
        # The time of last use is the entry's mtime: what prune goes by.
        with contextlib.suppress(OSError):  # a read-only cache is still a cache
            os.utime(path)
        self.used.add(path)

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
            self._use(final)
        finally:
            tmp.unlink(missing_ok=True)

    def prune(self, keep_unused: int = KEEP_UNUSED) -> tuple[int, int]:
        """In each kind this build used, remove the entries it did not use beyond the `keep_unused` most
        recently used; (entries removed, bytes freed). Another build's half-written entries (dot names) stay,
        and one running at the same time has just used its entries, so they are among the newest."""
        removed = freed = 0
        for folder in sorted({path.parent for path in self.used}):
            unused = []
            try:
                entries = list(folder.iterdir())
            except OSError:  # the folder went since: nothing to prune there
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry in self.used:
                    continue
                with contextlib.suppress(OSError):
                    st = entry.lstat()
                    unused.append((st.st_mtime_ns, st.st_size, entry))
            unused.sort(reverse=True)
            for _, size, entry in unused[keep_unused:]:
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed += 1
                    freed += size
        return removed, freed

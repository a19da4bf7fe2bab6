"""The build cache: entries complete or absent, and bounded: after a build, what it did not use goes, beyond
the most recently used few of each kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herd.build.cache import Cache


def entry(cache: Cache, kind: str, key: str, age_days: float, size: int = 10) -> Path:
    with cache.store(kind, key, ".tar.zst") as tmp:
        tmp.write_bytes(b"x" * size)
    path = cache.path(kind, key, ".tar.zst")
    when = path.stat().st_mtime - age_days * 86400
    os.utime(path, (when, when))
    return path


def test_a_store_that_fails_leaves_no_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError), cache.store("rootfs", "base-1", ".tar.zst") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("debootstrap died")
    assert list((tmp_path / "rootfs").iterdir()) == []
    assert cache.lookup("rootfs", "base-1", ".tar.zst") is None


def test_prune_keeps_what_the_build_used_and_the_most_recently_used_others(tmp_path: Path) -> None:
    old = Cache(tmp_path)  # earlier builds made these
    ages = {f"web-{i}": float(i) for i in range(6)}
    paths = {key: entry(old, "rootfs", key, age, size=100) for key, age in ages.items()}
    other_kind = entry(old, "zipapp", "herdd-old", 30)
    half_written = tmp_path / "rootfs" / ".web-9.tar.zst.123.tmp"  # another build's, in progress
    half_written.write_bytes(b"x")

    build = Cache(tmp_path)
    assert build.lookup("rootfs", "web-5", ".tar.zst") == paths["web-5"]  # the oldest, now used again
    entry(build, "rootfs", "web-new", 0)
    removed, freed = build.prune(keep_unused=2)

    left = sorted(p.name for p in (tmp_path / "rootfs").iterdir())
    assert left == sorted([".web-9.tar.zst.123.tmp", "web-0.tar.zst", "web-1.tar.zst", "web-5.tar.zst",
                           "web-new.tar.zst"])
    assert (removed, freed) == (3, 300)
    assert other_kind.exists()  # a kind this build did not use is left as it is


def test_a_lookup_marks_the_entry_used_now(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    path = entry(cache, "zipapp", "a", 10)
    before = path.stat().st_mtime
    assert Cache(tmp_path).lookup("zipapp", "a", ".tar.zst") == path
    assert path.stat().st_mtime > before + 9 * 86400
    assert Cache(tmp_path, enabled=False).lookup("zipapp", "a", ".tar.zst") is None  # --no-cache


def test_newest_finds_the_last_used_entry_of_a_recipe_and_never_a_half_written_one(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    for state, when in (("old", 1000), ("older", 500)):
        path = cache.path("rootfs", f"base-recipe.{state}", ".tar.zst")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (when, when))
    (tmp_path / "rootfs/.base-recipe.newer.tar.zst.99.tmp").write_bytes(b"x")  # another build's, half-written
    (tmp_path / "rootfs/base-other.newest.tar.zst").write_bytes(b"x")  # another recipe
    found = cache.newest("rootfs", "base-recipe.", ".tar.zst")
    assert found == cache.path("rootfs", "base-recipe.old", ".tar.zst")
    assert found in cache.used  # used now: a prune keeps it
    assert Cache(tmp_path, enabled=False).newest("rootfs", "base-recipe.", ".tar.zst") is None  # --no-cache
    assert cache.newest("rootfs", "base-none.", ".tar.zst") is None

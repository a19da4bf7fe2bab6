"""herd's wheel (the start of every herdd.pyz) is built from a private copy of the sources: two builds from
one checkout at once both succeed, the checkout is left as it was, and a wheel has exactly the checkout's
modules, never a stale one from an earlier build. Real pip and setuptools, from the pip cache under
/var/cache/herd when they can; takes a few seconds."""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from herd.build.steps.zipapp import copy_sources, herd_wheel

PROJECT = Path(__file__).resolve().parents[2]
PIP_CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd")) / "pip"


def checkout(where: Path) -> Path:
    """A checkout of its own, to delete from and to watch for writes."""
    copy_sources(PROJECT, where)
    return where


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def modules(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {n for n in z.namelist() if n.endswith(".py")}


def test_two_wheels_from_one_checkout_at_once(tmp_path: Path) -> None:
    project = checkout(tmp_path / "checkout")
    before = listing(project)
    with ThreadPoolExecutor(2) as pool:
        wheels = list(pool.map(lambda n: herd_wheel(project, tmp_path / n / "wheels", PIP_CACHE), ("a", "b")))
    assert listing(project) == before, "the build wrote into the checkout"
    expected = {str(p.relative_to(project / "src")) for p in (project / "src").rglob("*.py")}
    assert modules(wheels[0]) == modules(wheels[1]) == expected
    assert not (tmp_path / "a" / "herd-source").exists(), "the private copy is removed"


def test_a_deleted_module_leaves_the_next_wheel(tmp_path: Path) -> None:
    project = checkout(tmp_path / "checkout")
    first = herd_wheel(project, tmp_path / "one" / "wheels", PIP_CACHE)
    assert "herd/ctlsocket.py" in modules(first)
    (project / "src/herd/ctlsocket.py").unlink()
    second = herd_wheel(project, tmp_path / "two" / "wheels", PIP_CACHE)
    assert "herd/ctlsocket.py" not in modules(second)

"""build.py itself, the stdlib-only front door that readies the venv: a user who cannot make it is told why and
what to do (exit 3), not shown a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.root
def test_a_venv_that_cannot_be_made_is_explained(tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # tmp_path is root's: nobody cannot make anything in it
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3",
                        str(PROJECT / "build.py"), "diff", "a.json", "b.json"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "HERD_CACHE": str(cache)}, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"could not set up the builder's Python environment in {cache}/venv" in r.stderr, r.stderr
    assert "point HERD_CACHE (or HERD_VENV) at a folder you can write" in r.stderr
    assert "Traceback" not in r.stderr
    assert not cache.exists()

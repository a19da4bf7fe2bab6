"""ruff and mypy --strict as tests, so CI holds the code to them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff() -> None:
    r = subprocess.run([BIN / "ruff", "check", "src", "tests", "build.py", "bench"], cwd=PROJECT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = subprocess.run([BIN / "mypy"], cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

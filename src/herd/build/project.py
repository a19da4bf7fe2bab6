"""Where the builder finds its recipes (image/), templates (overlay/) and examples (examples/): the checkout it
runs from, or, in the one-file builder (herd.pyz), the copy packed beside the herd package, which also holds a
prebuilt herdd.pyz (the one-file builder needs neither pip nor shiv on the build host)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import herd

CHECKOUT = Path(__file__).resolve().parents[3]
BUNDLE = "herd_project"  # a directory beside the herd package inside herd.pyz's site-packages
PREBUILT_HERDD = "herdd.pyz"


@dataclass(frozen=True)
class Project:
    root: Path
    checkout: bool  # a source checkout (src/, pyproject.toml), not the data packed into herd.pyz


def is_project(path: Path) -> bool:
    return (path / "image" / "base.toml").is_file() and (path / "overlay").is_dir()


def bundled() -> Path:
    return Path(herd.__file__).resolve().parent.parent / BUNDLE


def find() -> Project:
    if is_project(CHECKOUT) and (CHECKOUT / "src" / "herd").is_dir():
        return Project(CHECKOUT, checkout=True)
    return Project(bundled(), checkout=False)

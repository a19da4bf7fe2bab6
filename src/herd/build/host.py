"""Is this machine ready to build? Names every missing tool and the Debian package that provides it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from herd.build.project import find
from herd.build.recipes import host_requirements


def missing_packages(requirements: list[tuple[str, str]]) -> list[tuple[str, str]]:
    missing = []
    for command, package in requirements:
        found = Path(command).exists() if command.startswith("/") else shutil.which(
            command, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None
        if not found:
            missing.append((command, package))
    return missing


def problems(requirements_file: Path | None = None) -> list[str]:
    requirements_file = requirements_file or find().root / "image/host-packages.txt"
    out = []
    if os.geteuid() != 0:
        out.append("building needs root (debootstrap, chroot, device nodes): run it with sudo")
    missing = missing_packages(host_requirements(requirements_file))
    if missing:
        pkgs = " ".join(sorted({p for _, p in missing}))
        out.append(f"missing {', '.join(c for c, _ in missing)}: apt-get install {pkgs}")
    return out

"""Reading a tree's installed packages from /var/lib/dpkg/status (no chroot, no dpkg on the host needed)."""

from __future__ import annotations

from pathlib import Path


def installed_packages(status_text: str) -> dict[str, str]:
    packages: dict[str, str] = {}
    for stanza in status_text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            name = fields["Package"]
            arch = fields.get("Architecture", "")
            if arch not in ("", "all", "amd64"):
                name = f"{name}:{arch}"
            packages[name] = fields.get("Version", "")
    return dict(sorted(packages.items()))


def tree_packages(tree: Path) -> dict[str, str]:
    return installed_packages((tree / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace"))

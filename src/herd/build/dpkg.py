"""Reading a tree's installed packages from /var/lib/dpkg/status (no chroot, no dpkg on the host needed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath


def _installed(status_text: str) -> Iterator[dict[str, str]]:
    """The fields of each installed package's stanza (continuation lines left out)."""
    for stanza in status_text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            yield fields


def installed_packages(status_text: str) -> dict[str, str]:
    packages: dict[str, str] = {}
    for fields in _installed(status_text):
        name = fields["Package"]
        arch = fields.get("Architecture", "")
        if arch not in ("", "all", "amd64"):
            name = f"{name}:{arch}"
        packages[name] = fields.get("Version", "")
    return dict(sorted(packages.items()))


def tree_packages(tree: Path) -> dict[str, str]:
    return installed_packages((tree / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace"))


def stale_kernels(status_text: str, meta: str) -> tuple[str, list[str]]:
    """(the kernel package the metapackage `meta` depends on now, the other kernel packages still installed):
    after an upgrade brought a new kernel ABI, the old one is left behind and must go."""
    installed = {f["Package"]: f for f in _installed(status_text)}
    depends = installed.get(meta, {}).get("Depends", "")
    keep = [d.split()[0] for d in depends.split(",") if re.match(r"\s*linux-image-\d", d)]
    if len(keep) != 1:
        raise ValueError(f"{meta} is not installed or does not depend on one kernel image: {depends!r}")
    stale = sorted(name for name in installed if re.fullmatch(r"linux-image-\d.*", name) and name != keep[0])
    return keep[0], stale


def stale_compressed_modules(modules: Path, version: str, listed: list[str]) -> list[Path]:
    """The .ko.xz files under a kernel's modules folder whose .ko the kernel package (its dpkg file list,
    `listed`) no longer has: left by herd's compression of an older build of the same kernel."""
    known = {line for line in listed if line.endswith(".ko")}
    stale = []
    for path in sorted(modules.rglob("*.ko.xz")):
        rel = "/" + str(PurePosixPath("usr/lib/modules", version, path.relative_to(modules)))
        if rel.removesuffix(".xz") not in known and rel.replace("/usr/lib/", "/lib/", 1).removesuffix(".xz") \
                not in known:
            stale.append(path)
    return stale

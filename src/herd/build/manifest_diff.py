"""What changed between two releases, from their manifest.json files: per role, packages added, removed and
upgraded, the kernel, herdd, the rendered config files, the image size. Pure: dicts in, data and text out
(`herd.build.diff_cli` reads the files and prints).

Manifests from builds before a field existed (overlay digests, compressed images) still compare: what one side
lacks is reported as unknown, never as a change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from herd.spec import Role

MiB = 2**20


class ManifestError(Exception):
    pass


@dataclass(frozen=True)
class Change:
    old: Any
    new: Any


@dataclass
class RoleDiff:
    role: str
    status: str  # "changed", "unchanged", "added" (only in the new release), "removed" (only in the old)
    packages_added: dict[str, str] = field(default_factory=dict)
    packages_removed: dict[str, str] = field(default_factory=dict)
    packages_changed: dict[str, Change] = field(default_factory=dict)
    fixes: dict[str, str] = field(default_factory=dict)  # added or changed package -> the -updates/-security suite
    kernel: Change | None = None
    herdd: Change | None = None  # the zipapp's sha256
    config_added: list[str] = field(default_factory=list)
    config_removed: list[str] = field(default_factory=list)
    config_changed: list[str] = field(default_factory=list)
    config_unknown: bool = False  # a manifest without overlay digests: config changes cannot be told
    size: Change | None = None
    zst_size: Change | None = None
    sha256: Change | None = None


@dataclass
class ManifestDiff:
    cluster: Change
    release: Change
    herd_version: Change | None
    spec: Change | None  # spec_sha256
    build_date: Change | None
    roles: list[RoleDiff]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)  # each Change becomes {"old": ..., "new": ...}


def check(data: object, name: str) -> dict[str, Any]:
    """The manifest as a dict, or ManifestError saying why it is not one."""
    if not isinstance(data, dict):
        raise ManifestError(f"{name}: not a herd manifest (a JSON object with release and images expected)")
    missing = [k for k in ("cluster", "release", "images") if k not in data]
    if missing:
        raise ManifestError(f"{name}: not a herd manifest: no {', '.join(missing)}")
    images = data["images"]
    if not isinstance(images, dict) or not all(isinstance(v, dict) for v in images.values()):
        raise ManifestError(f"{name}: not a herd manifest: images must map each role to an object")
    _types(data, TOP_FIELDS, name, "")
    for role, entry in images.items():
        if not all(isinstance(entry.get(table, {}), dict) for table in ("packages", "overlay", "fixes")):
            raise ManifestError(f"{name}: images.{role}: packages, overlay and fixes must be objects")
        _types(entry, IMAGE_FIELDS, name, f"images.{role}.")
        for table in ("packages", "overlay", "fixes"):
            for key, value in entry.get(table, {}).items():
                if not isinstance(value, str):
                    raise ManifestError(f"{name}: images.{role}.{table}.{key}: must be a string, got {value!r}")
    return data


# What diff() reads, and the JSON type it must be: an edited or foreign file is an error, not a traceback.
TOP_FIELDS: dict[str, type] = {"cluster": str, "release": str, "herd_version": str, "spec_sha256": str,
                               "build_date": str}
IMAGE_FIELDS: dict[str, type] = {"size": int, "zst_size": int, "sha256": str, "kernel": str, "herdd_sha256": str,
                                 "overlay_sha256": str}


def _types(data: dict[str, Any], fields: dict[str, type], name: str, where: str) -> None:
    for key, kind in fields.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            want = "a string" if kind is str else "a whole number"
            raise ManifestError(f"{name}: {where}{key}: must be {want}, got {value!r}")


def _change(old: Any, new: Any) -> Change | None:
    """A change when both sides know the value and it differs; None when equal or either side lacks it."""
    if old is None or new is None or old == new:
        return None
    return Change(old, new)


def diff_role(role: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> RoleDiff:
    if old is None or new is None:
        entry = new if old is None else old
        assert entry is not None
        return RoleDiff(role, "added" if old is None else "removed", size=Change(
            None if old is None else entry.get("size"), None if new is None else entry.get("size")))
    d = RoleDiff(role, "unchanged")
    old_pkgs: dict[str, str] = old.get("packages", {})
    new_pkgs: dict[str, str] = new.get("packages", {})
    d.packages_added = {p: new_pkgs[p] for p in sorted(new_pkgs.keys() - old_pkgs.keys())}
    d.packages_removed = {p: old_pkgs[p] for p in sorted(old_pkgs.keys() - new_pkgs.keys())}
    d.packages_changed = {p: Change(old_pkgs[p], new_pkgs[p]) for p in sorted(old_pkgs.keys() & new_pkgs.keys())
                          if old_pkgs[p] != new_pkgs[p]}
    fixes = new.get("fixes", {})
    d.fixes = {p: fixes[p] for p in [*d.packages_added, *d.packages_changed] if isinstance(fixes.get(p), str)}
    d.kernel = _change(old.get("kernel") or None, new.get("kernel") or None)
    d.herdd = _change(old.get("herdd_sha256") or None, new.get("herdd_sha256") or None)
    old_cfg, new_cfg = old.get("overlay"), new.get("overlay")
    if old_cfg is None or new_cfg is None:
        d.config_unknown = old.get("overlay_sha256") is None or new.get("overlay_sha256") is None
        if not d.config_unknown and old["overlay_sha256"] != new["overlay_sha256"]:
            d.config_unknown = True  # it changed, but which files is not recorded
    else:
        d.config_added = sorted(new_cfg.keys() - old_cfg.keys())
        d.config_removed = sorted(old_cfg.keys() - new_cfg.keys())
        d.config_changed = sorted(p for p in old_cfg.keys() & new_cfg.keys() if old_cfg[p] != new_cfg[p])
    d.size = _change(old.get("size"), new.get("size"))
    d.zst_size = _change(old.get("zst_size"), new.get("zst_size"))
    d.sha256 = _change(old.get("sha256"), new.get("sha256"))
    if any((d.packages_added, d.packages_removed, d.packages_changed, d.kernel, d.herdd, d.config_added,
            d.config_removed, d.config_changed, d.config_unknown, d.size, d.zst_size, d.sha256)):
        d.status = "changed"
    return d


def diff(old: dict[str, Any], new: dict[str, Any]) -> ManifestDiff:
    order = [r.value for r in Role]
    roles = sorted(old["images"].keys() | new["images"].keys(),
                   key=lambda r: (order.index(r) if r in order else len(order), r))
    return ManifestDiff(
        cluster=Change(old["cluster"], new["cluster"]),
        release=Change(old["release"], new["release"]),
        herd_version=_change(old.get("herd_version"), new.get("herd_version")),
        spec=_change(old.get("spec_sha256"), new.get("spec_sha256")),
        build_date=_change(old.get("build_date"), new.get("build_date")),
        roles=[diff_role(r, old["images"].get(r), new["images"].get(r)) for r in roles],
    )


def _mib(size: int) -> str:
    return f"{size / MiB:.0f} MiB"


def _size_line(what: str, c: Change) -> str:
    delta = c.new - c.old
    return f"  {what} {_mib(c.old)} -> {_mib(c.new)} ({'+' if delta >= 0 else '-'}{abs(delta) / MiB:.1f} MiB)"


def _from(d: RoleDiff, package: str) -> str:
    suite = d.fixes.get(package, "")
    return f"  [{'security fix' if suite.endswith('-security') else suite}]" if suite else ""


def role_text(d: RoleDiff) -> list[str]:
    if d.status == "added":
        return [f"{d.role}: new in this release ({_mib(d.size.new) if d.size and d.size.new else '?'})"]
    if d.status == "removed":
        return [f"{d.role}: not in this release any more"]
    if d.status == "unchanged":
        return [f"{d.role}: unchanged"]
    lines = [f"{d.role}:"]
    if d.kernel:
        lines.append(f"  kernel {d.kernel.old} -> {d.kernel.new}")
    if d.herdd:
        lines.append(f"  herdd zipapp changed ({d.herdd.old[:12]} -> {d.herdd.new[:12]})")
    counts = [f"{len(x)} {w}" for x, w in ((d.packages_added, "added"), (d.packages_removed, "removed"),
                                             (d.packages_changed, "changed")) if x]
    if counts:
        lines.append(f"  packages: {', '.join(counts)}")
        lines += [f"    + {p} {v}{_from(d, p)}" for p, v in d.packages_added.items()]
        lines += [f"    - {p} {v}" for p, v in d.packages_removed.items()]
        lines += [f"    ~ {p} {c.old} -> {c.new}{_from(d, p)}" for p, c in d.packages_changed.items()]
    counts = [f"{len(x)} {w}" for x, w in ((d.config_added, "added"), (d.config_removed, "removed"),
                                             (d.config_changed, "changed")) if x]
    if counts:
        lines.append(f"  config files: {', '.join(counts)}")
        lines += [f"    + {p}" for p in d.config_added]
        lines += [f"    - {p}" for p in d.config_removed]
        lines += [f"    ~ {p}" for p in d.config_changed]
    if d.config_unknown:
        lines.append("  config files: cannot tell (a manifest from before per-file config digests)")
    if d.size:
        lines.append(_size_line("image size", d.size))
    if d.zst_size:
        lines.append(_size_line("compressed", d.zst_size))
    if len(lines) == 1 and d.sha256:
        lines.append("  image bytes differ; packages, kernel, herdd and config files are the same")
    return lines


def text(d: ManifestDiff) -> str:
    cluster = d.cluster.new if d.cluster.old == d.cluster.new else f"{d.cluster.old} -> {d.cluster.new}"
    lines = [f"cluster {cluster}: release {d.release.old} -> {d.release.new}"]
    if d.build_date:
        lines.append(f"built {d.build_date.old} -> {d.build_date.new}")
    lines.append(f"herd {d.herd_version.old} -> {d.herd_version.new}" if d.herd_version else "herd: same version")
    lines.append(f"spec changed (sha256 {d.spec.old[:12]} -> {d.spec.new[:12]})" if d.spec else "spec: unchanged")
    for role in d.roles:
        lines += role_text(role)
    return "\n".join(lines) + "\n"

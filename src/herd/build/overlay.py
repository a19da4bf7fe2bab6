"""Overlay rendering: `overlay/common/` then `overlay/<role>/`, copied into a root tree with `*.j2` files
rendered by jinja2 (StrictUndefined: a missing variable is an error, never an empty string).

`render()` is pure (files in, bytes out) so every role's templates can be checked before anything is built;
`install()` writes the result through herd.build.intree, refusing any path that would leave the tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from herd import __version__
from herd.build import firewall
from herd.build.checkout import Source, read, walk
from herd.build.intree import TreeError, make_dirs, real_dir, safe_path, write_file
from herd.build.plan import ROOT_LABEL, BuildPlan, RolePlan
from herd.bundle import signer_line
from herd.release import build_date
from herd.secrets import derive
from herd.spec import LEASE_INTERVALS, Membership, Role, drbd_timing

APACHE_KEEPALIVE = 5  # s, Apache's own KeepAliveTimeout (Debian's apache2.conf)


def keepalive_timeout(membership: Membership) -> int:
    """Apache's KeepAliveTimeout on web nodes, in seconds. A client's request sent as the VIP's director dies
    reaches Apache only after the takeover (deadtime, then the lease's grace of LEASE_INTERVALS intervals) and
    TCP's retransmission backoff, which doubles at each try and so can double that wait. Apache must keep the
    connection idle that long, plus the client's pause before the request, or it closes a connection the
    failover would have kept."""
    takeover_ms = membership.deadtime_ms + LEASE_INTERVALS * membership.interval_ms
    return max(APACHE_KEEPALIVE, -(-2 * takeover_ms // 1000) + 2)


class OverlayError(TreeError):
    """A template that does not render, a file that would leave the tree, a unit that cannot be enabled."""


@dataclass(frozen=True)
class OverlayFile:
    path: PurePosixPath  # inside the root tree, relative
    data: bytes
    mode: int


def template_context(plan: BuildPlan, role_plan: RolePlan, kernel_version: str,
                     key: bytes = b"", release_public: str = "") -> dict[str, Any]:
    """key: the cluster key, for the secrets derived from it that go into configs (DRBD's peer
    authentication); release_public: the release key's public half (`ssh-ed25519 BASE64`), which every image
    trusts to sign its update bundles. Both empty when only checking that the templates render."""
    spec = plan.spec
    return {
        "spec": spec,
        "cluster": spec.name,
        "release": plan.release,
        "role": role_plan.role.value,
        "nodes": spec.nodes,
        "role_nodes": spec.nodes_of(role_plan.role),
        "db_nodes": spec.nodes_of(Role.DB),
        "network": spec.network,
        "services": spec.services,
        "ssh_keys": spec.ssh_keys,
        "ids": role_plan.ids,
        "root_label": ROOT_LABEL,
        "kernel_version": kernel_version,
        "kernel_cmdline": plan.kernel_cmdline,
        "herd_version": __version__,
        "source_date_epoch": plan.source_date_epoch,
        "build_date": build_date(plan.source_date_epoch),
        "drbd_secret": derive(key, "drbd-shared-secret", 32) if key else "checking-templates-only",
        "drbd": drbd_timing(spec.membership.deadtime_ms),
        "keepalive_timeout": keepalive_timeout(spec.membership),
        "firewall": firewall.allowed(spec, role_plan.role),
        "release_signer": signer_line(release_public) if release_public else "# (checking templates only)",
    }


def _not_copied(name: str) -> bool:
    return name == "__pycache__"


def _sources(overlay_dir: Path, role: str) -> list[tuple[Source, PurePosixPath]]:
    """(source file, relative path) pairs; a role file overrides a common one at the same path. A symlink must
    stay inside the project (overlay_dir's parent), or the walk refuses it (herd.build.checkout)."""
    chosen: dict[PurePosixPath, Source] = {}
    for layer in ("common", role):
        base = overlay_dir / layer
        if not base.is_dir():
            continue
        for src in walk(overlay_dir.parent, base, _not_copied):
            rel = src.rel
            if rel.suffix == ".j2":
                rel = rel.with_suffix("")
            chosen[rel] = src
    return sorted(((src, rel) for rel, src in chosen.items()), key=lambda p: str(p[1]))


def _loader(overlay_dir: Path) -> jinja2.BaseLoader:
    """Templates read as every overlay file is, never through a symlink out of the project."""
    def load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
        path = overlay_dir / name
        if not os.path.lexists(path):
            return None
        return read(overlay_dir.parent, path).decode(), str(path), lambda: True
    return jinja2.FunctionLoader(load)


# Modes that are not the checkout's 0644/0755 (herd.build.checkout.image_mode), whatever it gave the files: root's
# alone, a file rendered with a secret derived from the cluster key, and what sshd's StrictModes checks.
MODES = {PurePosixPath("etc/drbd.d/herd.res"): 0o600, PurePosixPath("root/.ssh/authorized_keys"): 0o600}
DIR_MODES = {PurePosixPath("root/.ssh"): 0o700}  # every other folder the overlay makes is 0755
SYSTEMD = PurePosixPath("etc/systemd/system")


def render(overlay_dir: Path, role: str, context: dict[str, Any]) -> list[OverlayFile]:
    env = jinja2.Environment(
        loader=_loader(overlay_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # config files, not HTML
    )
    files = []
    for src, rel in _sources(overlay_dir, role):
        if ".." in rel.parts:
            raise OverlayError(f"{src.path}: path leaves the root tree")
        mode = MODES.get(rel, src.mode)
        if src.path.suffix == ".j2":
            name = src.path.relative_to(overlay_dir).as_posix()
            try:
                data = env.get_template(name).render(context).encode()
            except jinja2.TemplateError as exc:
                line = getattr(exc, "lineno", None)
                where = f"{src.path}:{line}" if line else str(src.path)
                raise OverlayError(f"{where}: template error: {exc}") from None
        else:
            data = read(overlay_dir.parent, src.path)
        files.append(OverlayFile(rel, data, mode))
    return files


def install(root: Path, files: list[OverlayFile]) -> None:
    for f in files:
        write_file(root, f.path, f.data, f.mode)
    for folder, mode in DIR_MODES.items():
        if any(folder in f.path.parents for f in files):
            os.chmod(make_dirs(root, folder), mode)


def enable_unit(root: Path, unit: str) -> None:
    """What `systemctl enable` does for a unit with `WantedBy=`: no systemd needed on the build host."""
    path = root / "etc/systemd/system" / unit
    if not path.is_file():
        path = root / "usr/lib/systemd/system" / unit
    if not path.is_file():
        raise OverlayError(f"cannot enable {unit}: no such unit in the image")
    wanted = [t for line in path.read_text().splitlines() if line.startswith("WantedBy=")
              for t in line.split("=", 1)[1].split()]
    if not wanted:
        raise OverlayError(f"cannot enable {unit}: it has no WantedBy= in [Install]")
    for target in wanted:
        rel = PurePosixPath(f"etc/systemd/system/{target}.wants/{unit}")
        make_dirs(root, rel.parent)
        link = safe_path(root, rel)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/" + str(path.relative_to(root)))


def mask_unit(root: Path, unit: str) -> None:
    """What `systemctl mask` does: a link to /dev/null in /etc/systemd/system, which nothing can start."""
    rel = PurePosixPath(f"etc/systemd/system/{unit}")
    make_dirs(root, rel.parent)
    link = safe_path(root, rel)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to("/dev/null")


def disable_unit(root: Path, unit: str) -> None:
    """What `systemctl disable` does: the unit stays installed (herdd starts it when the time comes) but no
    target pulls it in at boot."""
    systemd = real_dir(root, SYSTEMD)
    # Not glob(): the links point into the image (/lib/...), so from the build host they dangle, and glob
    # skips dangling links.
    for wants in systemd.glob("*.wants") if systemd.is_dir() else ():
        link = safe_path(root, SYSTEMD / wants.name / unit)  # a .wants that is a link out of the tree: refused
        if link.is_symlink():
            link.unlink()

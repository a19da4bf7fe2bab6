"""The bundle step on small fake slots, then the release step: beside each image its update bundle and signature,
0600, in SHA256SUMS and manifest.json; the bundle passes a node's checks with the image's release-signers file,
carries the config tree but never the cluster key, and two builds give the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path, PurePosixPath

import pytest

from herd import bundle
from herd.build.context import BuildContext
from herd.build.overlay import OverlayFile
from herd.build.release_key import release_key
from herd.build.steps import BuildError
from herd.build.steps.artifacts import Artifacts
from herd.build.steps.bundle import Bundle, bundle_path, keep_parts, parts_dir, sig_path, tmp_bundle, tmp_sig
from herd.build.steps.tree import config_tree
from herd.spec import Role

from .test_artifacts import context

KERNEL = "6.1.0-28-amd64"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("site") / "cluster.release.key"
    return path, release_key(path, "demo")


def image_files(public: str) -> list[OverlayFile]:
    """What the tree step installs from the overlay and into /etc/herd (a few of each kind)."""
    signers = f"# the release key\n{bundle.signer_line(public)}\n".encode()
    return [OverlayFile(PurePosixPath(path), data, mode) for path, data, mode in (
        ("etc/hosts", b"127.0.0.1 localhost\n", 0o644),
        ("etc/drbd.d/herd.res", b'shared-secret "derived";\n', 0o600),
        ("boot/grub/grub.cfg", b"linux /boot/vmlinuz\n", 0o644),
        ("root/.ssh/authorized_keys", b"ssh-ed25519 AAAA me\n", 0o600),
        ("etc/herd/cluster.toml", b"[cluster]\n", 0o644),
        ("etc/herd/cluster.key", b"k" * 64, 0o600),
        ("etc/herd/release-signers", signers, 0o644),
        ("usr/lib/herd/herdd.pyz", b"PK zipapp", 0o755),
        ("usr/lib/herd/growroot", b"#!/bin/sh\n", 0o755),
    )]


def fake_tree(tree: Path, seed: int) -> None:
    (tree / "boot").mkdir(parents=True)
    (tree / f"boot/vmlinuz-{KERNEL}").write_bytes(b"\x7fkernel" * 700 + bytes([seed]))
    (tree / f"boot/initrd.img-{KERNEL}").write_bytes(b"070701" * 900 + bytes([seed]))


def prepared(tmp_path: Path, key: tuple[Path, str], roles: tuple[Role, ...] = (Role.WEB, Role.DB)) -> BuildContext:
    """A context after the tree and disk steps of each role."""
    ctx = context(tmp_path, list(roles))
    ctx.release_key, ctx.release_public = key
    for seed, role in enumerate(roles):
        work = ctx.work / role.value
        fake_tree(work / "root", seed)
        (work / "usr.squashfs").write_bytes(bytes(range(256)) * 400 + bytes([seed]))
        ctx.kernel_versions[role] = KERNEL
        ctx.images[role].config = config_tree(image_files(key[1]))
        keep_parts(ctx, role, work / "usr.squashfs", work / "root", KERNEL)
    return ctx


def bundled(tmp_path: Path, key: tuple[Path, str], roles: tuple[Role, ...] = (Role.WEB, Role.DB)) -> BuildContext:
    """A context after the bundle step of each role too."""
    ctx = prepared(tmp_path, key, roles)
    for role in roles:
        Bundle(role).run(ctx)
    return ctx


def test_each_image_gets_a_signed_bundle_in_the_release(tmp_path: Path, key: tuple[Path, str]) -> None:
    ctx = bundled(tmp_path, key)
    Artifacts().run(ctx)
    out = ctx.plan.out_dir
    names = [r.final_path.name for r in ctx.images.values()]
    bundles = [n.removesuffix(".img") + ".bundle" for n in names]
    assert sorted(os.listdir(out)) == sorted([*names, *(n + ".bmap" for n in names), *(n + ".zst" for n in names),
                                              *bundles, *(b + ".sig" for b in bundles), "SHA256SUMS",
                                              "manifest.json"])
    assert bundles == ["demo-web-2026.11.0.bundle", "demo-db-2026.11.0.bundle"]
    for name in bundles:
        for path in (out / name, out / (name + ".sig")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path  # DRBD's secret is in the config tree
    sums = dict(reversed(line.split("  ")) for line in (out / "SHA256SUMS").read_text().splitlines())
    for name in bundles:
        for path in (out / name, out / (name + ".sig")):
            assert sums[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    data = json.loads((out / "manifest.json").read_text())
    assert data["version"] == [2026, 11, 0] and data["release_key"] == key[1]
    for role, result in ctx.images.items():
        entry = data["images"][role.value]
        path = bundle_path(result.final_path)
        assert (entry["bundle"], entry["bundle_sig"]) == (path.name, sig_path(path).name)
        assert entry["bundle_size"] == path.stat().st_size
        assert entry["bundle_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["bundle_sig_sha256"] == hashlib.sha256(sig_path(path).read_bytes()).hexdigest()
    assert not parts_dir(ctx, Role.WEB).exists() and not [n for n in os.listdir(out) if n.startswith(".")]


def test_a_bundle_passes_a_nodes_checks_and_holds_the_slot(tmp_path: Path, key: tuple[Path, str]) -> None:
    """Checked with the release-signers file the image carries; the parts are the disk step's, the config tree
    the overlay's and /etc/herd's files but the cluster key and /usr."""
    ctx = bundled(tmp_path, key)
    Artifacts().run(ctx)
    result = ctx.images[Role.WEB]
    path = bundle_path(result.final_path)
    signers = tmp_path / "release-signers"
    signers.write_bytes(next(f.data for f in image_files(key[1]) if str(f.path) == "etc/herd/release-signers"))
    manifest = bundle.verify(path, sig_path(path), signers, "demo", "web", (2026, 11, 0))
    assert (manifest.cluster, manifest.role, manifest.release, manifest.version, manifest.kernel) == \
        ("demo", "web", "2026.11.0", (2026, 11, 0), KERNEL)
    assert manifest.source_date_epoch == ctx.plan.source_date_epoch
    config = {p.name: p for p in manifest.config()}
    assert sorted(config) == ["config/boot/grub/grub.cfg", "config/etc/drbd.d/herd.res", "config/etc/herd/cluster.toml",
                              "config/etc/herd/release-signers", "config/etc/hosts",
                              "config/root/.ssh/authorized_keys"]
    assert config["config/etc/drbd.d/herd.res"].mode == 0o600
    squashfs = manifest.parts[0]
    assert squashfs.sha256 == hashlib.sha256(bytes(range(256)) * 400 + b"\0").hexdigest()
    with pytest.raises(bundle.WrongTarget):
        bundle.verify(path, sig_path(path), signers, "demo", "db", (2026, 11, 0))
    assert b"k" * 64 not in path.read_bytes()  # the cluster key


def test_the_config_tree_leaves_out_the_cluster_key_and_usr() -> None:
    files = image_files("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2A107MAyW26catwE6ZrDa7oHyoueLSPZTgqpmoYInF")
    kept = [str(f.path) for f in config_tree(files)]
    assert "etc/herd/cluster.key" not in kept and not [p for p in kept if p.startswith("usr/")]
    assert kept == sorted(kept) and "etc/herd/release-signers" in kept and "root/.ssh/authorized_keys" in kept


def test_two_builds_give_the_same_bundles(tmp_path: Path, key: tuple[Path, str]) -> None:
    a, b = bundled(tmp_path / "a", key), bundled(tmp_path / "b", key)
    for role in (Role.WEB, Role.DB):
        first, second = a.images[role], b.images[role]
        assert tmp_bundle(first).read_bytes() == tmp_bundle(second).read_bytes()
        assert tmp_sig(first).read_bytes() == tmp_sig(second).read_bytes()
        assert first.bundle_sha256 == second.bundle_sha256 != ""
    assert a.images[Role.WEB].bundle_sha256 != a.images[Role.DB].bundle_sha256


def test_a_bundle_the_nodes_would_refuse_fails_the_build(tmp_path: Path, key: tuple[Path, str],
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """Signed with another key than the one whose public half the images carry: the build's own check finds
    it, and undo leaves nothing."""
    other = tmp_path_factory.mktemp("other") / "other.release.key"
    release_key(other, "demo")
    ctx = prepared(tmp_path, (other, key[1]), roles=(Role.WEB,))
    with pytest.raises(BuildError, match=r"the web update bundle does not pass a node's checks: .*refused"):
        Bundle(Role.WEB).run(ctx)
    Bundle(Role.WEB).undo(ctx)
    assert not tmp_bundle(ctx.images[Role.WEB]).exists() and not tmp_sig(ctx.images[Role.WEB]).exists()
    assert not parts_dir(ctx, Role.WEB).exists()


def test_undo_removes_the_unrenamed_bundle_and_parts(tmp_path: Path, key: tuple[Path, str]) -> None:
    ctx = bundled(tmp_path, key, roles=(Role.WEB,))
    result = ctx.images[Role.WEB]
    assert tmp_bundle(result).is_file() and tmp_sig(result).is_file()
    parts_dir(ctx, Role.WEB).mkdir()
    Bundle(Role.WEB).undo(ctx)
    assert not tmp_bundle(result).exists() and not tmp_sig(result).exists()
    assert not parts_dir(ctx, Role.WEB).exists()


def test_keep_parts_never_follows_a_link_out_of_the_tree(tmp_path: Path, key: tuple[Path, str]) -> None:
    ctx = context(tmp_path, [Role.WEB])
    ctx.work.mkdir()
    tree = tmp_path / "root"
    fake_tree(tree, 0)
    (tmp_path / "host-file").write_bytes(b"the host's own")
    (tree / f"boot/vmlinuz-{KERNEL}").unlink()
    (tree / f"boot/vmlinuz-{KERNEL}").symlink_to(tmp_path / "host-file")
    (tmp_path / "usr.squashfs").write_bytes(b"hsqs")
    with pytest.raises(BuildError, match=f"/boot/vmlinuz-{KERNEL} is not a file in the web tree"):
        keep_parts(ctx, Role.WEB, tmp_path / "usr.squashfs", tree, KERNEL)
    assert (tmp_path / "host-file").read_bytes() == b"the host's own"

"""The release step on small sparse images: each image gets its bmap and zstd copy beside it, SHA256SUMS lists
images and copies, the manifest names both, and no temporary file is left."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from herd.build import bmap
from herd.build.cache import Cache
from herd.build.context import BuildContext, ImageResult
from herd.build.overlay import OverlayFile
from herd.build.progress import Reporter
from herd.build.run import CommandError
from herd.build.steps.artifacts import Artifacts, overlay_sha256
from herd.build.steps.tree import overlay_digests
from herd.release import build_date
from herd.spec import Role

from .sparse import make_image
from .test_plan import plan_for


def context(tmp_path: Path, roles: list[Role]) -> BuildContext:
    plan = plan_for(roles=roles, out=tmp_path / "out")
    ctx = BuildContext(plan=plan, project=tmp_path, cache=Cache(tmp_path / "cache"), work=tmp_path / "work",
                       key_file=tmp_path / "key", reporter=Reporter(quiet=True))
    plan.out_dir.mkdir(parents=True)
    for seed, rp in enumerate(plan.roles):
        final = plan.out_dir / rp.image_name
        result = ImageResult(rp.role, final.with_name(f".{final.name}.{os.getpid()}.tmp"), final)
        make_image(result.tmp_path, seed=seed)
        result.size = result.tmp_path.stat().st_size
        result.sha256 = hashlib.sha256(result.tmp_path.read_bytes()).hexdigest()
        ctx.images[rp.role] = result
    return ctx


def test_release_has_a_bmap_per_image(tmp_path: Path) -> None:
    ctx = context(tmp_path, [Role.WEB, Role.DB])
    Artifacts().run(ctx)
    out = ctx.plan.out_dir
    names = [r.final_path.name for r in ctx.images.values()]
    assert sorted(os.listdir(out)) == sorted([*names, *(n + ".bmap" for n in names), *(n + ".zst" for n in names),
                                              "SHA256SUMS", "manifest.json"])
    sums = (out / "SHA256SUMS").read_text()
    assert ".bmap" not in sums and all(n in sums for n in names)
    for line in sums.splitlines():  # what sha256sum -c checks
        digest, name = line.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    manifest = json.loads((out / "manifest.json").read_text())
    for role, result in ctx.images.items():
        entry = manifest["images"][role.value]
        assert entry["bmap"] == result.final_path.name + ".bmap"
        assert bmap.load(out / entry["bmap"]) == bmap.create(result.final_path)


def test_the_release_is_its_owners_alone(tmp_path: Path) -> None:
    """Every image holds the cluster key: the folder 0700, images, zstd copies and block maps 0600, whatever the
    umask and whatever mode the images were made with."""
    ctx = context(tmp_path, [Role.WEB, Role.DB])
    out = ctx.plan.out_dir
    os.chmod(out, 0o755)
    for result in ctx.images.values():
        os.chmod(result.tmp_path, 0o644)
    old = os.umask(0o002)
    try:
        Artifacts().run(ctx)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for result in ctx.images.values():
        for path in (result.final_path, out / (result.final_path.name + ".bmap"),
                     out / (result.final_path.name + ".zst")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_undo_removes_unrenamed_bmaps_and_zst(tmp_path: Path) -> None:
    ctx = context(tmp_path, [Role.WEB])
    result = ctx.images[Role.WEB]
    strays = [result.tmp_path.with_name(result.tmp_path.name + suffix) for suffix in (".bmap", ".zst")]
    for stray in strays:
        stray.write_text("half")
    Artifacts().undo(ctx)
    assert not any(stray.exists() for stray in strays)


def test_zst_decompresses_to_the_image(tmp_path: Path) -> None:
    ctx = context(tmp_path, [Role.WEB, Role.DB])
    Artifacts().run(ctx)
    out = ctx.plan.out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    for role, result in ctx.images.items():
        entry = manifest["images"][role.value]
        zst = out / entry["zst"]
        assert entry["zst"] == result.final_path.name + ".zst"
        assert entry["zst_size"] == zst.stat().st_size < result.size
        assert entry["zst_sha256"] == hashlib.sha256(zst.read_bytes()).hexdigest()
        copy = tmp_path / f"{role.value}.img"
        subprocess.run(["zstd", "-d", "-q", "-o", str(copy), str(zst)], check=True)
        assert copy.read_bytes() == result.final_path.read_bytes()


def test_a_failed_compression_leaves_no_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(tmp_path, [Role.WEB])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "zstd").write_text("#!/bin/sh\necho 'zstd: disk full' >&2\necho partial > \"$5\"\nexit 1\n")
    (bin_dir / "zstd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(CommandError, match="disk full"):
        Artifacts().run(ctx)
    Artifacts().undo(ctx)
    assert os.listdir(ctx.plan.out_dir) == [ctx.images[Role.WEB].tmp_path.name]  # the disk step's undo removes it


def test_manifest_records_config_digests_and_herdd(tmp_path: Path) -> None:
    ctx = context(tmp_path, [Role.WEB])
    files = [OverlayFile(PurePosixPath("etc/hosts"), b"127.0.0.1 localhost\n", 0o644),
             OverlayFile(PurePosixPath("etc/herd/cluster.key"), b"secret" * 8, 0o600),
             OverlayFile(PurePosixPath("usr/lib/herd/herdd.pyz"), b"PK", 0o755),
             OverlayFile(PurePosixPath("etc/herd/release"), b"RELEASE=1\n", 0o644)]
    ctx.images[Role.WEB].overlay = overlay_digests(files)
    ctx.zipapp = tmp_path / "herdd.pyz"
    ctx.zipapp.write_bytes(b"zipapp")
    Artifacts().run(ctx)
    data = json.loads((ctx.plan.out_dir / "manifest.json").read_text())
    entry = data["images"]["web"]
    assert entry["overlay"] == {"/etc/herd/release": hashlib.sha256(b"RELEASE=1\n").hexdigest(),
                                "/etc/hosts": hashlib.sha256(b"127.0.0.1 localhost\n").hexdigest()}
    assert entry["overlay_sha256"] == overlay_sha256(entry["overlay"])
    assert entry["herdd_sha256"] == hashlib.sha256(b"zipapp").hexdigest()
    assert data["source_date_epoch"] == ctx.plan.source_date_epoch
    assert data["build_date"] == build_date(ctx.plan.source_date_epoch)


def test_overlay_digest_depends_on_names_and_contents() -> None:
    base = {"/etc/a": "1" * 64, "/etc/b": "2" * 64}
    assert overlay_sha256(base) == overlay_sha256(dict(reversed(base.items())))
    assert overlay_sha256(base) != overlay_sha256({"/etc/a": "1" * 64, "/etc/c": "2" * 64})
    assert overlay_sha256(base) != overlay_sha256({"/etc/a": "1" * 64, "/etc/b": "3" * 64})


@pytest.mark.parametrize("to", ["process", "other-thread"])
def test_a_signal_while_the_release_is_renamed_in_waits_until_it_is_whole(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         to: str) -> None:
    """SIGTERM (as Ctrl-C) arrives at the first rename: it takes effect only once images, bmaps, zstd copies,
    SHA256SUMS and the manifest are all in place. Also when the kernel hands it to another thread (a build has
    rich's refresh thread), which blocking it in the main thread alone did not cover (a full run caught it)."""
    ctx = context(tmp_path, [Role.WEB, Role.DB])
    real_replace = os.replace
    sent: list[bool] = []
    other_done = threading.Event()
    other = threading.Thread(target=other_done.wait, daemon=True)
    other.start()

    def replace_and_signal(src: Any, dst: Any) -> None:
        if not sent:
            sent.append(True)
            if to == "process":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                assert other.ident is not None
                signal.pthread_kill(other.ident, signal.SIGTERM)
                time.sleep(0.05)  # the main thread runs Python's handler at its next check
        real_replace(src, dst)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace_and_signal)
    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            Artifacts().run(ctx)
    finally:
        signal.signal(signal.SIGTERM, old)
        other_done.set()
    out = ctx.plan.out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["images"]) == ["db", "web"]
    for result in ctx.images.values():
        name = result.final_path.name
        for path in (result.final_path, out / f"{name}.bmap", out / f"{name}.zst"):
            assert path.is_file(), path
    assert not [n for n in os.listdir(out) if n.startswith(".")], "no temporary file left"


def test_a_previous_manifest_that_is_not_herds_is_replaced(tmp_path: Path) -> None:
    ctx = context(tmp_path, [Role.WEB])
    (ctx.plan.out_dir / "manifest.json").write_text('[{"images": 1}]\n')
    Artifacts().run(ctx)
    assert list(json.loads((ctx.plan.out_dir / "manifest.json").read_text())["images"]) == ["web"]

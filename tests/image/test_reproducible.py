"""Reproducible images: two clean builds of one role (every tree and herdd.pyz made again from scratch; only the
.deb and pip download caches shared), run at the same time, give byte-identical images, one put together in RAM
(a tmpfs) and one on disk: their directory orders differ. Where they do not, the message lists the files that
differ in the two root filesystems (/usr included) and what diffoscope says about them. A build also keeps its
cache bounded."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from herd.build.cache import KEEP_UNUSED
from herd.build.disk import ROOT_X86_64, USR_X86_64

from . import cleanbuilds
from .conftest import CLEAN_BUILDS, Build
from .diskimage import partitions


def root_tree(image: Path, dest: Path) -> Path:
    """The image's root filesystem, copied out with debugfs, and its /usr with unsquashfs (nothing mounted)."""
    _, parts = partitions(image)
    (root,) = [p for p in parts if p.type == ROOT_X86_64]
    (usr,) = [p for p in parts if p.type == USR_X86_64]
    dest.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {dest}", f"{image}?offset={root.start}"], check=True,
                   capture_output=True)
    subprocess.run(["unsquashfs", "-o", str(usr.start), "-f", "-no-progress", "-d", str(dest / "usr"), str(image)],
                   check=True, capture_output=True)
    return dest


def digests(tree: Path) -> dict[str, str]:
    out = {}
    for folder, dirs, files in os.walk(tree):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, tree)
            if os.path.islink(path):
                out[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def why_they_differ(a: Path, b: Path, work: Path) -> str:
    ta, tb = root_tree(a, work / "root-a"), root_tree(b, work / "root-b")
    da, db = digests(ta), digests(tb)
    differ = sorted(p for p in set(da) | set(db) if da.get(p) != db.get(p))
    text = f"{len(differ)} files differ in the root filesystems: {differ[:40]}"
    if not differ:
        return text + " (so the difference is in the filesystem or partition metadata)"
    r = subprocess.run(["diffoscope", "--text", "-", "--max-text-report-size", "20000",
                        *[str(t / differ[0]) for t in (ta, tb)]], capture_output=True, text=True, timeout=600)
    return f"{text}\ndiffoscope {differ[0]}:\n{r.stdout[:20000]}"


def test_two_clean_builds_of_a_role_are_byte_identical(build: Build, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    # Started in the background once the shared build was done, if this run collected this test (conftest).
    later = request.config.stash.get(CLEAN_BUILDS, None)
    builds = later.result() if later is not None else None
    if builds is None:
        builds = cleanbuilds.start(build.spec_path, build.key, tmp_path)
    manifests, outputs = [], {}
    for name, (code, output) in builds.wait().items():
        outputs[name] = output
        assert code == 0, f"build {name}:\n{output}"
        manifests.append(json.loads((builds.out(name) / build.spec.release / "manifest.json").read_text()))
    for kind, paths in builds.planted.items():
        assert [p.exists() for p in paths] == [False] + [True] * KEEP_UNUSED, f"{kind} cache not pruned"
    assert "cache: removed 2 entries" in outputs["b"]
    a, b = (m["images"]["director"] for m in manifests)
    assert a["herdd_sha256"] == b["herdd_sha256"], "herdd.pyz differs between two builds"
    images = [builds.out(name) / build.spec.release / a["file"] for name in ("a", "b")]
    assert a["sha256"] == b["sha256"], why_they_differ(*images, tmp_path)
    assert a["zst_sha256"] == b["zst_sha256"]
    assert (a["bundle_sha256"], a["bundle_sig_sha256"]) == (b["bundle_sha256"], b["bundle_sig_sha256"]), \
        "the update bundles differ"
    assert hashlib.sha256(images[0].read_bytes()).hexdigest() == a["sha256"]
    # The .deb cache keeps what the builds downloaded, so the next clean build downloads nothing (it used to be
    # emptied by `apt-get clean` through the chroot's bind mount).
    debs = cleanbuilds.CACHE / "debs"
    for package in ("linux-image-6", "ipvsadm", "galera-arbitrator-4", "systemd"):
        assert list(debs.glob(f"{package}*_amd64.deb")), f"{package} is not in the .deb cache {debs}"

"""Reproducible images: two clean builds of one role (every tree and herdd.pyz made again; only the .deb and
pip download caches shared) give byte-identical images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .conftest import Build, run_build


def test_two_clean_builds_of_a_role_are_byte_identical(build: Build, tmp_path: Path) -> None:
    manifests = []
    for name in ("a", "b"):
        out = tmp_path / name
        r = run_build(["--spec", str(build.spec_path), "--out", str(out), "--key", str(build.key),
                       "--role", "director", "--no-cache"])
        assert r.returncode == 0, r.stdout + r.stderr
        manifests.append(json.loads((out / build.spec.release / "manifest.json").read_text()))
    a, b = (m["images"]["director"] for m in manifests)
    assert a["herdd_sha256"] == b["herdd_sha256"], "herdd.pyz differs between two builds"
    assert a["sha256"] == b["sha256"], "the images differ: diffoscope the two to see where"
    assert a["zst_sha256"] == b["zst_sha256"]
    image = tmp_path / "a" / build.spec.release / a["file"]
    assert hashlib.sha256(image.read_bytes()).hexdigest() == a["sha256"]

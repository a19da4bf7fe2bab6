#!/usr/bin/env python3
"""Build benchmarks (figures, not asserts): a cold build of every role, a warm rebuild after changing only a
template, a rebuild after the Debian archives moved (the cached base made older: the point release's kernel,
tests/image/oldbase.py; the roles' trees gone, as a moved archive's new keys make them), and each image's size
(file and allocated).

    python3 bench/build.py [--cold-cache DIR]

Cold means no cached root trees or zipapp; the .deb cache is shared with the normal cache so the figure is
build work, not download speed. Run as root, like build.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "src"))

from herd.build.recipes import load_base  # noqa: E402
from herd.spec import load  # noqa: E402
from tests.image.oldbase import make_older  # noqa: E402

CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd"))
STEP = re.compile(r"✓ (.+?) (?:\(cached\)|([\d.]+) s)\s*$")


def build(cache: Path, out: Path, key: Path, *extra: str) -> tuple[float, dict[str, float]]:
    start = time.monotonic()
    r = subprocess.run([sys.executable, str(PROJECT / "build.py"), "--out", str(out), "--key", str(key),
                        "--release-key", str(key.with_name("cluster.release.key")), "--cache-dir", str(cache),
                        *extra], capture_output=True, text=True,
                       env={**os.environ, "HERD_VENV": str(CACHE / "venv")})
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"build failed:\n{r.stderr}")
    steps = {}
    for line in r.stderr.splitlines():
        m = STEP.search(line)
        if m and m.group(2):
            steps[m.group(1)] = float(m.group(2))
    return elapsed, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cold-cache", type=Path, help="cache dir for the cold build (default: a new temp dir)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="herd-bench-"))
    cold = args.cold_cache or work / "cache"
    cold.mkdir(parents=True, exist_ok=True)
    (CACHE / "debs").mkdir(parents=True, exist_ok=True)
    if not (cold / "debs").exists():
        (cold / "debs").symlink_to(CACHE / "debs")
    key = work / "cluster.key"
    template = PROJECT / "overlay/common/etc/motd.j2"
    original = template.read_text()
    try:
        cold_s, cold_steps = build(cold, work / "out", key)
        template.write_text(original + f"\n(bench {time.time()})\n")
        warm_s, _ = build(cold, work / "out", key)
        template.write_text(original + f"\n(bench {time.time()})\n")
        warm_role_s, warm_role_steps = build(cold, work / "out", key, "--role", "web")
    finally:
        template.write_text(original)
    (current,) = (cold / "rootfs").glob("base-*.*.tar.zst")
    recipe = current.name.removeprefix("base-").split(".")[0]
    spec = load(PROJECT / "examples/cluster.toml")
    make_older(current, cold, recipe, spec.debian.suite, load_base(PROJECT / "image").kernel, work)
    for entry in (cold / "rootfs").glob("*.tar.zst"):
        if not entry.name.startswith("base-"):
            entry.unlink()  # the roles' trees: keyed by the base's state, so a moved archive misses them too
    current.unlink()
    moved_s, moved_steps = build(cold, work / "out", key)
    base = sum(v for k, v in cold_steps.items() if k.startswith("base system"))
    installs = sum(v for k, v in cold_steps.items() if "packages:" in k)
    print(f"cold build, all roles:        {cold_s:7.1f} s")
    for name, seconds in cold_steps.items():
        print(f"    {seconds:7.1f} s  {name}")
    print(f"debootstrap + role installs:  {base + installs:7.1f} s  (cold / that = {cold_s / (base + installs):.2f})")
    print(f"warm rebuild after a template change: {warm_s:.1f} s; one role (web): {warm_role_s:.1f} s")
    for name, seconds in warm_role_steps.items():
        print(f"    {seconds:7.1f} s  {name}")
    print(f"rebuild after the archives moved (a new kernel), all roles: {moved_s:.1f} s")
    for name, seconds in moved_steps.items():
        print(f"    {seconds:7.1f} s  {name}")
    release = next((work / "out").iterdir())
    manifest = json.loads((release / "manifest.json").read_text())
    print("images:")
    for role, entry in manifest["images"].items():
        st = os.stat(release / entry["file"])
        print(f"    {role:9} file {st.st_size / 2**20:6.0f} MiB   allocated {st.st_blocks * 512 / 2**20:6.0f} MiB"
              f"   .zst {entry.get('zst_size', 0) / 2**20:6.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

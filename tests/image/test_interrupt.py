"""Ctrl-C in the middle of a build: no partial image, no scratch tree or tmpfs, no process left in a chroot, and the
cache still serves the next build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from herd.build.fs import mounts_under
from herd.spec import Role

from .conftest import EXAMPLE, PROJECT, Build, run_build

CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd"))


def processes_inside(path: Path) -> list[str]:
    found = []
    prefix = str(path.resolve())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for link in ("root", "cwd"):
            try:
                target = os.readlink(f"/proc/{pid}/{link}")
            except OSError:
                continue
            if target.startswith(prefix + "/"):
                found.append(f"{pid} ({link} {target})")
    return found


def default_sigint() -> None:
    """In the child, before exec: SIGINT does what it does in a terminal's foreground job. A test run started in
    the background of a shell has SIGINT ignored, and exec keeps an ignored signal ignored (the builder is right
    to respect that), so without this the Ctrl-C below would not reach the build at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_debootstrap(build: Build, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = set(CACHE.glob("**/.*.tmp"))
    # --no-cache: the base is debootstrapped again, so the interrupt lands inside a chroot with /proc mounted;
    # --scratch ram: in a tmpfs of the build's own, which must be unmounted too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "herd.build.cli", "--spec", str(EXAMPLE), "--out", str(out),
         "--key", str(build.key), "--release-key", str(build.spec_path.with_suffix(".release.key")),
         "--role", "director", "--no-cache", "--scratch", "ram"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=default_sigint, env={**os.environ, "PYTHONPATH": str(PROJECT / "src")})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "base system" in line:
            break
    time.sleep(10)  # well inside debootstrap
    assert proc.poll() is None, "".join(seen)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert not list(out.rglob("*.img")) and not list(out.rglob("*.tmp")), "partial output left behind"
    assert not list(CACHE.glob("build-*")), "scratch space left behind"
    assert not mounts_under(CACHE), "the scratch tmpfs (or a chroot's mount) left mounted"
    assert "working in RAM" in output
    assert set(CACHE.glob("**/.*.tmp")) <= before, "half-written cache entry left behind"
    assert not processes_inside(CACHE), "processes still running inside a build tree"

    # The cache is still valid: the same role builds from it without debootstrapping.
    r = run_build(["--spec", str(EXAMPLE), "--out", str(out), "--key", str(build.key),
                   "--release-key", str(build.spec_path.with_suffix(".release.key")), "--role", "director"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(cached)" in r.stderr
    assert (out / build.spec.release / build.images[Role.DIRECTOR].name).is_file()

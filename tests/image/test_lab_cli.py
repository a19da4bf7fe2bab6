"""`tests/lab` (tests/cluster.py), the by-hand harness: stopped with `down` in the middle of booting, it leaves
no VM, namespace, tap or disk copy behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..netns.harness import wait_for
from .conftest import PROJECT, Build


def qemus_under(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line]


def namespaces() -> set[str]:
    return {line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                       text=True).stdout.splitlines() if line.strip()}


def test_down_while_booting_leaves_nothing_behind(build: Build, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{PROJECT / 'src'}:{PROJECT}", "HERD_LAB_STATE": str(tmp_path / "lab.json")}
    before = namespaces()
    up = subprocess.Popen([sys.executable, "-m", "tests.cluster", "up", "--workdir", str(tmp_path)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT)
    try:
        wait_for(lambda: len(qemus_under(tmp_path)) >= 2, 600, every=1, what="the lab's VMs starting")
        assert namespaces() > before  # the LAN's namespaces exist while it runs
        time.sleep(5)
        down = subprocess.run([sys.executable, "-m", "tests.cluster", "down"], env=env, capture_output=True,
                              text=True, timeout=120, cwd=PROJECT)
        assert down.returncode == 0 and "lab stopped" in down.stdout, down.stdout + down.stderr
        out, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, out
    assert qemus_under(tmp_path) == []
    assert namespaces() == before
    assert not list(tmp_path.glob("herd-lab-*")), "the disk copies are removed"
    assert not (tmp_path / "lab.json").exists()

"""The reproducibility test's two clean builds of the director (every tree and herdd.pyz made again from scratch;
only the .deb and pip download caches shared), run at the same time: "a" puts its trees together in RAM and uses
the shared cache, "b" on disk with a cache of its own (its .debs and pip downloads hard-linked from the shared
one: sharing the folder would share apt's lock), seeded with entries of earlier builds it must prune.

They can start in the background as soon as the shared build is done (it makes the spec and key they use), at the
lowest CPU priority, so that they take what the fast tiers leave of the two cores."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from herd.build.cache import KEEP_UNUSED

PROJECT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd"))
KINDS = ("rootfs", "zipapp")


@dataclass
class CleanBuilds:
    work: Path
    planted: dict[str, list[Path]]  # kind -> b's entries of earlier builds, oldest first
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def out(self, name: str) -> Path:
        return self.work / name

    def wait(self) -> dict[str, tuple[int, str]]:
        """Each build's exit code and its output (stdout and stderr together)."""
        results = {}
        for name, proc in self.procs.items():
            proc.wait()
            results[name] = (proc.returncode, (self.work / f"{name}.log").read_text(errors="replace"))
        return results

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


DOWNLOADS = {"debs": "*.deb", "pip": "**/*"}


def own_cache(folder: Path, kinds: dict[str, str] = DOWNLOADS) -> Path:
    """A cache folder of a build's own, its .debs and pip downloads (and any other `kinds`: folder -> glob)
    hard-linked from the shared cache (sharing the folder would share apt's lock)."""
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # whatever the umask: the builder refuses a cache folder others can write
    for kind, pattern in kinds.items():
        for path in (CACHE / kind).glob(pattern):
            if path.is_file() and not path.is_symlink():
                link = folder / kind / path.relative_to(CACHE / kind)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, link)
    return folder


def start(spec_path: Path, key: Path, work: Path, background: bool = False) -> CleanBuilds:
    own = own_cache(work / "cache-b")
    # Entries of earlier builds in b's cache, oldest first: b removes what it did not use beyond the ten most
    # recently used of each kind, so the oldest of each goes and the rest stay.
    planted = {kind: [own / kind / f"old-{i:02}.tar.zst" for i in range(KEEP_UNUSED + 1)] for kind in KINDS}
    for paths in planted.values():
        for i, path in enumerate(paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            os.utime(path, (1_000_000_000 + i, 1_000_000_000 + i))
    builds = CleanBuilds(work, planted)
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    for name, where, cache_dir in (("a", "ram", CACHE), ("b", "disk", own)):
        with open(work / f"{name}.log", "wb") as log:
            builds.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "herd.build.cli", "--spec", str(spec_path), "--out", str(work / name),
                 "--key", str(key), "--role", "director", "--no-cache", "--scratch", where, "--cache-dir",
                 str(cache_dir)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, 19)) if background else None)
    return builds


class AfterSharedBuild:
    """start(...) in the background once the shared build's process has ended well (a thread waits for it)."""

    def __init__(self, shared: subprocess.Popen[bytes], spec_path: Path, key: Path, work: Path) -> None:
        self.builds: CleanBuilds | None = None
        self.error: BaseException | None = None
        self.stopped = False
        self.lock = threading.Lock()

        def run() -> None:
            shared.wait()
            with self.lock:
                if self.stopped or shared.returncode != 0:
                    return
                try:
                    self.builds = start(spec_path, key, work, background=True)
                except Exception as exc:  # handed to the test, which fails with it
                    self.error = exc

        self.thread = threading.Thread(target=run, name="clean-builds", daemon=True)
        self.thread.start()

    def result(self) -> CleanBuilds | None:
        """The started builds; None if the shared build failed (the test fails on that first)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.builds

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            if self.builds is not None:
                self.builds.stop()

"""herdd.pyz: shiv packs herd and its dependencies into one file for the *target*: Debian bookworm's
CPython 3.11 on x86-64. psutil is a C extension, so pip is told the target's platform and takes wheels
built for it, never whatever the build host happens to run. The dependencies are exactly those of
image/requirements-herdd.txt, each file checked against its sha256 there (see herd.build.locks). The one-file
builder (herd.pyz) carries a prebuilt herdd.pyz and uses that."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from herd.build import locks
from herd.build.checkout import copy, sources
from herd.build.context import BuildContext
from herd.build.plan import DEFAULT_EPOCH, tree_digest
from herd.build.project import PREBUILT_HERDD
from herd.build.run import OnLine, run
from herd.build.steps import Step

TARGET_PIP = locks.TARGET_PIP
# The zipapp is shared by every cluster and release (its cache key is herd's source), so its time stamps are
# fixed, never a build's SOURCE_DATE_EPOCH.
ZIPAPP_EPOCH = DEFAULT_EPOCH
# Where herdd.pyz's packages live on a node: unpacked there at build time (steps/tree.py), read-only after.
SHIV_ROOT = "/usr/lib/herd/shiv"
ZIPAPP_FORMAT = 5  # bump when the way herdd.pyz is made changes (its key is otherwise herd's source and lock)


def zipapp_key(project: Path) -> str:
    prebuilt = project / PREBUILT_HERDD
    if not (project / "src").is_dir() and prebuilt.is_file():
        return "prebuilt-" + hashlib.sha256(prebuilt.read_bytes()).hexdigest()[:20]
    src = tree_digest(project / "src", ("**/*.py", "**/*.typed"))
    return f"f{ZIPAPP_FORMAT}-" + tree_digest(project, ("pyproject.toml", locks.HERDD)) + src


def pip_env(pip_cache: Path) -> dict[str, str]:
    return {"PIP_CACHE_DIR": str(pip_cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def shiv_command() -> str:
    shiv = Path(sys.executable).with_name("shiv")
    return str(shiv) if shiv.exists() else "shiv"


# What setuptools reads to build herd's wheel; nothing else of the checkout goes in.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "src")


def _left_out(name: str) -> bool:
    return name == "__pycache__" or name.endswith(".egg-info")


def copy_sources(project: Path, dest: Path) -> None:
    """The checkout's WHEEL_SOURCES into a new directory dest, without caches and earlier builds' egg-info. A
    symlink out of the checkout is refused (CheckoutError) before anything is copied: it would go into
    herdd.pyz, and so into every image, and into herd.pyz."""
    copy(project, WHEEL_SOURCES, dest, _left_out)


def herd_wheel(project: Path, wheels: Path, pip_cache: Path, on_line: OnLine | None = None) -> Path:
    """herd itself is pure Python: its wheel, built from a private copy of the checkout's sources. pip builds a
    local project in place, in its build/ and src/*.egg-info, so two builds from one checkout at once collide
    there ("File exists"), and a file deleted from src/ lives on in a stale build/lib and in the wheel. It is
    built with the venv's setuptools and wheel (image/requirements-build.txt), without build isolation, which
    would fetch the newest of them unchecked; pip fetches nothing here."""
    source = wheels.parent / "herd-source"
    shutil.rmtree(source, ignore_errors=True)
    copy_sources(project, source)
    wheels.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
         "--check-build-dependencies", "-q", "-w", wheels, source], on_line=on_line, env=pip_env(pip_cache))
    shutil.rmtree(source)
    (wheel,) = wheels.glob("herd-*.whl")
    return wheel


def download_locked(lock: Path, wheels: Path, pip_cache: Path, on_line: OnLine | None = None) -> None:
    """A lock file's wheels for the target into wheels, each checked against its hash."""
    run([sys.executable, "-m", "pip", "download", "-q", "--dest", wheels, *TARGET_PIP, "--require-hashes",
         "--no-deps", "-r", lock], on_line=on_line, env=pip_env(pip_cache))


def locked_with_herd(lock: Path, wheel: Path, dest: Path) -> Path:
    """dest: the lock file's pins and herd's own wheel, pinned by version and the hash of the file just built,
    for shiv's `pip install --require-hashes --no-deps --no-index`."""
    version = wheel.name.split("-")[1]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    dest.write_text(f"{lock.read_text()}herd=={version} --hash=sha256:{digest}\n")
    return dest


def build_herdd(project: Path, dest: Path, work: Path, pip_cache: Path, on_line: OnLine | None = None) -> None:
    """herdd.pyz from the checkout into dest, with image/requirements-herdd.txt's packages for the target.
    Everything is fetched into one directory first and installed from there by name, never by path: pip records
    a path install's location in the zipapp (direct_url.json), which would make every build's herdd.pyz
    differ."""
    wheels = work / "wheels"
    wheel = herd_wheel(project, wheels, pip_cache, on_line)
    download_locked(project / locks.HERDD, wheels, pip_cache, on_line)
    requirements = locked_with_herd(project / locks.HERDD, wheel, work / "herdd-requirements.txt")
    run([shiv_command(), "-o", dest, "-e", "herd.entry:main", "-p", "/usr/bin/python3", "--root", SHIV_ROOT,
         "--compressed", "--reproducible", "--", *TARGET_PIP, "--no-index", "--find-links", wheels,
         "--require-hashes", "--no-deps", "-r", requirements],
        on_line=on_line, env={**pip_env(pip_cache), "SOURCE_DATE_EPOCH": str(ZIPAPP_EPOCH)})


class Zipapp(Step):
    name = "zipapp"

    def label(self) -> str:
        return "herdd zipapp (shiv, CPython 3.11 x86-64)"

    def check(self, ctx: BuildContext) -> None:
        if (ctx.project / "src").is_dir():
            sources(ctx.project, WHEEL_SOURCES, _left_out)  # the checkout's links checked before any step runs

    def run(self, ctx: BuildContext) -> None:
        prebuilt = ctx.project / PREBUILT_HERDD
        if not (ctx.project / "src").is_dir() and prebuilt.is_file():
            with ctx.reporter.step(f"{self.label()}, prebuilt in herd.pyz", cached=True):
                ctx.zipapp = prebuilt
            return
        key = ctx.plan.zipapp_key
        cached = ctx.cache.lookup("zipapp", key, ".pyz")
        with ctx.reporter.step(self.label(), cached=cached is not None) as progress:
            if cached is not None:
                ctx.zipapp = cached
                return
            with ctx.cache.store("zipapp", key, ".pyz") as tmp:
                build_herdd(ctx.project, tmp, ctx.work, ctx.cache.root / "pip", on_line=progress.line)
            ctx.zipapp = ctx.cache.path("zipapp", key, ".pyz")

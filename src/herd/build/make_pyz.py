"""`python3 build.py make-pyz [OUT]`: the builder itself as one file, herd.pyz (shiv), for any Debian 12 host with
python3: `python3 herd.pyz --spec site.toml` builds the images as `build.py` does, without a checkout, a venv,
pip or shiv. It carries the builder (herd, jinja2, sh, rich, for CPython 3.11 x86-64: exactly the packages and
files of image/requirements-herd-pyz.txt, hashes checked), the project's image/, overlay/ and examples/ (never a
`.key` file), and a prebuilt herdd.pyz. The host tools (debootstrap, mkfs…) are not in it: herd.pyz names the
missing ones with the apt-get line that installs them."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from herd.build import locks
from herd.build.cache import Cache
from herd.build.checkout import CheckoutError, copy
from herd.build.plan import DEFAULT_EPOCH
from herd.build.project import BUNDLE, PREBUILT_HERDD, find
from herd.build.run import CommandError, OnLine, run
from herd.build.steps.zipapp import (
    TARGET_PIP,
    build_herdd,
    download_locked,
    herd_wheel,
    locked_with_herd,
    pip_env,
    shiv_command,
    zipapp_key,
)

DATA = ("image", "overlay", "examples")
ENTRY = "herd.build.cli:main"


SECRETS = (".key", ".tsig")  # a cluster key, a release key, a site's TSIG key (each beside its spec)


def _left_out(name: str) -> bool:
    return name.endswith(SECRETS) or name.startswith(".") or name == "__pycache__"


def stage_data(project: Path, bundle: Path, herdd: Path) -> None:
    """bundle/{image,overlay,examples,herdd.pyz}: what the builder reads from a checkout, secrets left out; a
    symlink out of the checkout, or to a file left out, is refused before anything is copied."""
    copy(project, DATA, bundle, _left_out)
    shutil.copy2(herdd, bundle / PREBUILT_HERDD)
    for path in [bundle, *bundle.rglob("*")]:
        os.utime(path, (DEFAULT_EPOCH, DEFAULT_EPOCH), follow_symlinks=False)


def make_pyz(project: Path, out: Path, cache_dir: Path, on_line: OnLine | None = None) -> None:
    """herd.pyz at out (atomically); herdd.pyz is the build cache's when it has this source's, else built."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    pip_cache = cache_dir / "pip"
    with tempfile.TemporaryDirectory(prefix="herd-pyz-") as scratch:
        work = Path(scratch)
        herdd = Cache(cache_dir).lookup("zipapp", zipapp_key(project), ".pyz")
        if herdd is None:
            herdd = work / PREBUILT_HERDD
            build_herdd(project, herdd, work / "herdd", pip_cache, on_line)
        site = work / "site-packages"
        stage_data(project, site / BUNDLE, herdd)
        wheels = work / "wheels"
        wheel = herd_wheel(project, wheels, pip_cache, on_line)
        download_locked(project / locks.HERD_PYZ, wheels, pip_cache, on_line)
        requirements = locked_with_herd(project / locks.HERD_PYZ, wheel, work / "herd-pyz-requirements.txt")
        try:
            run([shiv_command(), "-o", tmp, "-e", ENTRY, "-p", "/usr/bin/env python3", "--compressed",
                 "--reproducible", "--site-packages", site, "--", *TARGET_PIP, "--no-index", "--find-links", wheels,
                 "--require-hashes", "--no-deps", "-r", requirements],
                on_line=on_line, env={**pip_env(pip_cache), "SOURCE_DATE_EPOCH": str(DEFAULT_EPOCH)})
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="build.py make-pyz", description="Package the builder itself as one file (shiv): "
        "`python3 herd.pyz --spec FILE` then builds images on any Debian 12 host with python3.")
    p.add_argument("out", type=Path, nargs="?", default=Path("out/herd.pyz"), help="default: out/herd.pyz")
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("HERD_CACHE", "/var/cache/herd")),
                   help="build cache: herdd.pyz if built already, pip's downloads; default: /var/cache/herd")
    args = p.parse_args(argv)
    folder = args.out.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        print(f"error: cannot write {args.out}: {folder} is not a directory", file=sys.stderr)
        return 2
    project = find()
    if not project.checkout:
        print("error: make-pyz runs from a source checkout (python3 build.py make-pyz)", file=sys.stderr)
        return 2
    try:
        make_pyz(project.root, args.out, args.cache_dir)
    except CheckoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # OUT in a folder that is a file, or not writable
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size
    print(f"{args.out}: {size / 2**20:.1f} MiB; run it with: python3 {args.out} --spec SPEC [--out DIR]")
    return 0

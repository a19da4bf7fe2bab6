#!/usr/bin/env python3
"""herd's builder: `python3 build.py --help`.

This file only gets the machine ready, with nothing but the standard library: it installs the missing host
tools with apt (when run as root), makes a virtual environment with the builder's Python dependencies under
the cache directory, and hands over to `herd.build.cli` inside it. Run as root on Debian 12.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd"))
VENV = Path(os.environ.get("HERD_VENV", CACHE / "venv"))


def say(text: str) -> None:
    print(f"build.py: {text}", file=sys.stderr, flush=True)


def requirements(*names: str) -> list[tuple[str, str]]:
    pairs = []
    for name in names:
        for line in (PROJECT / "image" / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                command, package = line.split()
                pairs.append((command, package))
    return pairs


def missing(pairs: list[tuple[str, str]]) -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return sorted({pkg for cmd, pkg in pairs
                   if not (Path(cmd).exists() if cmd.startswith("/") else shutil.which(cmd, path=path))})


def apt_install(packages: list[str]) -> None:
    if not packages:
        return
    if os.geteuid() != 0:
        say(f"missing Debian packages: {' '.join(packages)}\n"
            f"  install them with: sudo apt-get install {' '.join(packages)}   (or run build.py as root)")
        sys.exit(3)
    say(f"installing host packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], check=True, env=env,
                   stdout=sys.stderr)


# The venv's packages, pinned with their sha256 (src/herd/build/locks.py writes them): the test lock has all of
# the build lock's and the test tools.
LOCKS = {"build": PROJECT / "image" / "requirements-build.txt", "test": PROJECT / "image" / "requirements-test.txt"}


def ensure_venv(lock: Path) -> Path:
    """The builder's Python dependencies in a venv under the cache (so repeat runs and CI reuse it), exactly the
    lock file's versions and files: pip checks every download against its hash and resolves nothing. The
    project itself is imported from this checkout."""
    stamp = hashlib.sha256(lock.read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    marker = VENV / ".herd-deps"
    if python.exists() and marker.exists() and stamp in marker.read_text().split():
        return python
    try:
        import ensurepip  # noqa: F401  (Debian splits it into python3-venv)
    except ImportError:
        apt_install(["python3-venv"])
    if not CACHE.exists():  # writable by its owner only, whatever the umask: the builder refuses it otherwise
        CACHE.mkdir(parents=True)
        os.chmod(CACHE, 0o755)
    if not python.exists():
        say(f"creating a virtual environment in {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, stdout=sys.stderr)
    say(f"installing Python dependencies from {lock.relative_to(PROJECT)}")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--require-hashes",
                    "--no-deps", "--only-binary=:all:", "-r", str(lock)], check=True,
                   env={**os.environ, "PIP_CACHE_DIR": str(CACHE / "pip")}, stdout=sys.stderr)
    old = marker.read_text().split() if marker.exists() else []
    marker.write_text("\n".join([*old, stamp]) + "\n")
    return python


def main() -> None:
    argv = sys.argv[1:]
    # `--setup-only[=test]` is for the test command: get the machine ready, build nothing.
    setup = next((a for a in argv if a.startswith("--setup-only")), None)
    wants_tests = setup == "--setup-only=test"
    # `build.py flash`, `diff` and `make-pyz` need only the venv (rich, shiv), none of the build tools.
    building = argv[:1] not in (["flash"], ["diff"], ["make-pyz"])
    if building and (not (set(argv) & {"-h", "--help", "--version"}) or not VENV.exists()):
        apt_install(missing(requirements("host-packages.txt", *(["test-packages.txt"] if wants_tests else []))))
    try:
        python = ensure_venv(LOCKS["test" if wants_tests else "build"])
    except (OSError, subprocess.CalledProcessError) as exc:
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        say(f"could not set up the builder's Python environment in {VENV}: {what}\n"
            "  run build.py as root, or point HERD_CACHE (or HERD_VENV) at a folder you can write; pip needs "
            "PyPI (or its cache) the first time, and refuses a file whose sha256 is not the lock file's (pip's "
            "message above names it)")
        sys.exit(3)
    if setup:
        print(python)
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT / "src"),
                                                                     os.environ.get("PYTHONPATH")]))}
    os.execve(python, [str(python), "-m", "herd.build.cli", *argv], env)


if __name__ == "__main__":
    main()

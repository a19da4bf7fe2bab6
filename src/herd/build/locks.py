"""The Python lock files: every package pip installs for herd, pinned with == and its sha256, checked in under
image/. Each is complete (pyproject.toml's requirements and everything they need), so pip installs it with
`--require-hashes --no-deps -r FILE`: nothing is resolved at build time, and a file whose bytes differ from the
lock's hash is refused.

    image/requirements-herdd.txt    herdd.pyz on every node: pyproject's dependencies
    image/requirements-herd-pyz.txt herd.pyz, the one-file builder: the dependencies and the build extra but shiv
    image/requirements-build.txt    build.py's venv: the dependencies, the build extra, setuptools and wheel
                                    (herd's own wheel is built with them, without build isolation)
    image/requirements-test.txt     tests/run's venv: the build lock's packages and the test extra

Every lock is for CPython 3.11 on x86-64 Linux with glibc 2.17 or later (manylinux2014 wheels): the target,
Debian bookworm, as herdd.pyz always took, and the build host, Debian 12. Only wheels are locked, one per
package, the one pip picks for those tags (pip installs only files whose hash is locked, so it takes that one
on any such machine).

Refresh (standard library only, so it runs without the venv; needs PyPI):

    python3 src/herd/build/locks.py             # the newest versions pyproject.toml allows
    python3 src/herd/build/locks.py --keep      # the versions locked now; adds or drops what pyproject changed
    python3 src/herd/build/locks.py -c FILE     # versions held by a pip constraints file (e.g. a `pip freeze`)

It resolves everything once (the test lock), then each lock from its own requirements constrained to those
versions, so a package has the same version and file in every lock.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TARGET_PIP = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
              "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:"]

HERDD = "image/requirements-herdd.txt"
HERD_PYZ = "image/requirements-herd-pyz.txt"
BUILD = "image/requirements-build.txt"
TEST = "image/requirements-test.txt"

WHAT = {
    HERDD: "herdd.pyz's packages: pyproject.toml's dependencies and all they need; CPython 3.11, x86-64",
    HERD_PYZ: "herd.pyz's packages: the dependencies, the build extra but shiv, all they need; CPython 3.11, x86-64",
    BUILD: "build.py's venv: the dependencies, the build extra, setuptools, wheel, all they need; CPython 3.11, x86-64",
    TEST: "tests/run's venv: the build lock's packages, the test extra and all they need; CPython 3.11, x86-64",
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})$")


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares it: Jinja2, jinja2 and jinja_2 are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group())


def roots(project: Path) -> dict[str, list[str]]:
    """Each lock file's top-level requirements, from pyproject.toml."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    deps = list(pyproject["project"]["dependencies"])
    extras = pyproject["project"]["optional-dependencies"]
    build_system = list(pyproject["build-system"]["requires"])

    def union(*groups: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for req in (r for g in groups for r in g):
            seen.setdefault(requirement_name(req), req)
        return list(seen.values())

    return {
        HERDD: union(deps),
        HERD_PYZ: union(deps, [r for r in extras["build"] if requirement_name(r) != "shiv"]),
        BUILD: union(deps, extras["build"], build_system),
        TEST: union(deps, extras["build"], build_system, extras["test"]),
    }


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


def parse(text: str) -> dict[str, Pin]:
    """A lock file's pins by canonical name. Anything but `name==version` with --hash=sha256:… options (a line
    may go on after a backslash) is an error, so a hand edit that drops a pin or a hash is caught."""
    pins: dict[str, Pin] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, sep, version = requirement.partition("==")
        if not sep or not version or _NAME.fullmatch(name) is None:
            raise ValueError(f"not pinned with ==: {requirement!r}")
        hashes = []
        for option in options:
            match = _HASH.match(option)
            if match is None:
                raise ValueError(f"{requirement}: not a --hash=sha256:… option: {option!r}")
            hashes.append(match.group(1))
        if not hashes:
            raise ValueError(f"{requirement}: no --hash=sha256:…")
        if canonical(name) in pins:
            raise ValueError(f"{name} is pinned twice")
        pins[canonical(name)] = Pin(version, tuple(hashes))
    return pins


def read(project: Path, lock: str) -> dict[str, Pin]:
    return parse((project / lock).read_text())


def render(lock: str, pins: dict[str, Pin]) -> str:
    lines = [*textwrap.wrap(f"{WHAT[lock]}.", 110, initial_indent="# ", subsequent_indent="# "),
             "# pip installs it with --require-hashes --no-deps. Do not edit by hand: the lock files are written from",
             "# pyproject.toml by `python3 src/herd/build/locks.py` (--help: how to keep the versions or upgrade).", ""]
    for name in sorted(pins):
        pin = pins[name]
        lines.append(f"{name}=={pin.version} \\")
        lines += [f"    --hash=sha256:{h}" + (" \\" if i < len(pin.hashes) - 1 else "")
                  for i, h in enumerate(pin.hashes)]
    return "\n".join(lines) + "\n"


def resolve(python: Path, requirements: Iterable[str], tags: list[str], constraints: list[Path],
            work: Path) -> dict[str, Pin]:
    """What pip would install for requirements on a machine with tags, and the sha256 of each wheel it picks:
    `pip install --dry-run --report` (it installs nothing), into an empty target so nothing installed counts."""
    report = work / "report.json"
    command = [str(python), "-m", "pip", "install", "--dry-run", "--disable-pip-version-check", "--ignore-installed",
               "--quiet", "--report", str(report), "--target", str(work / "target"), *tags]
    for c in constraints:
        command += ["-c", str(c)]
    subprocess.run([*command, *requirements], check=True)
    pins: dict[str, Pin] = {}
    for item in json.loads(report.read_text())["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        url = item["download_info"]["url"]
        archive = item["download_info"].get("archive_info", {})
        digest = archive.get("hashes", {}).get("sha256") or archive.get("hash", "").removeprefix("sha256=")
        if not url.endswith(".whl") or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise SystemExit(f"locks.py: {name} {version}: pip chose {url}, not a wheel with a sha256")
        pins[canonical(name)] = Pin(version, (digest,))
    return pins


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="locks.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", action="store_true", help="keep the versions the lock files pin now")
    p.add_argument("-c", "--constraint", type=Path, action="append", default=[],
                   help="a pip constraints file holding versions (may be given more than once)")
    args = p.parse_args(argv)
    project = Path(__file__).resolve().parents[3]
    wanted = roots(project)
    with tempfile.TemporaryDirectory(prefix="herd-locks-") as scratch:
        work = Path(scratch)
        # pip from a venv of its own: the system python3 may have none; --report needs pip 22.2 or later.
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        python = work / "venv" / "bin" / "python"
        constraints = [c.resolve() for c in args.constraint]
        if args.keep:
            held = {name: pin.version for lock in wanted if (project / lock).exists()
                    for name, pin in read(project, lock).items()}
            (work / "keep.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(held.items())))
            constraints.append(work / "keep.txt")
        (work / "all").mkdir()
        try:
            everything = resolve(python, wanted[TEST], TARGET_PIP, constraints, work / "all")
            (work / "versions.txt").write_text("".join(f"{n}=={p.version}\n" for n, p in sorted(everything.items())))
            locks = {TEST: everything}
            for lock in (BUILD, HERDD, HERD_PYZ):
                (work / lock).mkdir(parents=True)
                locks[lock] = resolve(python, wanted[lock], TARGET_PIP, [work / "versions.txt"], work / lock)
        except subprocess.CalledProcessError:
            print("locks.py: pip could not resolve pyproject.toml's requirements (its message is above); with "
                  "--keep or -c, a held version may be one pyproject.toml no longer allows. No lock file changed.",
                  file=sys.stderr)
            return 1
    for lock, pins in locks.items():
        (project / lock).write_text(render(lock, pins))
        print(f"{lock}: {len(pins)} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

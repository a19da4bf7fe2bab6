"""Every Python package herd installs comes from a checked-in lock file, pinned with == and a sha256: the lock
files name everything pyproject.toml asks for and all it needs, each package at one version in all of them; every
pip command in the code installs or downloads with --require-hashes --no-deps -r LOCK (or fetches nothing); and
pip refuses a file whose hash is not the locked one. Offline, a couple of seconds."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement

from herd.build import locks
from herd.build.steps import zipapp

PROJECT = Path(__file__).resolve().parents[2]
LOCKS = (locks.HERDD, locks.HERD_PYZ, locks.BUILD, locks.TEST)
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())


def pinned(lock: str) -> dict[str, locks.Pin]:
    return locks.read(PROJECT, lock)


# --- the lock files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", LOCKS)
def test_every_line_is_a_pin_with_a_sha256(lock: str) -> None:
    pins = pinned(lock)  # parse() refuses a line without == or without a --hash=sha256:…
    assert pins
    for name, pin in pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", pin.version), (name, pin.version)
        assert pin.hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pin.hashes), name


@pytest.mark.parametrize("text", ["rich>=13 --hash=sha256:" + "0" * 64, "rich==15.0.0", "rich\n",
                                  "rich==15.0.0 --hash=md5:0123", "rich==15.0.0 \\\n    --hash=sha256:abc"])
def test_a_loose_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        locks.parse(text)


def test_a_pin_may_go_on_over_lines() -> None:
    a, b = "a" * 64, "b" * 64
    pins = locks.parse(f"# c\nJinja_2==3.1.6 \\\n    --hash=sha256:{a} \\\n    --hash=sha256:{b}\n")
    assert pins == {"jinja-2": locks.Pin("3.1.6", (a, b))}


def pyproject_requirements() -> dict[str, list[str]]:
    project = PYPROJECT["project"]
    groups = {"dependencies": project["dependencies"], "build-system": PYPROJECT["build-system"]["requires"]}
    groups.update({f"extra {name}": reqs for name, reqs in project["optional-dependencies"].items()})
    return groups


def test_every_requirement_pyproject_names_is_locked_at_a_version_it_allows() -> None:
    """Each lock has its own requirements from pyproject (locks.roots), each at a version their specifier
    allows; and every requirement pyproject names is in some lock (a new extra must be given a lock)."""
    wanted = locks.roots(PROJECT)
    for lock in LOCKS:
        pins = pinned(lock)
        for text in wanted[lock]:
            req = Requirement(text)
            name = locks.canonical(req.name)
            assert name in pins, f"{lock} has no {name} ({text}): run python3 src/herd/build/locks.py --keep"
            assert req.specifier.contains(pins[name].version, prereleases=True), (lock, text, pins[name].version)
    for group, reqs in pyproject_requirements().items():
        for text in reqs:
            name = locks.canonical(Requirement(text).name)
            assert any(name in pinned(lock) for lock in LOCKS), f"pyproject's {group} {text} is in no lock file"


def test_the_roots_follow_pyproject() -> None:
    wanted = {lock: {locks.requirement_name(r) for r in reqs} for lock, reqs in locks.roots(PROJECT).items()}
    assert wanted[locks.HERDD] == {"dnspython", "psutil", "pyroute2", "rich"}
    assert wanted[locks.HERD_PYZ] == wanted[locks.HERDD] | {"jinja2", "sh"}
    assert wanted[locks.BUILD] == wanted[locks.HERD_PYZ] | {"shiv", "setuptools", "wheel"}
    assert wanted[locks.BUILD] < wanted[locks.TEST]
    assert "shiv" not in pinned(locks.HERD_PYZ) and "pytest" not in pinned(locks.BUILD)


def test_a_package_has_one_version_and_file_in_all_locks() -> None:
    seen: dict[str, tuple[str, locks.Pin]] = {}
    for lock in LOCKS:
        for name, pin in pinned(lock).items():
            first = seen.setdefault(name, (lock, pin))
            assert first[1] == pin, f"{name}: {first[0]} has {first[1]}, {lock} has {pin}"
    assert set(pinned(locks.BUILD)) < set(pinned(locks.TEST))


def requires(name: str) -> set[str]:
    """What an installed distribution needs here (CPython 3.11 on x86-64 Linux, as the target), no extras."""
    from importlib.metadata import distribution

    needed = set()
    for text in distribution(name).requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            needed.add(locks.canonical(req.name))
    return needed


def test_this_venv_is_the_test_lock_and_each_lock_has_all_its_packages_need() -> None:
    """--no-deps installs nothing a lock does not name, so each must hold what its packages require. The venv
    running the tests was made from the test lock (build.py --setup-only=test), so its metadata says what that
    is; on another venv, run that first."""
    from importlib.metadata import version

    assert sys.version_info[:2] == (3, 11), "the locks are for CPython 3.11"
    test = pinned(locks.TEST)
    assert {n: version(n) for n in test} == {n: p.version for n, p in test.items()}
    for lock in LOCKS:
        pins = pinned(lock)
        for name in pins:
            assert requires(name) <= pins.keys(), f"{lock}: {name} needs {requires(name) - pins.keys()}"


# --- every pip command: locked and hashed, or fetching nothing -----------------------------------------------

FETCHING = {"install", "download"}
ALWAYS = {"--require-hashes", "--no-deps", "-r"}


def python_sources() -> list[Path]:
    files = [PROJECT / "build.py"]
    for folder in ("src", "tests", "bench"):
        files += sorted((PROJECT / folder).rglob("*.py"))
    return files


def constants(nodes: list[ast.expr]) -> list[str | None]:
    return [n.value if isinstance(n, ast.Constant) and isinstance(n.value, str) else None for n in nodes]


def pip_at(argv: list[str | None]) -> int | None:
    """Where pip is in a list that runs it (`… -m pip …`, or `pip install …`); None if the list is no pip command
    (a folder named pip, say)."""
    for i, arg in enumerate(argv):
        if arg in ("pip", "pip3") and ((i > 0 and argv[i - 1] == "-m") or
                                       (i == 0 and len(argv) > 1 and re.fullmatch(r"[a-z]+", argv[1] or ""))):
            return i
    return None


def argv_problem(argv: list[str | None]) -> str | None:
    """Why a pip command line, its literal parts (None where it is an expression), does not install from a lock
    with hashes; None if it does."""
    at = pip_at(argv)
    assert at is not None
    options = [a for a in argv[at + 1:] if a is not None]
    command = next((a for a in options if not a.startswith("-")), None)
    if command in FETCHING:
        if command == "install" and "--dry-run" in options:  # locks.py: resolves, installs nothing
            return None
        missing = ALWAYS - set(options)
        if missing:
            return f"pip {command} without {' '.join(sorted(missing))}"
        if argv.index("-r") + 1 >= len(argv):
            return "-r without a file"
        return None
    if command == "wheel":  # herd's own wheel from the checkout: must fetch nothing, build deps included
        missing = {"--no-deps", "--no-index", "--no-build-isolation"} - set(options)
        return f"pip wheel without {' '.join(sorted(missing))}" if missing else None
    return f"pip {command}: not a command this test knows; teach it, or use a lock"


def shiv_problem(argv: list[str | None]) -> str | None:
    """shiv passes what follows `--` to `pip install`: the same rule, and --no-index (the wheels are already
    downloaded and checked)."""
    if "--" not in argv:
        return "shiv without `--` and pip's options"
    pip = ["pip", "install", *argv[argv.index("--") + 1:]]
    if "--no-index" not in pip:
        return "shiv's pip install without --no-index"
    return argv_problem(pip)


COMMAND_IN_TEXT = re.compile(r"\bpip3?(?:\s+-\S+)*\s+(?:install|download)\b.*")


def scan(source: str, where: str) -> tuple[list[str], list[str]]:
    """The pip commands in a Python source (file:line), and what is wrong with them."""
    commands: list[str] = []
    found: list[str] = []
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple):
            argv = constants(node.elts)
            first = node.elts[0] if node.elts else None
            if pip_at(argv) is not None:
                problem = argv_problem(argv)
            elif isinstance(first, ast.Call) and isinstance(first.func, ast.Name) and first.func.id == "shiv_command":
                problem = shiv_problem(argv)
            else:
                continue
            commands.append(f"{where}:{node.lineno}")
            if problem:
                found.append(f"{where}:{node.lineno}: {problem}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            for match in COMMAND_IN_TEXT.finditer(node.value):
                commands.append(f"{where}:{node.lineno}")
                if "--require-hashes" not in match.group() and "--dry-run" not in match.group():
                    found.append(f"{where}:{node.lineno}: a command in a string: {match.group()!r}")
    return commands, found


def problems_in(source: str, where: str) -> list[str]:
    return scan(source, where)[1]


def test_every_pip_command_in_the_code_installs_a_lock_with_hashes() -> None:
    commands: list[str] = []
    problems: list[str] = []
    for path in python_sources():
        if path.resolve() == Path(__file__).resolve():
            continue  # its examples below are wrong on purpose
        found, wrong = scan(path.read_text(), str(path.relative_to(PROJECT)))
        commands += found
        problems += wrong
    # The scan sees the ones there are: the venv, herd's wheel, herdd's and herd.pyz's downloads and shiv's
    # installs, the lock refresh.
    assert {c.split(":")[0] for c in commands} >= {"build.py", "src/herd/build/steps/zipapp.py",
                                                   "src/herd/build/make_pyz.py", "src/herd/build/locks.py"}
    assert len(commands) >= 6, commands
    for path in [PROJECT / "tests" / "run", *PROJECT.glob("**/*.sh")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if COMMAND_IN_TEXT.search(line) and "--require-hashes" not in line:
                problems.append(f"{path.relative_to(PROJECT)}:{n}: {line.strip()}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("source", "bad"), [
    ('run(["python3", "-m", "pip", "install", "rich"])', "without --no-deps --require-hashes -r"),
    ('run([py, "-m", "pip", "download", "--require-hashes", "--no-deps", "-r"])', "-r without a file"),
    ('run([py, "-m", "pip", "wheel", "-w", d, src])', "without --no-build-isolation --no-deps --no-index"),
    ('run([shiv_command(), "-o", out, "--", "--find-links", d, "herd"])', "without --no-index"),
    ('run([shiv_command(), "-o", out, "--", "--no-index", "-r", req])', "without --no-deps --require-hashes"),
    ('lab.ssh(name, "python3 -m pip install -q rich")', "a command in a string"),
    ('run([py, "-m", "pip", "uninstall", "rich"])', "not a command this test knows"),
    ('subprocess.run(["pip", "install", "--no-deps", "rich"])', "without --require-hashes -r"),
])
def test_the_scan_finds_an_unlocked_pip(source: str, bad: str) -> None:
    (problem,) = problems_in(source, "x.py")
    assert bad in problem


def test_the_scan_passes_the_locked_forms_and_leaves_the_rest() -> None:
    assert not problems_in('"""pip download caches"""\nfor kind in (("debs", "*.deb"), ("pip", "**/*")): pass\n'
                           '"pip checks every download"\n', "x.py")
    assert not problems_in('run([py, "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r", lock])\n'
                           'run([shiv_command(), "--", *TAGS, "--no-index", "--find-links", w, "--require-hashes", '
                           '"--no-deps", "-r", req])\n', "x.py")


# --- what the code really runs -------------------------------------------------------------------------------


def load_build_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("herd_build_py", PROJECT / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_py_installs_the_venv_from_the_build_or_test_lock(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    build_py = load_build_py()
    assert build_py.LOCKS == {"build": PROJECT / locks.BUILD, "test": PROJECT / locks.TEST}
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    monkeypatch.setattr(build_py, "VENV", venv)
    monkeypatch.setattr(build_py, "CACHE", tmp_path)
    calls: list[list[str]] = []
    monkeypatch.setattr(build_py.subprocess, "run", lambda argv, **kw: calls.append(argv))
    for lock in ("build", "test", "test"):
        build_py.ensure_venv(build_py.LOCKS[lock])
    assert len(calls) == 2, "a venv already made from a lock is not installed again"
    for argv, lock in zip(calls, (locks.BUILD, locks.TEST), strict=True):
        assert argv[:4] == [str(venv / "bin" / "python"), "-m", "pip", "install"]
        assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(argv)
        assert argv[argv.index("-r") + 1] == str(PROJECT / lock)


def test_herdd_is_made_from_its_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_herdd downloads the herdd lock's wheels with their hashes, and shiv installs exactly those and
    herd's own wheel (by the hash of the file just built), from that folder only."""
    wheel = tmp_path / "work" / "wheels" / "herd-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"wheel")
    calls: list[list[Any]] = []
    monkeypatch.setattr(zipapp, "herd_wheel", lambda *a, **kw: wheel)
    monkeypatch.setattr(zipapp, "run", lambda argv, **kw: calls.append([str(a) for a in argv]))
    zipapp.build_herdd(PROJECT, tmp_path / "herdd.pyz", tmp_path / "work", tmp_path / "pip")
    download, shiv = calls
    assert download[1:4] == ["-m", "pip", "download"] and download[-2:] == ["-r", str(PROJECT / locks.HERDD)]
    assert "--require-hashes" in download and "--no-deps" in download
    pip = shiv[shiv.index("--") + 1:]
    assert {"--no-index", "--require-hashes", "--no-deps"} <= set(pip)
    requirements = Path(pip[pip.index("-r") + 1]).read_text()
    digest = hashlib.sha256(b"wheel").hexdigest()
    assert requirements == (PROJECT / locks.HERDD).read_text() + f"herd==0.1.0 --hash=sha256:{digest}\n"
    assert locks.parse(requirements).keys() == {"herd", *pinned(locks.HERDD)}


def test_the_zipapp_key_follows_the_herdd_lock(tmp_path: Path) -> None:
    project = tmp_path / "p"
    zipapp.copy_sources(PROJECT, project)
    (project / "image").mkdir()
    (project / locks.HERDD).write_text((PROJECT / locks.HERDD).read_text())
    before = zipapp.zipapp_key(project)
    (project / locks.HERDD).write_text((PROJECT / locks.HERDD).read_text().replace("rich==", "rich==0"))
    assert zipapp.zipapp_key(project) != before


# --- pip refuses a file whose hash is not the lock's ---------------------------------------------------------


def tiny_wheel(folder: Path) -> Path:
    wheel = folder / "herdlocktest-1.0-py3-none-any.whl"
    info = "herdlocktest-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("herdlocktest.py", "")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: herdlocktest\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def test_pip_refuses_a_file_whose_hash_is_not_locked(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    digest = hashlib.sha256(tiny_wheel(wheels).read_bytes()).hexdigest()
    lock = tmp_path / "lock.txt"

    def download(hash_: str) -> subprocess.CompletedProcess[str]:
        lock.write_text(f"herdlocktest==1.0 \\\n    --hash=sha256:{hash_}\n")
        return subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-index", "--find-links",
                               str(wheels), "--dest", str(tmp_path / "out"), "--require-hashes", "--no-deps",
                               "-r", str(lock)], capture_output=True, text=True, timeout=120)

    tampered = download(("0" if digest[0] != "0" else "1") + digest[1:])
    assert tampered.returncode != 0 and "DO NOT MATCH THE HASHES" in tampered.stderr, tampered.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    good = download(digest)
    assert good.returncode == 0, good.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["herdlocktest-1.0-py3-none-any.whl"]

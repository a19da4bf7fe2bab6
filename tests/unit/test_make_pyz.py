"""The one-file builder: `build.py make-pyz` really packs herd.pyz with shiv, and the system's python3 (not the
venv's) runs it: --help, a bad spec (exit 2), and its packed image/, overlay/, examples/ and prebuilt herdd.pyz
found and rendered from inside it, with no cluster key packed. Takes about 15 s (pip resolves the wheels, from
the pip cache under /var/cache/herd when it can)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

from herd.build import locks
from herd.build.make_pyz import main, stage_data
from herd.build.project import BUNDLE, PREBUILT_HERDD

PROJECT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"

# Runs inside herd.pyz (SHIV_INTERPRETER=1 runs a script with the zipapp's packages on sys.path).
INSIDE = """
import stat, sys
from herd.build.project import find
from herd.build.overlay import render, template_context
from herd.build.plan import make_plan
from herd.build.recipes import load_base, load_role
from herd.build.steps.zipapp import zipapp_key
from herd.spec import load

project = find()
assert not project.checkout, project
spec = load(project.root / "examples/cluster.toml")
image = project.root / "image"
plan = make_plan(spec, "9.9", list(spec.roles), load_base(image), {r: load_role(image, r) for r in spec.roles},
                 zipapp_key(project.root), project.root / "unused")
for rp in plan.roles:
    files = {str(f.path): f for f in render(project.root / "overlay", rp.role.value,
                                            template_context(plan, rp, "6.1.0-test"))}
    assert "RELEASE=9.9" in files["etc/herd/release"].data.decode()
    assert files["usr/lib/herd/growroot"].mode & stat.S_IXUSR, "modes survive the zipapp"
assert plan.zipapp_key.startswith("prebuilt-"), plan.zipapp_key
print("ok", sys.executable, project.root)
"""


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pyz") / "herd.pyz"
    assert main([str(out)]) == 0
    return out


def run_pyz(pyz: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    shiv_root = pyz.parent / "shiv-root"  # where shiv unpacks itself, instead of ~/.shiv
    # As on a host without the checkout: no PYTHONPATH (tests/run points it at src/), no venv on PATH.
    host_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    host_env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return subprocess.run([SYSTEM_PYTHON, str(pyz), *args], capture_output=True, text=True, timeout=120,
                          cwd=pyz.parent, env={**host_env, "SHIV_ROOT": str(shiv_root), "COLUMNS": "200",
                                               **(env or {})})


def installed(z: zipfile.ZipFile) -> dict[str, str]:
    """The packages in a shiv zipapp's site-packages, by canonical name: their versions."""
    found = {}
    for name in z.namelist():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "site-packages" and parts[2] == "METADATA":
            package, version = parts[1].removesuffix(".dist-info").rsplit("-", 1)
            found[locks.canonical(package)] = version
    return found


def test_pyz_packages_are_the_locked_ones(pyz: Path) -> None:
    """herd.pyz has exactly image/requirements-herd-pyz.txt's versions (and herd), and the herdd.pyz it
    carries exactly image/requirements-herdd.txt's: the zipapps are made from the lock files, nothing else."""
    with zipfile.ZipFile(pyz) as z:
        packed = installed(z)
        with z.open(f"site-packages/{BUNDLE}/{PREBUILT_HERDD}") as f, zipfile.ZipFile(f) as herdd:
            in_herdd = installed(herdd)
    assert {"jinja2", "sh", "rich", "herd"} <= packed.keys() and "shiv" not in packed
    assert packed == {"herd": "0.1.0", **{n: p.version for n, p in locks.read(PROJECT, locks.HERD_PYZ).items()}}
    assert in_herdd == {"herd": "0.1.0", **{n: p.version for n, p in locks.read(PROJECT, locks.HERDD).items()}}


def test_pyz_contents(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as z:
        names = z.namelist()
    bundle = f"site-packages/{BUNDLE}/"
    for path in ("image/base.toml", "overlay/common/etc/herd/release.j2", "examples/cluster.toml",
                 "examples/site/index.html", "herdd.pyz"):
        assert bundle + path in names, path
    for package in ("herd/build/cli.py", "jinja2/__init__.py", "sh/__init__.py", "rich/__init__.py"):
        assert f"site-packages/{package}" in names, package
    assert not [n for n in names if n.endswith(".key")], "no cluster key in herd.pyz"


def test_no_secret_made_beside_a_spec_is_packed(tmp_path: Path) -> None:
    """A build run from the checkout leaves examples/cluster.key and examples/site-backup.tsig there."""
    project = tmp_path / "project"
    for name in ("image/base.toml", "overlay/common/x.j2", "examples/cluster.toml", "examples/cluster.key",
                 "examples/site-backup.tsig", "examples/.cluster.key.tmp", "examples/site/index.html"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("x")
    herdd = tmp_path / "herdd.pyz"
    herdd.write_text("zip")
    stage_data(project, tmp_path / "bundle", herdd)
    packed = sorted(str(p.relative_to(tmp_path / "bundle")) for p in (tmp_path / "bundle").rglob("*") if p.is_file())
    assert packed == ["examples/cluster.toml", "examples/site/index.html", "herdd.pyz", "image/base.toml",
                      "overlay/common/x.j2"]


def test_help_with_the_system_python(pyz: Path) -> None:
    r = run_pyz(pyz, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: herd.pyz ")
    assert "--spec SPEC" in r.stdout and "python3 herd.pyz flash IMAGE /dev/sdX" in r.stdout
    version = run_pyz(pyz, "--version")
    assert version.returncode == 0 and version.stdout.startswith("herd ")


def test_bad_spec_exits_2(pyz: Path) -> None:
    bad = pyz.parent / "bad.toml"
    bad.write_text('[cluster]\nname = "x"\n')
    r = run_pyz(pyz, "--spec", str(bad), "--out", str(pyz.parent / "out"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the spec is not valid" in r.stderr and "network" in r.stderr
    assert not (pyz.parent / "out").exists()
    assert not bad.with_suffix(".key").exists()


def test_spec_is_required_without_a_checkout(pyz: Path) -> None:
    r = run_pyz(pyz)
    assert r.returncode == 2 and "--spec" in r.stderr


def test_packed_project_is_found_and_renders(pyz: Path) -> None:
    script = pyz.parent / "inside.py"
    script.write_text(INSIDE)
    r = run_pyz(pyz, str(script), env={"SHIV_INTERPRETER": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"ok {SYSTEM_PYTHON} ") and f"/{BUNDLE}" in r.stdout


def test_diff_runs_from_the_pyz(pyz: Path) -> None:
    r = run_pyz(pyz, "diff", str(pyz.parent / "none.json"), str(pyz.parent / "none.json"))
    assert r.returncode == 2 and "no such file" in r.stderr


HANDLER = PROJECT / "overlay/nfs/usr/local/sbin/herd-fence-peer"


def answer_once(path: Path, reply: bytes, got: list[bytes]) -> threading.Thread:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()

    def serve() -> None:
        with sock, sock.accept()[0] as conn:
            got.append(conn.recv(4096))
            conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_drbds_fence_peer_handler_runs_herd_straight_from_a_zipapp(pyz: Path, tmp_path: Path) -> None:
    """overlay/nfs's handler with the system python, herd imported from the zipapp without shiv's bootstrap:
    exit 5 when herdd says the peer counts as outdated, 1 when there is no herdd to ask."""
    env = {"HERD_PYZ": str(pyz), "PATH": "/usr/bin:/bin"}
    path = tmp_path / "h.sock"
    r = subprocess.run([str(HANDLER), "--socket", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "no such socket" in r.stderr, r
    got: list[bytes] = []
    thread = answer_once(path, b'{"ok": true, "fence": true}\n', got)
    r = subprocess.run([str(HANDLER), "--socket", str(path)], capture_output=True, text=True, env=env, timeout=60)
    thread.join(10)
    assert r.returncode == 5, r
    assert json.loads(got[0]) == {"cmd": "fence-peer"}


def test_the_fence_peer_handler_prefers_the_packages_the_build_unpacked(pyz: Path, tmp_path: Path) -> None:
    """In an image herdd's packages are unpacked and compiled in /usr/lib/herd/shiv: the handler imports from
    there (no zip to read), here with the zipapp itself gone."""
    shiv = tmp_path / "shiv"
    with zipfile.ZipFile(pyz) as z:
        for name in z.namelist():
            if name.startswith("site-packages/herd/"):
                z.extract(name, shiv / "herdd.pyz_0123")
    env = {"HERD_SHIV": str(shiv), "HERD_PYZ": str(tmp_path / "gone.pyz"), "PATH": "/usr/bin:/bin"}
    path = tmp_path / "h.sock"
    got: list[bytes] = []
    thread = answer_once(path, b'{"ok": true, "fence": false}\n', got)
    r = subprocess.run([str(HANDLER), "--socket", str(path)], capture_output=True, text=True, env=env, timeout=60)
    thread.join(10)
    assert r.returncode == 1 and "does not serve" in r.stdout, r
    assert json.loads(got[0]) == {"cmd": "fence-peer"}


def test_an_out_that_cannot_be_written_is_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert main([str(tmp_path / "file" / "herd.pyz")]) == 2
    assert f"error: cannot write {tmp_path}/file/herd.pyz: {tmp_path}/file is not a directory" in \
        capsys.readouterr().err

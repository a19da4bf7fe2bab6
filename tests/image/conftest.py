"""One shared build of the example cluster for every image test, and one round of boots (two VMs at a time)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from herd.spec import Node, Role, Spec, load

from ..specs import CLAIMER, with_web2_claimed
from . import cleanbuilds
from .qemu import Boot, boot

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "examples/cluster.toml"
# SeaBIOS from a virtio disk is how every lab VM boots (all four roles, in lab.py): here the other two ways.
WAYS = ("uefi", "usb")
# Each role boots once in the boot tests, the two ways in turn: the boot chain (GRUB, kernel, initramfs, the
# partition layout) is the shared base's, the same in every role. Every lab VM boots SeaBIOS from a virtio disk.
BOOTS: dict[Role, str] = {role: WAYS[i % 2] for i, role in enumerate(Role)}
STICK_EXTRA = 512 * 1024 * 1024  # the emulated stick is this much larger than the image
# What a whole run's images, block maps, zstd copies and VM disks come to (21 GiB measured), plus a margin: they stay
# in the pytest temp dir until the run ends.
DISK_NEEDED = 24 * 2**30
# Modules that boot no VM (some build): first, so no VM competes with their builds for the two cores; in this
# order: the reproducibility test's clean builds (started in the background) are over before the Ctrl-C test
# debootstraps with the same .deb cache (apt's lock).
NO_VMS = ("test_image.py", "test_patched.py", "test_reproducible.py", "test_archive_moved.py", "test_interrupt.py")
# Modules with VMs of their own: they run (and are torn down) before the shared lab starts.
EARLY = ("test_galera.py", "test_drbd.py", "test_lab_cli.py")


def _phase(item: pytest.Item) -> tuple[int, int]:
    if "tests/image/" not in str(item.fspath):
        return 0, 0
    name = item.fspath.basename
    if name in NO_VMS:
        return 1, NO_VMS.index(name)
    if name == "test_boot.py":
        return 2, 0
    if name in EARLY:
        return 3, 0
    # The whole-cluster test kills and power-cycles the lab's VMs: it goes last.
    return (5 if name == "test_cluster.py" else 4), 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/image/" in str(item.fspath):
            item.add_marker(pytest.mark.image)
    # Two sets of VMs at once on two cores would only slow both: one phase after the other (a stable sort).
    items.sort(key=_phase)


@pytest.fixture(scope="session", autouse=True)
def enough_disk(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fail at once, saying why, rather than with "No space left" from a build minutes in."""
    base = tmp_path_factory.getbasetemp()
    free = shutil.disk_usage(base).free
    if free < DISK_NEEDED:
        pytest.fail(f"the image tests need {DISK_NEEDED / 2**30:.0f} GiB free under {base.parent}; only "
                    f"{free / 2**30:.1f} GiB is. Remove old runs' files (pytest-N folders there) or set TMPDIR to "
                    "a roomier disk", pytrace=False)


@dataclass
class Build:
    spec: Spec
    out: Path
    key: Path
    images: dict[Role, Path]
    manifest: dict[str, Any]
    log: str
    spec_path: Path
    ssh_key: Path


def run_build(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    return subprocess.run([sys.executable, "-m", "herd.build.cli", *args], text=True, capture_output=True,
                          env=env, **kwargs)


@dataclass
class PendingBuild:
    """A build started, not yet waited for; its output goes to files (a pipe nobody reads would fill and stop
    it)."""
    base: Path
    spec_path: Path
    key: Path
    ssh_key: Path
    public: str
    roles: list[Role] | None
    proc: subprocess.Popen[bytes]
    start: float

    def finish(self) -> Build:
        self.proc.wait()
        out = (self.base / "build.out").read_text(errors="replace")
        err = (self.base / "build.err").read_text(errors="replace")
        print(f"build of {self.spec_path}: {time.monotonic() - self.start:.0f} s", file=sys.stderr)
        assert self.proc.returncode == 0, f"build failed:\n{out}\n{err}"
        spec = load(self.spec_path)
        assert self.public in spec.ssh_keys
        release = self.base / "out" / spec.release
        manifest = json.loads((release / "manifest.json").read_text())
        images = {role: release / f"{spec.name}-{role.value}-{spec.release}.img" for role in self.roles or spec.roles}
        return Build(spec, release, self.key, images, manifest, out + err, self.spec_path, self.ssh_key)

    def stop(self) -> None:
        """SIGTERM (the builder undoes its steps), then SIGKILL if it has not gone within a minute."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_make_build(base: Path, spec_text: str, roles: list[Role] | None = None,
                     background: bool = False) -> PendingBuild:
    """Start building spec_text (plus an SSH key of the tests' own, so they can log in to the VMs as a user
    would) into base/out; only `roles` if given. background: at nice 19, so tests running meanwhile keep the CPU
    they need (the fast tiers, timing herdd in namespaces) and the build takes what they leave."""
    key = base / "cluster.key"
    ssh_key = base / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "herd-tests", "-f", str(ssh_key)],
                   check=True)
    public = ssh_key.with_suffix(".pub").read_text().strip()
    spec_path = base / "cluster.toml"
    spec_path.write_text(spec_text.replace("ssh_keys = [\n", f'ssh_keys = [\n    "{public}",\n', 1))
    role_args = [arg for role in roles or [] for arg in ("--role", role.value)]
    args = ["--spec", str(spec_path), "--out", str(base / "out"), "--key", str(key), *role_args]
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    with open(base / "build.out", "wb") as out, open(base / "build.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "herd.build.cli", *args], stdout=out, stderr=err, env=env,
                                stdin=subprocess.DEVNULL,
                                preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, 19)) if background else None)
    return PendingBuild(base, spec_path, key, ssh_key, public, roles, proc, time.monotonic())


def make_build(base: Path, spec_text: str, roles: list[Role] | None = None) -> Build:
    """Build spec_text into base/out (see start_make_build) and wait for it."""
    pending = start_make_build(base, spec_text, roles)
    try:
        return pending.finish()
    finally:
        pending.stop()  # interrupted while waiting (Ctrl-C, `tests/lab down`): the build goes too


# The labs' heartbeat timing, slower than the example's (1 s deadtime, which the namespace tests and benchmarks
# hold herdd to): six TCG-emulated VMs on two cores stall for up to a second or two each now and then, and a VIP
# holder that misses its lease lets go, so a failover in a lab is one the test asked for, not a starved one.
LAB_INTERVAL_MS, LAB_DEADTIME_MS = 500, 3000


def lab_timing(text: str) -> str:
    """A spec's text with the labs' heartbeat timing in [membership] (replaced, or added)."""
    for key, value in (("deadtime_ms", LAB_DEADTIME_MS), ("interval_ms", LAB_INTERVAL_MS)):
        text, found = re.subn(rf"^{key}\s*=\s*\d+", f"{key} = {value}", text, count=1, flags=re.M)
        if not found:
            text, found = re.subn(r"^\[membership\][^\n]*\n", rf"\g<0>{key} = {value}\n", text, count=1, flags=re.M)
        if not found:
            text += f"\n[membership]\n{key} = {value}\n"
    return text


SHARED_BUILD = pytest.StashKey[PendingBuild]()
CLEAN_BUILDS = pytest.StashKey[cleanbuilds.AfterSharedBuild]()


def _start_shared_build(config: pytest.Config) -> PendingBuild:
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    text = with_web2_claimed(lab_timing(EXAMPLE.read_text()))
    pending = start_make_build(factory.mktemp("build"), text, background=True)
    config.stash[SHARED_BUILD] = pending
    return pending


def pytest_collection_finish(session: pytest.Session) -> None:
    """The shared build starts as soon as the run knows it will need it, in the background, and the
    reproducibility test's two clean builds once it is done: the unit and netns tiers run meanwhile, leaving most
    of the two cores idle (minutes these builds would otherwise add to the run)."""
    if session.config.option.collectonly or os.geteuid() != 0:
        return
    if any("build" in getattr(item, "fixturenames", ()) for item in session.items):
        shared = _start_shared_build(session.config)
        if any(item.fspath.basename == "test_reproducible.py" for item in session.items):
            factory: pytest.TempPathFactory = session.config._tmp_path_factory  # type: ignore[attr-defined]
            session.config.stash[CLEAN_BUILDS] = cleanbuilds.AfterSharedBuild(
                shared.proc, shared.spec_path, shared.key, factory.mktemp("clean-builds"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    # A run cut short before the image tests: no build is left running.
    later = session.config.stash.get(CLEAN_BUILDS, None)
    if later is not None:
        later.stop()
    pending = session.config.stash.get(SHARED_BUILD, None)
    if pending is not None:
        pending.stop()


@pytest.fixture(scope="session")
def build(request: pytest.FixtureRequest) -> Build:
    """The example cluster, every role, with the labs' timing (LAB_*) and web2's slot left to be claimed (the
    shared lab boots a box with a MAC of its own there): shared by every image test."""
    pending = request.config.stash.get(SHARED_BUILD, None) or _start_shared_build(request.config)
    return pending.finish()


def boot_node(spec: Spec, role: Role) -> Node:
    """The node a role's boot test boots as: the last of its role the spec knows by MAC (a box booted alone has
    no one to claim a slot from)."""
    return [n for n in spec.nodes_of(role) if n.mac][-1]


@pytest.fixture(scope="session")
def boots(build: Build, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[Role, str], Boot]:
    """Every role booted its way (BOOTS), two VMs at a time; each waits for herdd's ready line."""
    base = tmp_path_factory.mktemp("boots")

    def one(role: Role, way: str) -> tuple[tuple[Role, str], Boot]:
        work = base / f"{role.value}-{way}"
        work.mkdir()
        image = build.images[role]
        if way == "usb":
            # A stick larger than the image, as in real life: the root must grow into it at first boot.
            stick = work / "stick.img"
            subprocess.run(["cp", "--sparse=always", str(image), str(stick)], check=True)
            with open(stick, "r+b") as f:
                f.truncate(image.stat().st_size + STICK_EXTRA)
            image = stick
        node = boot_node(build.spec, role)
        result = boot(image, way, work, r"herd: (\S+) (\S+) ready", node.mac)
        if way == "usb":
            os.unlink(image)
        return (role, way), result

    jobs = [(role, BOOTS[role]) for role in build.images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(lambda job: one(*job), jobs))


@pytest.fixture(scope="session")
def lab(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from .lab import start_lab

    # persistent: each VM boots its own copy of its role's image, so power cuts keep what was written. The box
    # booted as web2 has a MAC of its own: it claims the free slot at first boot (test_claiming.py).
    yield from start_lab(build, tmp_path_factory.mktemp("lab"), persistent=True, macs=CLAIMER)

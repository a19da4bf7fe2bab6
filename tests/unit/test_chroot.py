"""in_chroot writes policy-rc.d (and, for apt, the host's resolv.conf) into the tree as the host's root: never
through a symlink planted in the tree, and removes policy-rc.d afterwards without following one either."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from herd.build import chroot
from herd.build.chroot import in_chroot
from herd.build.intree import TreeError
from herd.build.run import CommandError

from .umask import umask


def make_tree(tmp_path: Path) -> tuple[Path, Path]:
    """(a tree with usr/sbin and etc, a folder beside it standing for the host's own files)."""
    tree, host = tmp_path / "tree", tmp_path / "host"
    for d in ("usr/sbin", "etc", "var/cache", "proc", "sys", "dev"):
        (tree / d).mkdir(parents=True)
    host.mkdir()
    return tree, host


def fake_run(monkeypatch: pytest.MonkeyPatch, during: Callable[[], None] = lambda: None) -> list[Sequence[object]]:
    """Replace the command itself; `during` runs in its place. Returns the commands run."""
    calls: list[Sequence[object]] = []

    def run(argv: Sequence[object], **kwargs: object) -> str:
        calls.append(argv)
        during()
        return ""

    monkeypatch.setattr(chroot, "run", run)
    return calls


def test_policy_rc_d_is_there_while_the_command_runs_and_gone_after(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tree, _ = make_tree(tmp_path)
    seen: list[tuple[bool, bytes, int]] = []
    policy = tree / "usr/sbin/policy-rc.d"
    calls = fake_run(monkeypatch, lambda: seen.append(
        (policy.is_symlink(), policy.read_bytes(), stat.S_IMODE(policy.lstat().st_mode))))
    in_chroot(tree, None, "true")
    assert len(calls) == 1
    ((was_link, script, mode),) = seen
    assert not was_link and mode == 0o755
    assert script.startswith(b"#!/bin/sh\n") and script.endswith(b"\nexit 101\n")  # 101: "not allowed"
    assert not os.path.lexists(policy)


def test_a_symlink_at_policy_rc_d_is_replaced_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree, host = make_tree(tmp_path)
    victim = host / "shadow"
    victim.write_text("host's own\n")
    (tree / "usr/sbin/policy-rc.d").symlink_to(victim)
    policy = tree / "usr/sbin/policy-rc.d"
    seen: list[tuple[bool, bytes]] = []
    fake_run(monkeypatch, lambda: seen.append((policy.is_symlink(), policy.read_bytes())))
    in_chroot(tree, None, "true")
    ((was_link, script),) = seen
    assert not was_link and b"exit 101" in script
    assert victim.read_text() == "host's own\n"
    assert not os.path.lexists(policy)


@pytest.mark.parametrize("link", ["usr/sbin", "usr", "etc", "var/cache"])
def test_a_directory_leading_out_of_the_tree_is_refused_before_anything_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str) -> None:
    tree, host = make_tree(tmp_path)
    (tree / link).rename(tmp_path / "moved")
    (tree / link).symlink_to(host)  # absolute: from outside the chroot it is the host's folder
    calls = fake_run(monkeypatch)
    with pytest.raises(TreeError, match="outside the image tree"):
        in_chroot(tree, tmp_path / "debs", "apt-get install -y x")
    assert calls == []
    assert list(host.iterdir()) == []


def test_removing_policy_rc_d_never_follows_a_link_the_command_made(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that turns usr/sbin into a link to (what outside the chroot is) a host folder: the host's file of
    that name stays, and the build stops."""
    tree, host = make_tree(tmp_path)
    (host / "policy-rc.d").write_text("host's own\n")

    def swap() -> None:
        (tree / "usr/sbin").rename(tmp_path / "moved")
        (tree / "usr/sbin").symlink_to(host)

    fake_run(monkeypatch, swap)
    with pytest.raises(TreeError, match="outside the image tree"):
        in_chroot(tree, None, "true")
    assert (host / "policy-rc.d").read_text() == "host's own\n"


def test_the_hosts_resolv_conf_replaces_a_link_in_the_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree, host = make_tree(tmp_path)
    victim = host / "resolv.conf"
    victim.write_text("host's own\n")
    (tree / "etc/resolv.conf").symlink_to(victim)
    fake_run(monkeypatch)
    in_chroot(tree, tmp_path / "debs", "apt-get install -y x")
    resolv = tree / "etc/resolv.conf"
    assert not resolv.is_symlink()
    assert resolv.read_bytes() == Path("/etc/resolv.conf").read_bytes()
    assert stat.S_IMODE(resolv.stat().st_mode) == 0o644
    assert victim.read_text() == "host's own\n"


@pytest.mark.root
def test_the_real_chroot_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    """The whole thing, the private namespace and its mounts included, on a tree with no programs: chroot fails,
    but only after policy-rc.d was written, and the host's file the planted link named is untouched."""
    tree, host = make_tree(tmp_path)
    victim = host / "shadow"
    victim.write_text("host's own\n")
    (tree / "usr/sbin/policy-rc.d").symlink_to(victim)
    with pytest.raises(CommandError):
        in_chroot(tree, None, "true")
    assert victim.read_text() == "host's own\n"
    assert not os.path.lexists(tree / "usr/sbin/policy-rc.d")


def runnable_tree(tmp_path: Path) -> Path:
    """make_tree's, with the two programs in_chroot runs in it (env, and dash as /bin/sh) and their libraries."""
    tree, _ = make_tree(tmp_path)
    for program, inside in (("/usr/bin/env", "usr/bin/env"), ("/bin/dash", "bin/sh")):
        libraries = re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", program], capture_output=True, text=True,
                                                              check=True).stdout)
        for host_path, tree_path in [(program, inside), *((lib, lib.lstrip("/")) for lib in libraries)]:
            (tree / tree_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(host_path, tree / tree_path)
    return tree


@pytest.mark.root
def test_the_command_runs_with_umask_022_and_policy_rc_d_whatever_the_builders_umask(tmp_path: Path) -> None:
    """Files made in the chroot (dpkg's maintainer scripts, herdd's unpacking) go into every image."""
    tree = runnable_tree(tmp_path)
    with umask(0o002):
        output = in_chroot(tree, None, 'umask; /usr/sbin/policy-rc.d || echo "policy-rc.d: $?"')
    assert output.splitlines() == ["0022", "policy-rc.d: 101"]
    assert not os.path.lexists(tree / "usr/sbin/policy-rc.d")


@pytest.mark.root
def test_with_debs_the_shared_cache_is_mounted_in_the_tree_and_gone_after(tmp_path: Path) -> None:
    tree = runnable_tree(tmp_path)
    output = in_chroot(tree, tmp_path / "debs", "[ -d /var/cache/apt/archives/partial ] && echo cache; "
                       "[ -s /etc/resolv.conf ] && echo dns")
    assert output.splitlines() == ["cache", "dns"]
    assert (tmp_path / "debs/partial").is_dir()
    assert list((tree / "var/cache/apt/archives").iterdir()) == []  # a mount, in the command's namespace only

"""debootstrap's command line: the base tree is made only from a Release file signed by a key of the host's
Debian archive keyring, never unchecked when the keyring is missing; the keyring is a host requirement."""

from __future__ import annotations

from pathlib import Path

from herd.build.recipes import host_requirements
from herd.build.steps.debootstrap import debootstrap_command
from herd.spec import Debian

PROJECT = Path(__file__).resolve().parents[2]


def test_debootstrap_refuses_an_unsigned_or_unchecked_release(tmp_path: Path) -> None:
    argv = [str(a) for a in debootstrap_command(Debian(), ["systemd", "udev"], tmp_path / "debs", tmp_path / "t")]
    # Without it debootstrap only warns and goes on unchecked when the keyring is missing (a mirror is given).
    assert "--force-check-gpg" in argv
    assert "--no-check-gpg" not in argv
    assert argv[0] == "debootstrap" and argv[-3:] == ["bookworm", str(tmp_path / "t"), Debian().mirror]
    assert f"--cache-dir={tmp_path / 'debs'}" in argv and "--include=systemd,udev" in argv


def test_the_hosts_debian_keyring_and_gpgv_are_host_requirements() -> None:
    requirements = dict(host_requirements(PROJECT / "image/host-packages.txt"))
    # debootstrap's scripts for Debian suites name this keyring; gpgv checks the Release file's signature with it.
    assert requirements["/usr/share/keyrings/debian-archive-keyring.gpg"] == "debian-archive-keyring"
    assert requirements["gpgv"] == "gpgv"

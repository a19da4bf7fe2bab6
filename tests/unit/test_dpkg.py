"""Reading a tree's dpkg status: which kernel an upgrade left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.build.dpkg import installed_packages, stale_compressed_modules, stale_kernels


def stanza(name: str, version: str, depends: str = "", status: str = "install ok installed") -> str:
    return (f"Package: {name}\nStatus: {status}\nArchitecture: amd64\nVersion: {version}\n"
            + (f"Depends: {depends}\n" if depends else "") + "Description: x\n continued\n")


UPGRADED = "\n".join([
    stanza("linux-image-amd64", "6.1.192-3", "linux-image-6.1.0-44-amd64 (= 6.1.192-3)"),
    stanza("linux-image-6.1.0-37-amd64", "6.1.176-1", "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) "
           "| linux-initramfs-tool"),
    stanza("linux-image-6.1.0-44-amd64", "6.1.192-3", "kmod, linux-base (>= 4.3~)"),
    stanza("linux-image-6.1.0-30-amd64", "6.1.150-1", status="deinstall ok config-files"),
    stanza("linux-base", "4.9"),
])


def test_the_kernel_the_metapackage_wants_and_those_left_behind() -> None:
    assert stale_kernels(UPGRADED, "linux-image-amd64") == ("linux-image-6.1.0-44-amd64",
                                                            ["linux-image-6.1.0-37-amd64"])
    fresh = "\n\n".join(s for s in UPGRADED.split("\n\n") if "6.1.0-37" not in s)
    assert stale_kernels(fresh, "linux-image-amd64") == ("linux-image-6.1.0-44-amd64", [])
    assert "linux-image-6.1.0-30-amd64" not in installed_packages(UPGRADED)  # only config files left: not there


def test_a_recipe_whose_kernel_is_not_a_metapackage_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not depend on one kernel image"):
        stale_kernels(UPGRADED, "linux-base")
    with pytest.raises(ValueError, match="not installed"):
        stale_kernels(UPGRADED, "linux-image-cloud-amd64")


def test_modules_compressed_from_an_older_build_of_the_same_kernel_are_stale(tmp_path: Path) -> None:
    modules = tmp_path / "usr/lib/modules/6.1.0-44-amd64"
    for rel in ("kernel/net/kept.ko.xz", "kernel/net/gone.ko.xz", "kernel/fs/new.ko", "kernel/fs/new.ko.xz",
                "modules.dep"):
        (modules / rel).parent.mkdir(parents=True, exist_ok=True)
        (modules / rel).write_bytes(b"x")
    # bookworm's kernel packages list /lib/modules (usrmerge's symlink), trixie's /usr/lib/modules
    for prefix in ("/lib/modules", "/usr/lib/modules"):
        listed = [f"{prefix}/6.1.0-44-amd64", f"{prefix}/6.1.0-44-amd64/kernel/net/kept.ko",
                  f"{prefix}/6.1.0-44-amd64/kernel/fs/new.ko"]
        assert stale_compressed_modules(modules, "6.1.0-44-amd64", listed) == [modules / "kernel/net/gone.ko.xz"]

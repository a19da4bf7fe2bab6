"""Writing into a root tree from the build host: never through a symlink, never outside the tree."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path, PurePosixPath

import pytest

from herd.build import intree
from herd.build.intree import TreeError, safe_path, write_file
from herd.build.overlay import OverlayFile, install

from .umask import umask


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755, 0o1777, 0o4755])
def test_write_file_modes_are_exact(tmp_path: Path, mode: int) -> None:
    write_file(tmp_path, PurePosixPath("deep/er/file"), b"x", mode)
    assert stat.S_IMODE((tmp_path / "deep/er/file").stat().st_mode) == mode


def test_symlink_at_destination_is_replaced_not_followed(tmp_path: Path) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "etc").mkdir(parents=True)
    outside.mkdir()
    victim = outside / "hostname"
    victim.write_text("host's own\n")
    (tree / "etc/hostname").symlink_to(victim)  # absolute, pointing out of the tree
    (tree / "etc/dangling").symlink_to(outside / "nothing-here")
    write_file(tree, PurePosixPath("etc/hostname"), b"demo-web\n", 0o644)
    write_file(tree, PurePosixPath("etc/dangling"), b"x\n", 0o644)
    assert not (tree / "etc/hostname").is_symlink()
    assert (tree / "etc/hostname").read_bytes() == b"demo-web\n"
    assert victim.read_text() == "host's own\n"
    assert not (tree / "etc/dangling").is_symlink() and not (outside / "nothing-here").exists()


def escaping_tree(tmp_path: Path, link: str, target: str | Path) -> Path:
    tree = tmp_path / "tree"
    (tree / Path(link).parent).mkdir(parents=True, exist_ok=True)
    (tree / link).symlink_to(target)
    return tree


@pytest.mark.parametrize("relative", [False, True], ids=["absolute-link", "relative-link"])
def test_parent_symlink_out_of_the_tree_is_refused(tmp_path: Path, relative: bool) -> None:
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    tree = escaping_tree(tmp_path, "etc", "../host-etc" if relative else host_etc)
    for rel in ("etc/passwd", "etc/ssh/sshd_config.d/herd.conf"):
        with pytest.raises(TreeError, match="outside the image tree"):
            write_file(tree, PurePosixPath(rel), b"pwned\n", 0o644)
        with pytest.raises(TreeError):
            safe_path(tree, PurePosixPath(rel))
    assert list(host_etc.iterdir()) == []


def test_parent_symlink_to_the_hosts_etc_is_refused(tmp_path: Path) -> None:
    # What a Debian tree holds: absolute links meant for inside the chroot, which point at the host outside it.
    tree = escaping_tree(tmp_path, "etc", "/etc")
    name = f"herd-unit-test-{uuid.uuid4().hex}"
    try:
        with pytest.raises(TreeError, match="outside the image tree"):
            write_file(tree, PurePosixPath(f"etc/{name}"), b"pwned\n", 0o644)
        with pytest.raises(TreeError):
            install(tree, [OverlayFile(PurePosixPath(f"etc/{name}"), b"pwned\n", 0o644)])
        assert not Path("/etc", name).exists()
        assert not Path("/etc", f".{name}.herd-tmp").exists()
    finally:
        for leftover in (Path("/etc", name), Path("/etc", f".{name}.herd-tmp")):
            if leftover.exists() and not leftover.is_symlink():
                leftover.unlink()


def test_dot_dot_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    with pytest.raises(TreeError):
        safe_path(tree, PurePosixPath("../escaped"))
    with pytest.raises(TreeError):
        write_file(tree, PurePosixPath("etc/../../escaped"), b"x", 0o644)
    assert not (tmp_path / "escaped").exists()


def test_safe_path_allows_links_that_stay_inside(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "lib").symlink_to("usr/lib")  # merged /usr, relative: stays inside
    assert safe_path(tree, PurePosixPath("lib/x.so")) == (tree / "usr/lib/x.so").resolve()
    assert safe_path(tree, PurePosixPath("top")) == tree.resolve() / "top"


def test_folders_made_for_a_file_are_0755_whatever_the_umask(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir(mode=0o750)  # already there: left as it is

    def modes() -> dict[str, int]:
        return {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")
                if p.is_dir()}

    with umask(0o002):
        write_file(tmp_path, PurePosixPath("etc/ssh/sshd_config.d/herd.conf"), b"x", 0o644)
        assert modes() == {"etc": 0o750, "etc/ssh": 0o755, "etc/ssh/sshd_config.d": 0o755}
        made = intree.make_dirs(tmp_path, PurePosixPath("var/lib/apt/lists/partial"))
    assert made == (tmp_path / "var/lib/apt/lists/partial").resolve()
    assert {rel: mode for rel, mode in modes().items() if rel.startswith("var")} == dict.fromkeys(
        ["var", "var/lib", "var/lib/apt", "var/lib/apt/lists", "var/lib/apt/lists/partial"], 0o755)


def test_make_dirs_never_makes_a_folder_through_a_link_out_of_the_tree(tmp_path: Path) -> None:
    tree = escaping_tree(tmp_path, "var", tmp_path / "host")
    (tmp_path / "host").mkdir()
    with pytest.raises(TreeError, match="outside the image tree"):
        intree.make_dirs(tree, PurePosixPath("var/lib/apt"))
    assert list((tmp_path / "host").iterdir()) == []


def test_remove_takes_a_link_never_what_it_names_and_refuses_a_parent_out_of_the_tree(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "grub").mkdir(parents=True)
    (host / "grub/normal.mod").write_text("the host's\n")
    tree = tmp_path / "tree"
    (tree / "boot/grub").mkdir(parents=True)
    (tree / "boot/grub/i386-pc").symlink_to(host / "grub")
    (tree / "boot/grub/x86_64-efi").mkdir()
    (tree / "boot/grub/x86_64-efi/normal.mod").write_text("the tree's\n")
    intree.remove(tree, PurePosixPath("boot/grub/i386-pc"))
    intree.remove(tree, PurePosixPath("boot/grub/x86_64-efi"))
    intree.remove(tree, PurePosixPath("boot/grub/nothing"))
    assert list((tree / "boot/grub").iterdir()) == []
    assert (host / "grub/normal.mod").read_text() == "the host's\n"
    (tree / "boot/grub").rmdir()
    (tree / "boot/grub").symlink_to(host)
    with pytest.raises(TreeError, match="outside the image tree"):
        intree.remove(tree, PurePosixPath("boot/grub/grub"))
    with pytest.raises(TreeError, match="outside the image tree"):
        intree.real_dir(tree, PurePosixPath("boot/grub"))
    assert (host / "grub/normal.mod").read_text() == "the host's\n"

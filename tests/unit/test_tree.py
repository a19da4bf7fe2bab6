"""The tree step deletes and links inside a role's tree as the host's root: a folder on the way that is a link
out of the tree (a Debian tree's links are absolute: from the host they name the host's own folders) stops the
build, and the host's files stay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herd.build.intree import TreeError
from herd.build.steps.tree import clean


def host_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    host = tmp_path / "host"
    for rel, content in files.items():
        (host / rel).parent.mkdir(parents=True, exist_ok=True)
        (host / rel).write_text(content)
    return host


def listing(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("link", "files"), [
    ("etc/ssh", {"ssh_host_ed25519_key": "the host's key\n", "sshd_config": "x\n"}),
    ("etc", {"ssh/ssh_host_rsa_key": "the host's key\n", "machine-id": "host\n"}),
    ("var/log", {"syslog.log": "x\n", "apt/history.log": "x\n"}),
    ("usr/share/doc", {"bash/README": "x\n", "bash/copyright": "x\n"}),
    ("usr/share/locale", {"de/LC_MESSAGES/bash.mo": "x\n"}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_clean_never_deletes_through_a_link_out_of_the_tree(tmp_path: Path, link: str, files: dict[str, str]) -> None:
    host = host_folder(tmp_path, files)
    tree = tmp_path / "tree"
    (tree / link).parent.mkdir(parents=True)
    (tree / link).symlink_to(host)  # absolute
    with pytest.raises(TreeError, match="outside the image tree"):
        clean(tree)
    assert listing(host) == files


def test_clean_deletes_a_link_in_its_list_not_what_it_names(tmp_path: Path) -> None:
    host = host_folder(tmp_path, {"shiv/x.py": "x\n", "history": "x\n"})
    tree = tmp_path / "tree"
    (tree / "root").mkdir(parents=True)
    (tree / "root/.bash_history").symlink_to(host / "history")
    (tree / "var/tmp").mkdir(parents=True)
    (tree / "var/tmp/cache").symlink_to(host / "shiv")
    (tree / "var/tmp/mine").mkdir()
    clean(tree)
    assert not os.path.lexists(tree / "root/.bash_history") and not os.listdir(tree / "var/tmp")
    assert listing(host) == {"history": "x\n", "shiv/x.py": "x\n"}
    assert (tree / "etc/machine-id").read_bytes() == b""

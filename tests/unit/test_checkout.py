"""Reading the checkout for what goes into an image or herd.pyz (the overlay, examples/site, herd's sources): a
symlink is followed only inside the checkout, and never to a file the copy leaves out; a refused checkout
leaves nothing half-written. Each consumer is tried with a link to a stand-in for /etc/shadow."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from herd.build.checkout import CheckoutError, copy, read, sources, walk
from herd.build.make_pyz import stage_data
from herd.build.steps.tree import SITE, site_files
from herd.build.steps.zipapp import copy_sources

from .umask import umask

SECRET = "root:$y$j9T$the-hosts-password-hash:19000:0:99999:7:::\n"


def project_with(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """(a project folder holding `files`, a host secret outside it)."""
    secret = tmp_path / "host/shadow"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    project = tmp_path / "project"
    for rel, content in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(content)
    return project, secret


def everything_under(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()) if folder.exists() else ""


# ---------------------------------------------------------------------------------------------------------
# The walk itself


def test_plain_files_and_links_inside_are_walked(tmp_path: Path) -> None:
    project, _ = project_with(tmp_path, {"site/index.html": "hi\n", "site/sub/a.css": "a\n", "shared/b.js": "b\n"})
    (project / "site/copy.html").symlink_to("index.html")
    (project / "site/lib").symlink_to("../shared")  # a folder, elsewhere in the project
    found = {str(f.rel): read(project, f.path) for f in walk(project, project / "site")}
    assert found == {"index.html": b"hi\n", "sub/a.css": b"a\n", "copy.html": b"hi\n", "lib/b.js": b"b\n"}
    assert [str(f.rel) for f in sources(project, ["site/sub", "shared"])] == ["site/sub/a.css", "shared/b.js"]


@pytest.mark.parametrize("link", ["site/shadow", "site/deep/er/shadow"])
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_link_out_of_the_checkout_is_refused_naming_it(tmp_path: Path, link: str, relative: bool) -> None:
    project, secret = project_with(tmp_path, {"site/index.html": "hi\n"})
    (project / link).parent.mkdir(parents=True, exist_ok=True)
    (project / link).symlink_to(os.path.relpath(secret, (project / link).parent) if relative else secret)
    with pytest.raises(CheckoutError) as info:
        walk(project, project / "site")
    message = str(info.value)
    assert message.startswith(f"{project / link} is a symlink to {secret}, outside {project}")
    assert "replace the link with a copy of what it should hold, or remove it" in message
    with pytest.raises(CheckoutError):
        read(project, project / link)


def test_a_folder_link_out_of_the_checkout_is_refused(tmp_path: Path) -> None:
    project, secret = project_with(tmp_path, {"site/index.html": "hi\n"})
    (project / "site/ssh").symlink_to(secret.parent)
    expected = f"{project / 'site/ssh'} is a symlink to {secret.parent}, outside"
    with pytest.raises(CheckoutError, match=re.escape(expected)):
        walk(project, project / "site")
    (project / "site/ssh").unlink()
    (project / "site").rename(tmp_path / "elsewhere")
    (project / "site").symlink_to(tmp_path / "elsewhere")  # the walked folder itself
    with pytest.raises(CheckoutError, match="outside"):
        walk(project, project / "site")


def test_a_link_to_what_the_copy_leaves_out_is_refused(tmp_path: Path) -> None:
    project, _ = project_with(tmp_path, {"examples/cluster.toml": "x\n", "examples/cluster.key": "the key\n"})
    (project / "examples/motd").symlink_to("cluster.key")
    with pytest.raises(CheckoutError, match=r"motd is a symlink to .*cluster\.key, which the build leaves out"):
        sources(project, ["examples"], lambda name: name.endswith(".key"))


def test_dangling_links_loops_and_fifos_are_refused(tmp_path: Path) -> None:
    project, _ = project_with(tmp_path, {"site/index.html": "hi\n"})
    (project / "site/gone").symlink_to("nothing-here")
    with pytest.raises(CheckoutError, match="does not exist"):
        walk(project, project / "site")
    (project / "site/gone").unlink()
    (project / "site/again").symlink_to(".")
    with pytest.raises(CheckoutError, match="a loop"):
        walk(project, project / "site")
    (project / "site/again").unlink()
    os.mkfifo(project / "site/fifo")
    with pytest.raises(CheckoutError, match="neither a file nor a folder"):
        walk(project, project / "site")
    with pytest.raises(CheckoutError, match="not a regular file"):
        read(project, project / "site/fifo")  # refused without blocking on the FIFO


def test_copy_checks_everything_before_writing_anything(tmp_path: Path) -> None:
    project, secret = project_with(tmp_path, {"a/one": "1\n", "z/two": "2\n"})
    (project / "z/three").symlink_to(secret)  # in the second folder: the first was fine
    with pytest.raises(CheckoutError):
        copy(project, ["a", "z"], tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    (project / "z/three").unlink()
    copy(project, ["a", "z"], tmp_path / "dest")
    assert everything_under(tmp_path / "dest") == "1\n2\n"


# ---------------------------------------------------------------------------------------------------------
# Each place the build copies the checkout


def test_the_example_site_refuses_a_link_out_of_the_checkout(tmp_path: Path) -> None:
    project, secret = project_with(tmp_path, {"examples/site/index.html": "hi\n"})
    assert [(f.path, f.data) for f in site_files(project)] == [(SITE / "index.html", b"hi\n")]
    (project / "examples/site/id_rsa").symlink_to(secret)
    with pytest.raises(CheckoutError, match=r"id_rsa is a symlink to .* outside"):
        site_files(project)
    assert site_files(tmp_path / "no-project") == []


def test_make_pyz_refuses_a_link_out_of_the_checkout_and_stages_nothing(tmp_path: Path) -> None:
    project, secret = project_with(tmp_path, {"image/base.toml": "x\n", "overlay/common/x.j2": "x\n",
                                              "examples/cluster.toml": "x\n", "examples/site/index.html": "x\n"})
    herdd = tmp_path / "herdd.pyz"
    herdd.write_text("zip")
    (project / "overlay/common/etc").mkdir()
    (project / "overlay/common/etc/shadow").symlink_to(secret)
    with pytest.raises(CheckoutError, match="outside"):
        stage_data(project, tmp_path / "bundle", herdd)
    assert not (tmp_path / "bundle").exists()


def test_make_pyz_refuses_a_link_to_the_cluster_key(tmp_path: Path) -> None:
    project, _ = project_with(tmp_path, {"image/base.toml": "x\n", "overlay/common/x.j2": "x\n",
                                         "examples/cluster.toml": "x\n", "examples/cluster.key": "the key\n"})
    (project / "examples/notes.txt").symlink_to("cluster.key")
    with pytest.raises(CheckoutError, match="which the build leaves out"):
        stage_data(project, tmp_path / "bundle", tmp_path / "herdd.pyz")
    assert "the key" not in everything_under(tmp_path / "bundle")


def test_herds_sources_refuse_a_link_out_of_the_checkout(tmp_path: Path) -> None:
    project, secret = project_with(tmp_path, {"pyproject.toml": "x\n", "README.md": "x\n",
                                              "src/herd/__init__.py": "x\n"})
    (project / "src/herd/data.txt").symlink_to(secret)
    with pytest.raises(CheckoutError, match="outside"):
        copy_sources(project, tmp_path / "copy")
    assert SECRET not in everything_under(tmp_path / "copy")


# ---------------------------------------------------------------------------------------------------------
# Modes: only whether the owner may run a file counts, never the checkout's group and other bits


def loose_project(tmp_path: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    """A checkout made with umask 002: files 0664 (0775 if executable), folders 0775."""
    project, _ = project_with(tmp_path, files)
    for path in project.rglob("*"):
        rel = str(path.relative_to(project))
        path.chmod(0o775 if path.is_dir() or rel in executable else 0o664)
    return project


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in sorted(folder.rglob("*"))}


def test_walked_files_get_0644_or_0755_whatever_the_checkouts_modes(tmp_path: Path) -> None:
    project = loose_project(tmp_path, {"site/a": "", "site/run": "", "site/private": ""}, ("site/run",))
    (project / "site/private").chmod(0o600)
    (project / "site/setuid").write_text("")
    (project / "site/setuid").chmod(0o4775)
    assert {str(f.rel): f.mode for f in walk(project, project / "site")} == {
        "a": 0o644, "run": 0o755, "private": 0o644, "setuid": 0o755}


def test_a_copy_has_the_image_modes_whatever_the_umask(tmp_path: Path) -> None:
    project = loose_project(tmp_path, {"src/herd/__init__.py": "", "src/herd/tool": "", "README.md": ""},
                            ("src/herd/tool",))
    with umask(0o002):
        copy(project, ["src", "README.md"], tmp_path / "dest")
    assert stat.S_IMODE((tmp_path / "dest").stat().st_mode) == 0o755
    assert modes(tmp_path / "dest") == {"README.md": 0o644, "src": 0o755, "src/herd": 0o755,
                                        "src/herd/__init__.py": 0o644, "src/herd/tool": 0o755}


def test_the_example_site_gets_the_image_modes(tmp_path: Path) -> None:
    project = loose_project(tmp_path, {"examples/site/index.html": "", "examples/site/cgi/run.php": ""},
                            ("examples/site/cgi/run.php",))
    assert {str(f.path): f.mode for f in site_files(project)} == {
        "usr/share/herd/site/cgi/run.php": 0o755, "usr/share/herd/site/index.html": 0o644}


def test_make_pyz_stages_the_image_modes(tmp_path: Path) -> None:
    project = loose_project(tmp_path, {"image/base.toml": "", "overlay/common/usr/lib/herd/growroot": "",
                                       "overlay/common/etc/motd.j2": "", "examples/cluster.toml": ""},
                            ("overlay/common/usr/lib/herd/growroot",))
    herdd = tmp_path / "herdd.pyz"
    herdd.write_text("zip")
    with umask(0o002):
        stage_data(project, tmp_path / "bundle", herdd)
    staged = modes(tmp_path / "bundle")
    assert staged.pop("overlay/common/usr/lib/herd/growroot") == 0o755
    assert staged.pop("herdd.pyz") == stat.S_IMODE(herdd.stat().st_mode)  # the zipapp's own, set by the tree step
    assert {path for path, mode in staged.items() if mode not in (0o644, 0o755)} == set()
    assert {path: staged[path] for path in ("image", "overlay/common/etc", "image/base.toml")} == {
        "image": 0o755, "overlay/common/etc": 0o755, "image/base.toml": 0o644}


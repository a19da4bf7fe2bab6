"""/etc/herd/release: parsing what the builder writes (and the one-line files of older images), the build date,
the release in a rendered overlay with another epoch, herdd's status, and where SOURCE_DATE_EPOCH comes from."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from herd import release
from herd.build.epoch import EpochError, choose, git_commit_time, source_date_epoch
from herd.build.overlay import render, template_context
from herd.build.plan import DEFAULT_EPOCH
from herd.spec import Role, parse

from .test_plan import plan_for

PROJECT = Path(__file__).resolve().parents[2]


def test_parse_key_value_lines() -> None:
    text = "# comment\nRELEASE=2026.11.0\n\nCLUSTER = demo \nHERD_VERSION=0.1.0\nEMPTY=\n"
    assert release.parse(text) == {"RELEASE": "2026.11.0", "CLUSTER": "demo", "HERD_VERSION": "0.1.0",
                                   "EMPTY": ""}


def test_parse_a_bare_release_line_of_older_images() -> None:
    assert release.parse("2026.11.0\n") == {"RELEASE": "2026.11.0"}
    assert release.parse("") == {}
    assert release.parse("a\nb\n") == {}  # not one bare line: nothing to go on


def test_read_missing_file_is_none(tmp_path: Path) -> None:
    assert release.read(tmp_path / "release") is None
    (tmp_path / "release").write_text("RELEASE=1.2\n")
    assert release.read(tmp_path / "release") == {"RELEASE": "1.2"}


def test_installed_reads_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "release"
    path.write_text("RELEASE=7.0+rc1\nROLE=web\n")
    monkeypatch.setattr(release, "RELEASE_FILE", path)
    release.installed.cache_clear()
    try:
        assert release.installed() == "7.0+rc1"
        path.unlink()
        assert release.installed() == "7.0+rc1"  # cached: the image does not change under herdd
        release.installed.cache_clear()
        assert release.installed() is None
    finally:
        release.installed.cache_clear()


def test_build_date_is_utc() -> None:
    assert release.build_date(0) == "1970-01-01T00:00:00Z"
    assert release.build_date(DEFAULT_EPOCH) == "2023-11-14T22:13:20Z"


def test_rendered_release_file_follows_the_plan() -> None:
    plan = plan_for(release="2027.1.0-rc1", roles=[Role.WEB])
    plan = type(plan)(**{**plan.__dict__, "source_date_epoch": 1790000000})
    files = {str(f.path): f for f in render(PROJECT / "overlay", "web",
                                            template_context(plan, plan.roles[0], "6.1.0-test"))}
    fields = release.parse(files["etc/herd/release"].data.decode())
    assert fields["RELEASE"] == "2027.1.0-rc1"
    assert fields["ROLE"] == "web" and fields["CLUSTER"] == plan.spec.name
    assert fields["SOURCE_DATE_EPOCH"] == "1790000000"
    assert fields["BUILD_DATE"] == "2026-09-21T14:13:20Z"
    assert files["etc/herd/release"].mode & 0o777 == 0o644


def test_daemon_status_reports_the_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from herd.daemon import loop
    from herd.daemon.state import StateDir

    spec = parse((PROJECT / "examples/cluster.toml").read_text())
    web1 = spec.node_named("web1")
    assert web1 is not None
    config = loop.Config(spec=spec, me=web1, key=b"k" * 32, generation=1, socket_path=tmp_path / "sock",
                         metrics_port=None, state=StateDir(tmp_path / "state"))
    daemon = loop.Daemon(config)
    monkeypatch.setattr(loop, "installed_release", lambda: "2026.11.0")
    assert daemon.status()["release"] == "2026.11.0"
    monkeypatch.setattr(loop, "installed_release", lambda: None)
    assert daemon.status()["release"] is None


# -- SOURCE_DATE_EPOCH ---------------------------------------------------------------------------------------

def test_choose_prefers_the_environment_then_git_then_mtime() -> None:
    assert choose("1790000000", 1, 2.5) == (1790000000, "SOURCE_DATE_EPOCH")
    assert choose(None, 1700000001, 2.5) == (1700000001, "the spec's last git commit")
    assert choose(None, None, 1234.9) == (1234, "the spec file's modification time")


@pytest.mark.parametrize("value", ["", "soon", "-1", "1.5", "\u00b2", "4294967296", "99999999999999999999"])
def test_a_bad_environment_value_is_refused(value: str) -> None:
    with pytest.raises(EpochError, match=r"SOURCE_DATE_EPOCH.*at most 4294967295"):
        choose(value, None, 0)
    assert choose("4294967295", None, 0) == (4294967295, "SOURCE_DATE_EPOCH")


def git(repo: Path, *args: str, when: int = 1750000000) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)


def test_git_commit_time_of_a_tracked_clean_spec(tmp_path: Path) -> None:
    spec = tmp_path / "site.toml"
    spec.write_text("x = 1\n")
    assert git_commit_time(spec) is None  # not a repository
    git(tmp_path, "init", "-q")
    assert git_commit_time(spec) is None  # untracked
    git(tmp_path, "add", "site.toml")
    git(tmp_path, "commit", "-q", "-m", "spec", when=1750000000)
    (tmp_path / "other").write_text("y")
    git(tmp_path, "add", "other")
    git(tmp_path, "commit", "-q", "-m", "later, another file", when=1760000000)
    assert git_commit_time(spec) == 1750000000
    assert source_date_epoch(spec, {}) == (1750000000, "the spec's last git commit")
    spec.write_text("x = 2\n")
    os.utime(spec, (1770000000, 1770000000))
    assert git_commit_time(spec) is None  # modified since
    assert source_date_epoch(spec, {}) == (1770000000, "the spec file's modification time")
    assert source_date_epoch(spec, {"SOURCE_DATE_EPOCH": "5"}) == (5, "SOURCE_DATE_EPOCH")


def test_bad_epoch_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from herd.build.cli import EXIT_BAD_INPUT, main

    spec = tmp_path / "cluster.toml"
    spec.write_text((PROJECT / "examples/cluster.toml").read_text())
    parse(spec.read_text())
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["--spec", str(spec), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")]) == (
        EXIT_BAD_INPUT)
    assert "SOURCE_DATE_EPOCH='yesterday'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "version"), [
    ("2026.11.0", (2026, 11, 0)), ("2026.12.1-hotfix", (2026, 12, 1)), ("7.0+rc1", (7, 0)), ("3", (3,)),
    ("2026.01.0", (2026, 1, 0)), ("1.2.", (1, 2)), ("10_beta", (10,)),
])
def test_a_releases_version_is_the_numbers_it_starts_with(name: str, version: tuple[int, ...]) -> None:
    assert release.version_of(name) == version


def test_versions_compare_number_by_number() -> None:
    order = ["2026.9.0", "2026.11", "2026.11.0", "2026.11.9", "2026.11.10", "2026.12.0", "2027.1.0"]
    assert sorted(order, key=release.version_of) == order
    assert release.version_of("7.0+rc1") == release.version_of("7.0-hotfix")  # the rest only names it


@pytest.mark.parametrize("name", ["latest", "v2026.11.0", ".1", "x1"])
def test_a_release_without_a_version_has_none(name: str) -> None:
    with pytest.raises(ValueError, match="does not start with a version number"):
        release.version_of(name)


def test_the_installed_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for text, version in (("RELEASE=2026.11.0\n", (2026, 11, 0)), ("RELEASE=latest\n", ()), ("", ())):
        (tmp_path / "release").write_text(text)
        monkeypatch.setattr(release, "RELEASE_FILE", tmp_path / "release")
        release.installed.cache_clear()
        assert release.installed_version() == version
    release.installed.cache_clear()

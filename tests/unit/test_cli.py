"""build.py's front door, in-process: bad input exits 2 before anything is written; the cluster key; and the
small parsers the build steps lean on (dpkg's status file, apt's status lines)."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from rich.console import Console

from herd.build.chroot import AptProgress
from herd.build.cli import EXIT_BAD_INPUT, cluster_key, main, summary
from herd.build.dpkg import installed_packages
from herd.build.release_key import ReleaseKeyError, release_key
from herd.build.steps import BuildError
from herd.spec import Role

from .test_artifacts import context
from .umask import umask

PROJECT = Path(__file__).resolve().parents[2]
TEXT = (PROJECT / "examples" / "cluster.toml").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() installs a SIGTERM handler and prints through rich: keep both from leaking or wrapping."""
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("HERD_CACHE", "/nonexistent/herd-cache-must-not-be-used")
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def edit(old: str, new: str, text: str = TEXT) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


class Run:
    def __init__(self, tmp_path: Path, spec_text: str) -> None:
        self.site = tmp_path / "site"
        self.site.mkdir()
        self.spec = self.site / "cluster.toml"
        self.spec.write_text(spec_text)
        self.out = tmp_path / "out"
        self.cache = tmp_path / "cache"

    def __call__(self, *extra: str) -> int:
        return main(["--spec", str(self.spec), "--out", str(self.out), "--cache-dir", str(self.cache), *extra])

    def assert_nothing_written(self) -> None:
        assert not self.out.exists()
        assert not self.cache.exists()
        assert sorted(p.name for p in self.site.iterdir()) == ["cluster.toml"]  # no .key, no temp file
        assert not self.spec.with_suffix(".key").exists()
        assert not self.spec.with_suffix(".release.key").exists()


def stderr(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    return re.sub(r"\x1b\[[0-9;]*m", "", err)


def test_bad_spec_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edit('address = "192.168.50.22"', 'address = "192.168.51.22"')
    line = next(n for n, s in enumerate(text.splitlines(), start=1) if "192.168.51.22" in s)
    run = Run(tmp_path, text)
    assert run() == EXIT_BAD_INPUT
    err = stderr(capsys)
    assert f"{run.spec}:{line}: node[3].address: 192.168.51.22 is outside network.subnet" in err
    assert "error" in err
    run.assert_nothing_written()


def test_a_build_runs_with_umask_022_whatever_the_callers(tmp_path: Path) -> None:
    """debootstrap, dpkg's maintainer scripts and the cache's tarballs make files with the build's umask."""
    with umask(0o002):
        Run(tmp_path, edit('address = "192.168.50.22"', 'address = "192.168.51.22"'))()
        assert os.umask(0o002) == 0o022


def test_an_error_into_a_pipe_stays_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a terminal (a log, grep) rich would wrap at 80 columns, splitting file:line from its message."""
    monkeypatch.delenv("COLUMNS")
    run = Run(tmp_path, edit('address = "192.168.50.22"', 'address = "192.168.51.22"'))
    assert run() == EXIT_BAD_INPUT
    line = next(line for line in stderr(capsys).splitlines() if "node[3].address" in line)
    assert len(line) > 80 and line.strip().startswith(f"{run.spec}:"), line
    assert line.endswith("use an address inside it"), line


def test_all_problems_are_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = edit('mac = "52:54:00:50:00:22"', 'mac = "bad"', edit("deadtime_ms = 1000", "deadtime_ms = 10"))
    run = Run(tmp_path, text)
    assert run() == EXIT_BAD_INPUT
    err = stderr(capsys)
    assert "membership.deadtime_ms" in err and "node[3].mac" in err
    run.assert_nothing_written()


def test_invalid_toml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(tmp_path, edit("port = 80", "port = = 80"))
    assert run() == EXIT_BAD_INPUT
    assert "not valid TOML" in stderr(capsys)
    run.assert_nothing_written()


def test_missing_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(tmp_path, TEXT)
    run.spec.unlink()
    assert run() == EXIT_BAD_INPUT
    assert "cannot read the spec" in stderr(capsys)
    assert not run.out.exists() and not run.cache.exists() and list(run.site.iterdir()) == []


def test_role_not_in_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = TEXT.index('[[node]]\nname = "db1"')
    no_db = TEXT[:start] + TEXT[TEXT.index("[access]"):]
    run = Run(tmp_path, no_db)
    assert run("--role", "web", "--role", "db") == EXIT_BAD_INPUT
    err = stderr(capsys)
    assert "--role: the spec has no db node" in err and "the spec is not valid" not in err
    assert "director, web, nfs" in err  # and what it does have
    run.assert_nothing_written()


def test_unknown_role_name_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(tmp_path, TEXT)
    with pytest.raises(SystemExit) as info:
        run("--role", "storage")
    assert info.value.code == 2
    assert "invalid choice: 'storage'" in stderr(capsys)
    run.assert_nothing_written()


@pytest.mark.parametrize("release", ["../x", "a/b", ".hidden", "x" * 65, "two words"])
def test_bad_release_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], release: str) -> None:
    run = Run(tmp_path, TEXT)
    assert run("--release", release) == EXIT_BAD_INPUT
    err = stderr(capsys)
    assert f"error: --release: {release!r} must be" in err and "the spec is not valid" not in err
    run.assert_nothing_written()
    assert not (tmp_path / "x").exists()


def test_an_out_that_is_a_file_or_a_key_that_is_a_directory_exits_2_before_building(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found out in the first second, not when the images are renamed into place minutes later."""
    run = Run(tmp_path, TEXT)
    out = tmp_path / "out"
    out.write_text("not a directory\n")
    assert run() == EXIT_BAD_INPUT
    assert f"--out: cannot make {out}/2026.11.0: {out} is not a directory" in stderr(capsys)
    assert out.read_text() == "not a directory\n" and not run.cache.exists()
    out.unlink()
    (tmp_path / "file").write_text("")
    assert run("--out", str(tmp_path / "file" / "sub")) == EXIT_BAD_INPUT
    assert f"--out: cannot make {tmp_path}/file/sub/2026.11.0: {tmp_path}/file is not a directory" in stderr(capsys)
    keydir = tmp_path / "keys"
    keydir.mkdir()
    assert run("--key", str(keydir)) == EXIT_BAD_INPUT
    assert f"--key: {keydir} is not a file (the cluster key is one file)" in stderr(capsys)
    short = tmp_path / "short.key"
    short.write_text("12345")
    assert run("--key", str(short)) == EXIT_BAD_INPUT
    assert f"--key: {short} is too short for a cluster key (at least 32 bytes)" in stderr(capsys)
    assert main(["--spec", str(run.spec), "--out", str(run.out), "--cache-dir", str(tmp_path / "file")]) \
        == EXIT_BAD_INPUT
    assert f"--cache-dir: {tmp_path}/file exists and is not a directory" in stderr(capsys)
    run.assert_nothing_written()


def test_bad_release_in_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(tmp_path, edit('release = "2026.11.0"', 'release = "../up"'))
    assert run() == EXIT_BAD_INPUT
    assert re.search(rf"{re.escape(str(run.spec))}:\d+: cluster\.release: '\.\./up'", stderr(capsys))
    run.assert_nothing_written()


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--spec", "--out", "--role", "--release", "--cache-dir", "--no-cache", "--key", "--release-key"):
        assert re.search(rf"(^|\s){option}\b", out), option
    assert "Exit codes" in out
    assert "build.py flash IMAGE" in out  # the subcommand is found from the main help


# ---------------------------------------------------------------------------------------------------------
# The cluster key


def test_cluster_key_is_made_private_and_long(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "cluster.key"
    assert cluster_key(path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64,}", secret)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cluster.key"]  # no temp file left
    other = tmp_path / "other.key"
    cluster_key(other)
    assert other.read_text() != path.read_text()  # random, not derived from anything


def test_cluster_key_is_reused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    cluster_key(path)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert cluster_key(path) == path
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    mine = tmp_path / "mine.key"
    mine.write_text("my own secret that is long enough to be a key\n")
    mine.chmod(0o640)
    cluster_key(mine)
    assert mine.read_text() == "my own secret that is long enough to be a key\n"
    assert stat.S_IMODE(mine.stat().st_mode) == 0o640


def test_cluster_key_too_short_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    path.write_text("short\n")
    with pytest.raises(BuildError, match="too short"):
        cluster_key(path)
    assert path.read_text() == "short\n"


# ---------------------------------------------------------------------------------------------------------
# The release key


def test_release_key_is_made_private_once_and_reused(tmp_path: Path) -> None:
    """An ed25519 key without a passphrase, 0600 whatever the umask; nothing else is left beside it (no .pub: its
    public half is in every image and in manifest.json); the next build signs with the same key."""
    path = tmp_path / "new-dir" / "cluster.release.key"
    with umask(0o000):
        public = release_key(path, "demo")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["cluster.release.key"]
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == public.split() and public.startswith("ssh-ed25519 ")
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert release_key(path, "demo") == public
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert release_key(tmp_path / "other.release.key", "demo") != public  # random, not derived from anything


def test_a_release_key_of_ones_own_is_used(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "my comment", "-f", str(mine)], check=True)
    public = mine.with_name("mine.pub").read_text().split()
    assert release_key(mine, "demo").split() == public[:2]  # the comment left out


@pytest.mark.parametrize(("kind", "message"), [
    (["-t", "ed25519", "-N", "a passphrase"], "without a passphrase"),
    (["-t", "ecdsa", "-N", ""], "is not an ed25519 key (ecdsa-sha2-nistp256)"),
    (None, "is not a private key ssh-keygen can read"),
])
def test_a_release_key_the_build_cannot_sign_with_is_refused(tmp_path: Path, kind: list[str] | None,
                                                             message: str) -> None:
    path = tmp_path / "cluster.release.key"
    if kind is None:
        path.write_text("k" * 64)
    else:
        subprocess.run(["ssh-keygen", "-q", *kind, "-f", str(path)], check=True)
    before = path.read_bytes()
    with pytest.raises(ReleaseKeyError, match=re.escape(message)):
        release_key(path, "demo")
    assert path.read_bytes() == before


def test_a_release_key_the_build_cannot_sign_with_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Found once the host is known to have ssh-keygen, before anything is made."""
    from herd.build import cli

    def no_build(*args: object) -> None:
        raise AssertionError("the build went on")

    monkeypatch.setattr(cli.host, "problems", lambda: [])
    monkeypatch.setattr(cli, "make_plan", no_build)
    run = Run(tmp_path, TEXT)
    key = run.spec.with_suffix(".release.key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)], check=True)
    key.with_name(key.name + ".pub").unlink()
    assert run() == EXIT_BAD_INPUT
    assert f"error: --release-key: {key} is not a private key ssh-keygen can read without a passphrase" \
        in stderr(capsys)
    assert not run.out.exists() and not run.cache.exists() and not run.spec.with_suffix(".key").exists()


def test_a_release_key_open_to_other_users_exits_2_before_building(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Anyone who can read it could sign releases every node takes; like --key, refused with the command that
    mends it; the default one beside the spec as well as one named."""
    run = Run(tmp_path, TEXT)
    default = run.spec.with_suffix(".release.key")
    named = tmp_path / "elsewhere.key"
    for key, args in ((default, ()), (named, ("--release-key", str(named)))):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        key.with_name(key.name + ".pub").unlink()
        for mode in (0o644, 0o640, 0o604, 0o620):
            os.chmod(key, mode)
            assert run(*args) == EXIT_BAD_INPUT
            assert f"--release-key: {key} is open to other users (mode {mode:04o}); make it private with " \
                   f"`chmod 600 {key}`" in stderr(capsys)
        key.unlink()
    run.assert_nothing_written()
    folder = tmp_path / "keys"
    folder.mkdir()
    assert run("--release-key", str(folder)) == EXIT_BAD_INPUT
    assert f"--release-key: {folder} is not a file (the release key is one file)" in stderr(capsys)


def test_the_release_key_is_beside_the_spec_by_default(tmp_path: Path) -> None:
    from herd.build.cli import parse_args, release_key_path

    spec = tmp_path / "site.toml"
    assert release_key_path(parse_args(["--spec", str(spec)])) == tmp_path / "site.release.key"
    assert release_key_path(parse_args(["--spec", str(spec), "--release-key", "/k"])) == Path("/k")


@pytest.mark.parametrize("release", ["latest", "v2026.11.0", "x1"])
def test_a_release_without_a_version_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             release: str) -> None:
    run = Run(tmp_path, TEXT)
    assert run("--release", release) == EXIT_BAD_INPUT
    assert f"error: --release: {release!r} must start with its version, numbers and dots like 2026.11.0" \
        in stderr(capsys)
    run.assert_nothing_written()


# ---------------------------------------------------------------------------------------------------------
# dpkg status


STATUS = """\
Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.
 Status: not a field, a continuation line

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u4

Package: removed-conf
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 2.0

Package: unpacked
Status: install ok unpacked
Architecture: amd64
Version: 3.0

Package: gone
Status: purge ok not-installed
Architecture: amd64

Package: held
Status: hold ok installed
Architecture: amd64
Version: 4.0
Conffiles:
 /etc/held.conf 0123456789abcdef0123456789abcdef
"""


def test_installed_packages_counts_only_installed() -> None:
    assert installed_packages(STATUS) == {
        "base-files": "12.4+deb12u5",
        "held": "4.0",
        "libc6:i386": "2.36-9+deb12u4",
        "tzdata": "2024a-0+deb12u1",
    }


def test_installed_packages_is_sorted_and_handles_empty_input() -> None:
    assert installed_packages("") == {}
    assert list(installed_packages(STATUS)) == sorted(installed_packages(STATUS))
    assert installed_packages("Package: x\nStatus: install ok installed\n") == {"x": ""}


# ---------------------------------------------------------------------------------------------------------
# apt's APT::Status-Fd lines


def test_apt_progress_download_then_dpkg() -> None:
    progress = AptProgress()
    assert progress.fraction == 0.0
    assert progress.feed("dlstatus:1:0.0000:Retrieving file 1 of 40") == "Retrieving file 1 of 40"
    assert progress.fraction == 0.0
    assert progress.feed("dlstatus:20:50.0000:Retrieving file 20 of 40") == "Retrieving file 20 of 40"
    assert progress.fraction == pytest.approx(0.15)
    assert progress.feed("dlstatus:40:100.0000:Retrieving file 40 of 40") is not None
    assert progress.fraction == pytest.approx(0.3)
    assert progress.feed("pmstatus:dpkg-exec:0.0000:Running dpkg") == "Running dpkg"
    assert progress.fraction == pytest.approx(0.3)
    assert progress.feed("pmstatus:bash:50.0000:Unpacking bash (5.2.15-2+b2)") == "Unpacking bash (5.2.15-2+b2)"
    assert progress.fraction == pytest.approx(0.65)
    assert progress.feed("pmstatus:libc6:75.0000:Configuring libc6:amd64 (2.36-9)") == \
        "Configuring libc6:amd64 (2.36-9)"  # a colon in the message stays in the message
    assert progress.fraction == pytest.approx(0.3 + 0.7 * 0.75)
    assert progress.feed("pmstatus:tzdata:100.0000:Installed tzdata") == "Installed tzdata"
    assert progress.fraction == pytest.approx(1.0)


def test_apt_progress_other_lines() -> None:
    progress = AptProgress()
    progress.feed("pmstatus:bash:40.0000:Unpacking bash")
    before = progress.fraction
    assert progress.feed("Setting up bash (5.2.15-2+b2) ...") == "Setting up bash (5.2.15-2+b2) ..."
    assert progress.feed("pmerror:foo:50:dpkg failed") == "pmerror:foo:50:dpkg failed"
    assert progress.feed("pmstatus:bash") is None  # truncated
    assert progress.feed("dlstatus:1:lots:Retrieving") is None  # not a number
    assert progress.fraction == before


def test_a_key_open_to_other_users_exits_2_before_building(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A key others can read is no secret (heartbeats forged, database passwords derived); one they can write
    could be swapped for theirs. Refused with the command that mends it, and nothing is written."""
    run = Run(tmp_path, TEXT)
    key = tmp_path / "open.key"
    key.write_text("k" * 64)
    for mode in (0o644, 0o640, 0o620, 0o604):
        os.chmod(key, mode)
        assert run("--key", str(key)) == EXIT_BAD_INPUT
        assert f"--key: {key} is open to other users (mode {mode:04o}); make it private with `chmod 600 {key}`" \
            in stderr(capsys)
    run.assert_nothing_written()


@pytest.mark.root
def test_a_key_of_another_user_is_refused(tmp_path: Path) -> None:
    """Even 0600: its owner could swap it for a key of theirs between releases. Root's own is fine."""
    from herd.build.private import key_problem

    key = tmp_path / "theirs.key"
    key.write_text("k" * 64)
    os.chmod(key, 0o600)
    assert key_problem("--key", key) is None  # root's
    assert key_problem("--key", key, uid=1234) is None  # root's, for another user's build
    os.chown(key, 1234, -1)
    assert key_problem("--key", key) == \
        f"--key: {key} belongs to another user (uid 1234); a key must be yours or root's"
    assert key_problem("--key", key, uid=1234) is None


def test_a_cache_dir_others_can_write_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Cache entries are trusted by name: anyone who can write the folder could plant a root tree."""
    run = Run(tmp_path, TEXT)
    run.cache.mkdir()
    for mode in (0o777, 0o775, 0o757, 0o1777):
        os.chmod(run.cache, mode)
        assert run() == EXIT_BAD_INPUT
        assert f"--cache-dir: {run.cache} can be written by other users (mode {mode:04o})" in stderr(capsys)
    assert list(run.cache.iterdir()) == [] and not run.out.exists()
    os.chmod(run.cache, 0o755)
    from herd.build.private import cache_problem

    assert cache_problem("--cache-dir", run.cache) is None


def test_a_tsig_secret_open_to_other_users_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(tmp_path, (PROJECT / "examples" / "site-backup.toml").read_text(encoding="utf-8"))
    secret = run.spec.with_suffix(".tsig")
    secret.write_text('key "herd-site" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    os.chmod(secret, 0o644)
    assert run() == EXIT_BAD_INPUT
    assert f"--site-key: {secret} is open to other users (mode 0644); make it private with `chmod 600 {secret}`" \
        in stderr(capsys)
    assert not run.out.exists() and not run.cache.exists()
    assert not run.spec.with_suffix(".key").exists()


def test_site_without_its_tsig_secret_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(tmp_path, (PROJECT / "examples" / "site-backup.toml").read_text(encoding="utf-8"))
    assert run() == EXIT_BAD_INPUT
    err = stderr(capsys)
    assert "TSIG secret" in err and "cluster.tsig is missing" in err and "tsig-keygen -a hmac-sha256 herd-site" in err
    run.assert_nothing_written()


def test_the_tsig_secret_goes_to_the_directors_only(tmp_path: Path) -> None:
    from herd.build.steps.tree import secret_files
    from herd.spec import Role, parse

    backup = parse((PROJECT / "examples" / "site-backup.toml").read_text(encoding="utf-8"))
    secret = tmp_path / "site.tsig"
    secret.write_text('key "herd-site" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    (f,) = secret_files(backup, Role.DIRECTOR, secret)
    assert str(f.path) == "etc/herd/site.tsig" and f.mode == 0o600 and f.data == secret.read_bytes()
    assert secret_files(backup, Role.WEB, secret) == []
    assert secret_files(parse(TEXT), Role.DIRECTOR, None) == []  # no [site]: nothing


def test_the_tsig_secret_never_replaces_a_file_of_the_image(tmp_path: Path) -> None:
    from herd.build.overlay import OverlayFile
    from herd.build.steps import BuildError
    from herd.build.steps.tree import secret_files
    from herd.spec import Role, parse

    text = (PROJECT / "examples" / "site-backup.toml").read_text(encoding="utf-8")
    secret = tmp_path / "site.tsig"
    secret.write_text("c2VjcmV0\n")
    tree = tmp_path / "root"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    shadow = parse(text.replace('key_file = "/etc/herd/site.tsig"', 'key_file = "/etc/shadow"'))
    with pytest.raises(BuildError, match="'/etc/shadow': the director image already has that file"):
        secret_files(shadow, Role.DIRECTOR, secret, tree)
    ours = parse(text.replace('key_file = "/etc/herd/site.tsig"', 'key_file = "/etc/herd/db.conf"'))
    with pytest.raises(BuildError, match="already has that file"):
        secret_files(ours, Role.DIRECTOR, secret, tree, [OverlayFile(PurePosixPath("etc/herd/db.conf"), b"", 0o644)])
    assert len(secret_files(parse(text), Role.DIRECTOR, secret, tree)) == 1


def test_a_long_step_stays_one_line_in_a_log() -> None:
    """Into a file or pipe (CI logs, benchmarks reading them), a step's line keeps its time at its end."""
    import io
    import re

    from rich.console import Console

    from herd.build.progress import Reporter

    out = io.StringIO()
    reporter = Reporter(Console(file=out, width=80, highlight=False))
    label = "[web] packages: " + ", ".join(f"package-{i}" for i in range(12))
    with reporter.step(label):
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # "… label" and "✓ label N s"
    assert re.fullmatch(r"✓ " + re.escape(label) + r" \d+\.\d s", lines[1]), lines[1]


def test_the_summary_names_every_image_whole_however_deep_the_output(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name/" * 6)
    ctx = context(deep, [Role.DIRECTOR, Role.WEB])
    console = Console(width=80, record=True)  # a narrow terminal, as a CI log is
    console.print(summary(ctx))
    text = console.export_text()
    for result in ctx.images.values():
        assert result.final_path.name in text, text
    # The title may wrap, but says the whole directory.
    assert os.path.relpath(ctx.plan.out_dir) + "/" in "".join(text.split()), text

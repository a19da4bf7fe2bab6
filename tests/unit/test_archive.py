"""The Debian archives a build reads: which ones, the images' apt sources, and their state (read from a local
archive the test makes, as a file: URL), with the errors a spec's wrong archive gets."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herd.build.archive import (
    ArchiveError,
    archives,
    fetch_state,
    fixes,
    packages_url,
    release_date,
    sources_file,
    state_summary,
    tree_lists,
)
from herd.spec import Debian

IN_RELEASE = """-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Origin: Debian
Suite: {suite}
Date: {date}
SHA256:
 {main} 100 main/binary-amd64/Packages.xz
 1234 32 main/debian-installer/binary-amd64/Packages.xz
 5678 940 non-free-firmware/binary-amd64/Packages.xz
-----BEGIN PGP SIGNATURE-----
x
-----END PGP SIGNATURE-----
"""


def local_archive(root: Path, suites: dict[str, str]) -> str:
    for suite, date in suites.items():
        folder = root / "dists" / suite
        folder.mkdir(parents=True)
        (folder / "InRelease").write_text(IN_RELEASE.format(suite=suite, date=date, main="ab" * 32))
    return f"file://{root}"


def test_the_suite_its_updates_and_its_security_archive() -> None:
    found = [(a.uri, a.suite, a.key) for a in archives(Debian(suite="trixie"))]
    assert found == [("http://deb.debian.org/debian", "trixie", "debian.mirror"),
                     ("http://deb.debian.org/debian", "trixie-updates", "debian.mirror"),
                     ("http://security.debian.org/debian-security", "trixie-security", "debian.security")]
    assert [a.suite for a in archives(Debian(security=None))] == ["bookworm", "bookworm-updates"]


def test_the_images_sources_name_every_archive_with_the_keyring() -> None:
    assert sources_file(Debian()) == (
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    assert "security" not in sources_file(Debian(security=None))


def test_release_date() -> None:
    assert release_date(IN_RELEASE.format(suite="x", date="Sun, 06 Dec 2026 02:54:30 UTC", main="")) \
        == "Sun, 06 Dec 2026 02:54:30 UTC"
    assert release_date("Origin: Debian\n") is None
    assert release_date("Date: yesterday\n") is None


def test_the_state_of_local_archives(tmp_path: Path) -> None:
    main = local_archive(tmp_path / "debian", {"bookworm": "Sat, 11 Jul 2026 10:16:37 UTC",
                                               "bookworm-updates": "Sun, 06 Dec 2026 02:14:57 UTC"})
    security = local_archive(tmp_path / "security", {"bookworm-security": "Sun, 06 Dec 2026 02:54:29 UTC"})
    debian = Debian(mirror=main, security=security)
    state = fetch_state(debian)
    assert [(r.archive.suite, r.date) for r in state] == [
        ("bookworm", "Sat, 11 Jul 2026 10:16:37 UTC"), ("bookworm-updates", "Sun, 06 Dec 2026 02:14:57 UTC"),
        ("bookworm-security", "Sun, 06 Dec 2026 02:54:29 UTC")]
    assert all(r.packages == (("main", "ab" * 32),) for r in state)  # main's list only, not the installer's
    assert packages_url(state[2], "main", "amd64") == (
        f"{security}/dists/bookworm-security/main/binary-amd64/by-hash/SHA256/{'ab' * 32}")
    sec = tmp_path / "security/dists/bookworm-security/InRelease"
    assert state[2].sha256 == hashlib.sha256(sec.read_bytes()).hexdigest()
    sec.write_text(sec.read_text() + " ")  # the archive moved
    assert fetch_state(debian)[2].sha256 != state[2].sha256 and fetch_state(debian)[:2] == state[:2]
    assert state_summary(state, datetime(2026, 12, 7, 12, tzinfo=UTC)) == (
        "bookworm of 2026-07-11 (149 days old), bookworm-updates of 2026-12-06 (1 day old), "
        "bookworm-security of 2026-12-06 (1 day old)")


def test_a_security_archive_without_the_suite_says_how_to_fix_the_spec(tmp_path: Path) -> None:
    main = local_archive(tmp_path / "debian", {"bookworm": "Sat, 11 Jul 2026 10:16:37 UTC",
                                               "bookworm-updates": "Sun, 06 Dec 2026 02:14:57 UTC"})
    debian = Debian(mirror=main, security=main)  # the main archive given as the security one: a common slip
    with pytest.raises(ArchiveError, match=r"^debian\.security: file://.*/dists/bookworm-security/InRelease: "
                       r"no such file: this archive has no bookworm-security\. Set \[debian\] security .*"
                       r"or security = false"):
        fetch_state(debian)
    assert len(fetch_state(dataclasses.replace(debian, security=None))) == 2  # opted out: nothing asked


def test_a_mirror_without_updates_is_named(tmp_path: Path) -> None:
    main = local_archive(tmp_path / "debian", {"bookworm": "Sat, 11 Jul 2026 10:16:37 UTC"})
    with pytest.raises(ArchiveError, match=r"^debian\.mirror: .* no bookworm-updates\. Use a mirror that carries"):
        fetch_state(Debian(mirror=main, security=None))


def test_an_unreachable_archive_is_an_error_not_a_stale_cache() -> None:
    def down(url: str) -> bytes:
        raise OSError("Network is unreachable")

    with pytest.raises(ArchiveError, match=r"debian\.mirror: cannot read http://deb\.debian\.org/debian/dists/"
                       r"bookworm/InRelease: Network is unreachable\. The build needs each archive's state"):
        fetch_state(Debian(), read=down)


def test_which_packages_are_fixes_from_the_updates_and_security_archives(tmp_path: Path) -> None:
    lists = tmp_path / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages").write_text(
        "Package: tzdata\nVersion: 2026a-0+deb12u1\nDescription: x\n\nPackage: libc6\nVersion: 2.36-9+deb12u13\n")
    (lists / "security.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages").write_text(
        "Package: openssl\nVersion: 3.0.17-1~deb12u3\n\nPackage: libssl3\nVersion: 3.0.17-1~deb12u3\n")
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text(
        "Package: bash\nVersion: 5.2.15-2+b7\n")
    found = tree_lists(tmp_path, Debian())
    assert set(found) == {"bookworm", "bookworm-updates", "bookworm-security"}
    installed = {"bash": "5.2.15-2+b7", "tzdata": "2026a-0+deb12u1", "libc6": "2.36-9+deb12u10",
                 "openssl": "3.0.17-1~deb12u3", "libssl3:i386": "3.0.17-1~deb12u3"}
    assert fixes(installed, found) == {"libssl3:i386": "bookworm-security", "openssl": "bookworm-security",
                                       "tzdata": "bookworm-updates"}

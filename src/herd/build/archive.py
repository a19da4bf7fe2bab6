"""The Debian archives an image's packages come from: the suite and `<suite>-updates` on the spec's mirror,
`<suite>-security` on its security archive. What each archive is at build time (its InRelease's hash and date)
goes into the base tree's cache key, so a cached tree is reused only while the archives are what they were when it
was made: when one has moved (a security fix published), the next build installs the fixes.

Pure but for `fetch_state` (one small HTTP or file read per archive)."""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from herd.spec import Debian

# Where the images' apt sources go; debootstrap's one-line /etc/apt/sources.list is removed.
SOURCES_FILE = "etc/apt/sources.list.d/debian.sources"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"  # in both bookworm and trixie (debian-archive-keyring)
COMPONENTS = ("main",)


class ArchiveError(Exception):
    """An archive the spec names cannot be read, or lacks a suite the build needs (says which and what to do)."""


@dataclass(frozen=True)
class Archive:
    uri: str
    suite: str
    key: str  # the spec key that names it, for errors

    @property
    def in_release(self) -> str:
        return f"{self.uri.rstrip('/')}/dists/{self.suite}/InRelease"


@dataclass(frozen=True)
class Release:
    """One archive as the build found it."""
    archive: Archive
    date: str  # the InRelease's Date field, as the archive wrote it
    sha256: str  # of the whole InRelease: any change to the archive's indexes changes it
    # The sha256 of each component's Packages.xz it lists, by component: which package lists the images were
    # built from, and how to fetch them again later (Debian's archives keep them by-hash for a while).
    packages: tuple[tuple[str, str], ...] = ()

    def age_days(self, now: datetime) -> float:
        return (now - parsedate_to_datetime(self.date)).total_seconds() / 86400


def archives(debian: Debian) -> tuple[Archive, ...]:
    found = [Archive(debian.mirror, debian.suite, "debian.mirror"),
             Archive(debian.mirror, f"{debian.suite}-updates", "debian.mirror")]
    if debian.security is not None:
        found.append(Archive(debian.security, f"{debian.suite}-security", "debian.security"))
    return tuple(found)


def sources_file(debian: Debian) -> str:
    """The images' apt sources (deb822, read by apt 2.6 in bookworm and preferred by trixie's): one stanza per
    archive URL, its suites together."""
    by_uri: dict[str, list[str]] = {}
    for a in archives(debian):
        by_uri.setdefault(a.uri, []).append(a.suite)
    return "\n".join(f"Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\nComponents: {' '.join(COMPONENTS)}\n"
                     f"Signed-By: {KEYRING}\n" for uri, suites in by_uri.items())


def release_date(text: str) -> str | None:
    """The Date field of an InRelease (a clear-signed Release file), if it has a valid one."""
    m = re.search(r"^Date:[ \t]*(.+?)[ \t]*$", text, re.M)
    if m is None:
        return None
    try:
        parsedate_to_datetime(m.group(1))
    except (TypeError, ValueError):
        return None
    return m.group(1)


def packages_hashes(text: str, arch: str) -> tuple[tuple[str, str], ...]:
    """(component, sha256) of every main/…/binary-<arch>/Packages.xz in an InRelease's SHA256 section."""
    section = re.search(r"^SHA256:\n((?:[ \t].*\n?)*)", text, re.M)
    if section is None:
        return ()
    found = []
    for line in section.group(1).splitlines():
        fields = line.split()
        m = re.fullmatch(rf"({'|'.join(COMPONENTS)})/binary-{re.escape(arch)}/Packages\.xz", fields[-1]) \
            if len(fields) == 3 else None
        if m:
            found.append((m.group(1), fields[0]))
    return tuple(found)


def packages_url(release: Release, component: str, arch: str) -> str:
    """Where the Packages.xz the build saw can be fetched again (by-hash), even after the archive moved on."""
    sha = dict(release.packages)[component]
    return (f"{release.archive.uri.rstrip('/')}/dists/{release.archive.suite}/{component}/binary-{arch}/"
            f"by-hash/SHA256/{sha}")


def list_versions(packages_text: str) -> dict[str, str]:
    """Package -> Version of an archive's Packages list (as apt keeps it in /var/lib/apt/lists)."""
    found = {}
    for stanza in packages_text.split("\n\n"):
        name = re.search(r"^Package: *(\S+)", stanza, re.M)
        version = re.search(r"^Version: *(\S+)", stanza, re.M)
        if name and version:
            found[name.group(1)] = version.group(1)
    return found


def fixes(installed: dict[str, str], lists: dict[str, dict[str, str]]) -> dict[str, str]:
    """Which installed packages are the version an updates or security archive has (suite -> its Packages;
    other suites are passed over): package -> that suite, for the manifest and `build.py diff`."""
    found = {}
    for suite, versions in lists.items():
        if not suite.endswith(("-updates", "-security")):
            continue
        for name, version in installed.items():
            if versions.get(name.split(":")[0]) == version:
                found[name] = suite
    return dict(sorted(found.items()))


def tree_lists(tree: Path, debian: Debian) -> dict[str, dict[str, str]]:
    """The archives' Packages lists apt fetched into a tree, by suite."""
    lists = {}
    for a in archives(debian):
        for path in sorted((tree / "var/lib/apt/lists").glob(f"*_dists_{a.suite}_main_binary-{debian.arch}_Packages")):
            lists[a.suite] = list_versions(path.read_text(encoding="utf-8", errors="replace"))
    return lists


Opener = Callable[[str], bytes]


def _read(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        data: bytes = r.read(16 * 2**20)  # an InRelease is tens of kB; bounded all the same
        return data


def fetch_state(debian: Debian, read: Opener = _read) -> tuple[Release, ...]:
    """Each archive's InRelease, hashed and dated. The hash only keys the cache (apt checks the signatures when it
    uses the archive); a missing suite is the spec's to fix, so the error says which key and how."""
    found = []
    for a in archives(debian):
        try:
            text = read(a.in_release)
        except urllib.error.HTTPError as exc:
            raise ArchiveError(_missing(a, debian, f"HTTP {exc.code} {exc.reason}")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, FileNotFoundError) or "No such file" in str(reason):
                raise ArchiveError(_missing(a, debian, "no such file")) from None
            raise ArchiveError(f"{a.key}: cannot read {a.in_release}: {reason}. The build needs each archive's "
                               "state to know whether its cached trees are current; check the network and the "
                               "URL") from None
        date = release_date(text.decode("utf-8", "replace"))
        if date is None:
            raise ArchiveError(f"{a.key}: {a.in_release} has no valid Date field: is this a Debian archive?")
        found.append(Release(a, date, hashlib.sha256(text).hexdigest(),
                             packages_hashes(text.decode("utf-8", "replace"), debian.arch)))
    return tuple(found)


def _missing(a: Archive, debian: Debian, why: str) -> str:
    head = f"{a.key}: {a.in_release}: {why}: this archive has no {a.suite}."
    if a.key == "debian.security":
        return (f"{head} Set [debian] security to the URL of Debian's security archive or of a mirror of it "
                f"(Debian's: http://security.debian.org/debian-security), or security = false to build without "
                f"security updates (not recommended: the images then miss every published security fix)")
    if a.suite == debian.suite:
        return f"{head} Check [debian] suite (bookworm, trixie…) and mirror"
    return f"{head} Use a mirror that carries {a.suite} as well as {debian.suite} ([debian] mirror)"


def state_summary(state: tuple[Release, ...], now: datetime | None = None) -> str:
    """One line for the build's output: each suite and how old its archive state is."""
    now = now or datetime.now(UTC)
    return ", ".join(f"{r.archive.suite} of {parsedate_to_datetime(r.date):%Y-%m-%d} "
                     f"({_age(r.age_days(now))})" for r in state)


def _age(days: float) -> str:
    if days < 1:
        return "today" if days > -1 else "dated in the future"
    return f"{days:.0f} day{'s' if round(days) != 1 else ''} old"

"""The images are patched: every package is the newest the configured archives (the suite, its updates and its
security archive) offered when the build began. The test reads Debian's own package lists, the very ones the
manifest names (fetched by hash, so an archive that moved on since does not change the answer), and compares
them with each image's packages."""

from __future__ import annotations

import hashlib
import lzma
import subprocess
import urllib.request

from herd.spec import Role

from .conftest import Build
from .diskimage import RootFs


def archive_versions(build: Build) -> dict[str, dict[str, str]]:
    """suite -> package -> version, from the Packages lists the build saw (each checked against its sha256)."""
    found: dict[str, dict[str, str]] = {}
    for archive in build.manifest["debian"]["archives"]:
        sha = archive["packages_sha256"]["main"]
        url = f"{archive['uri']}/dists/{archive['suite']}/main/binary-amd64/by-hash/SHA256/{sha}"
        with urllib.request.urlopen(url, timeout=120) as r:
            data = r.read()
        assert hashlib.sha256(data).hexdigest() == sha, url
        versions: dict[str, str] = {}
        for stanza in lzma.decompress(data).decode().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
            if "Package" in fields:
                versions[fields["Package"]] = fields["Version"]
        found[archive["suite"]] = versions
    return found


def older(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def test_every_package_is_the_newest_the_archives_offered(build: Build) -> None:
    suite = build.spec.debian.suite
    archives = archive_versions(build)
    assert list(archives) == [suite, f"{suite}-updates", f"{suite}-security"]
    from_fixes: set[str] = set()
    for role, entry in build.manifest["images"].items():
        stale = []
        for name, version in entry["packages"].items():
            offered = [v for v in (a.get(name.split(":")[0]) for a in archives.values()) if v and v != version]
            stale += [f"{name} {version} < {v}" for v in offered if older(version, v)]
            if name in archives[suite] and archives[suite][name] != version:
                from_fixes.add(name)  # newer than the point release: from -updates or -security
        assert not stale, f"{role}: packages older than the archives offered: {stale}"
        # The manifest says which came from the updates and security archives (`build.py diff` marks them).
        expected = {name: s for s in (f"{suite}-updates", f"{suite}-security") for name, version in
                    entry["packages"].items() if archives[s].get(name.split(":")[0]) == version}
        assert entry["fixes"] == dict(sorted(expected.items())), role
    # Not vacuous: some packages did come from the updates or security archive (the kernel, for one: bookworm's
    # point release is months behind its security archive).
    assert from_fixes, "no package newer than the point release: the updates and security archives were not used"
    print(f"{len(from_fixes)} packages newer than {suite}'s point release: {sorted(from_fixes)[:20]}")


def test_nodes_know_the_updates_and_security_archives(build: Build) -> None:
    sources = RootFs(build.images[Role.WEB]).text("/etc/apt/sources.list.d/debian.sources")
    debian = build.spec.debian
    assert f"Suites: {debian.suite} {debian.suite}-updates\n" in sources
    assert f"URIs: {debian.security}\nSuites: {debian.suite}-security\n" in sources
    assert not RootFs(build.images[Role.WEB]).exists("/etc/apt/sources.list")

"""The [site] section: the two-site example loads, the main example stays valid without it, and every kind of
bad input names the file, line and key and says what to do (the same style as test_spec.py)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from herd.daemon import dnsupdate
from herd.spec import Failback, SiteRole, SpecError, load, parse

PROJECT = Path(__file__).resolve().parents[2]
BACKUP = PROJECT / "examples" / "site-backup.toml"
TEXT = BACKUP.read_text(encoding="utf-8")
FILE = "site-backup.toml"
HERE = "# HERE"


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def marked_line(text: str) -> int:
    numbers = [n for n, line in enumerate(text.splitlines(), start=1) if HERE in line]
    assert len(numbers) == 1
    return numbers[0]


def without_services(text: str) -> str:
    return text[:text.index("[[service]]")] + text[text.index("\n[site]\n"):]


def at_site_header(text: str) -> str:
    """Mark the [site] line: a missing key is reported where its table starts."""
    return edit(text, "\n[site]\n", f"\n[site]  {HERE}\n")


def test_backup_example_loads() -> None:
    spec = load(BACKUP)
    site = spec.site
    assert site is not None
    assert (site.name, site.role, site.zone) == ("dr", SiteRole.BACKUP, "example.com")
    assert site.names == ("www.example.com", "example.com")
    assert (site.server, site.port, site.ttl) == (ipaddress.IPv4Address("198.51.100.53"), 53, 60)
    assert (site.key_name, site.key_algorithm, site.key_file) == ("herd-site", "hmac-sha256", "/etc/herd/site.tsig")
    assert site.main == (ipaddress.IPv4Address("203.0.113.10"),)
    assert site.backup == ipaddress.IPv4Address("198.51.100.10")
    assert (site.interval, site.down_seconds, site.up_seconds, site.failback) == (1.0, 10.0, 60.0, Failback.AUTO)


def test_main_example_has_no_site_and_stays_as_it_was() -> None:
    assert load(PROJECT / "examples" / "cluster.toml").site is None


def test_defaults_backup_is_this_clusters_vip_and_names_are_normalised() -> None:
    text = edit(TEXT, 'backup = "198.51.100.10"', "")
    text = edit(text, 'names = ["www.example.com", "example.com"]', 'names = ["WWW.Example.com."]')
    for key in ("port = 53\n", "ttl = 60 ", "interval = 1.0 ", "failback = \"auto\" "):
        text = "\n".join(line for line in text.splitlines() if not line.startswith(key.strip()))
    site = parse(text, FILE).site
    assert site is not None
    assert site.backup == ipaddress.IPv4Address("192.168.60.10")  # network.vip
    assert site.names == ("www.example.com",)
    assert (site.port, site.ttl, site.interval, site.failback) == (53, 60, 1.0, Failback.AUTO)


def test_a_main_site_needs_no_main_addresses_nor_services() -> None:
    text = edit(TEXT, 'role = "backup"', 'role = "main"')
    text = edit(text, 'main = ["203.0.113.10"]', "")
    text = without_services(text)
    site = parse(text, FILE).site
    assert site is not None and site.role == SiteRole.MAIN and site.main == ()


@dataclass(frozen=True)
class Bad:
    text: str
    path: str
    problem: str


def _bad_cases() -> dict[str, Bad]:
    t = TEXT
    return {
        "unknown-key": Bad(edit(t, 'zone = "example.com"', f'zone = "example.com"\nsecret = "x"  {HERE}'),
                           "site.secret", r"unknown key; expected one of: .*key_file"),
        "no-name": Bad(at_site_header(edit(t, 'name = "dr"  ', "#")), "site.name", r"missing; add `name = …` here"),
        "bad-role": Bad(edit(t, 'role = "backup"', f'role = "standby"  {HERE}'), "site.role",
                        r"'standby' is not one of: main, backup"),
        "no-role": Bad(at_site_header(edit(t, 'role = "backup"  ', "#")), "site.role",
                       r'missing; add `role = "main"`'),
        "bad-zone": Bad(edit(t, 'zone = "example.com"', f'zone = "exa mple.com"  {HERE}'), "site.zone",
                        r"is not a DNS name"),
        "names-empty": Bad(edit(t, 'names = ["www.example.com", "example.com"]', f"names = []  {HERE}"),
                           "site.names", r"is empty; list the public names"),
        "name-outside-zone": Bad(
            edit(t, 'names = ["www.example.com", "example.com"]', f'names = ["www.example.org"]  {HERE}'),
            "site.names[0]", r"is not inside site\.zone 'example\.com'"),
        "name-not-a-string": Bad(
            edit(t, 'names = ["www.example.com", "example.com"]', f'names = ["www.example.com", 7]  {HERE}'),
            "site.names[1]", r"must be a string"),
        "bad-server": Bad(edit(t, 'server = "198.51.100.53"', f'server = "ns1.example.com"  {HERE}'),
                          "site.server", r"is not an IPv4 address"),
        "bad-port": Bad(edit(t, "port = 53\n", f"port = 0  {HERE}\n"), "site.port", r"is not a port number"),
        "bad-ttl": Bad(edit(t, "ttl = 60 ", f"ttl = 0  {HERE} "), "site.ttl", r"must be 1-86400 seconds"),
        "bad-algorithm": Bad(edit(t, 'key_algorithm = "hmac-sha256"', f'key_algorithm = "hmac-md5"  {HERE}'),
                             "site.key_algorithm", r"is not one of: hmac-sha256"),
        "relative-key-file": Bad(edit(t, 'key_file = "/etc/herd/site.tsig"', f'key_file = "site.tsig"  {HERE}'),
                                 "site.key_file", r"must be an absolute path of plain names"),
        "dotdot-key-file": Bad(edit(t, 'key_file = "/etc/herd/site.tsig"', f'key_file = "/etc/herd/../shadow"  {HERE}'),
                               "site.key_file", r"must be an absolute path of plain names"),
        "cluster-key-file": Bad(edit(t, 'key_file = "/etc/herd/site.tsig"',
                                     f'key_file = "/etc/herd/cluster.key"  {HERE}'),
                                "site.key_file", r"/etc/herd/cluster.key is one of herd's own files"),
        "no-main": Bad(at_site_header(edit(t, 'main = ["203.0.113.10"]', "")), "site.main",
                       r"missing; a backup site probes the main site"),
        "main-empty": Bad(edit(t, 'main = ["203.0.113.10"]', f"main = []  {HERE}"), "site.main", r"is empty"),
        "bad-main": Bad(edit(t, 'main = ["203.0.113.10"]', f'main = ["203.0.113"]  {HERE}'), "site.main[0]",
                        r"is not an IPv4 address"),
        "main-a-number": Bad(edit(t, 'main = ["203.0.113.10"]', f"main = [3405803786]  {HERE}"), "site.main[0]",
                             r"3405803786 is not an IPv4 address in quotes"),
        "zone-with-a-newline": Bad(edit(t, 'zone = "example.com"', f'zone = "example.com\\n"  {HERE}'), "site.zone",
                                   r"is not a DNS name"),
        "name-with-a-newline": Bad(edit(t, 'name = "dr"', f'name = "dr\\n"  {HERE}'), "site.name",
                                   r"must be lower-case letters"),
        "backup-is-main": Bad(edit(t, 'backup = "198.51.100.10"', f'backup = "203.0.113.10"  {HERE}'),
                              "site.backup", r"is also in site\.main"),
        "bad-interval": Bad(edit(t, "interval = 1.0 ", f"interval = 0  {HERE} "), "site.interval",
                            r"must be a positive number"),
        "nan-interval": Bad(edit(t, "interval = 1.0 ", f"interval = nan  {HERE} "), "site.interval",
                            r"must be a finite number, got nan"),
        "inf-up": Bad(edit(t, "up_seconds = 60 ", f"up_seconds = inf  {HERE} "), "site.up_seconds",
                      r"must be a finite number, got inf"),
        "down-too-short": Bad(edit(t, "down_seconds = 10 ", f"down_seconds = 1.5  {HERE} "), "site.down_seconds",
                              r"must be at least 2 x site\.interval \(2\), or one lost probe"),
        "up-wrong-type": Bad(edit(t, "up_seconds = 60 ", f'up_seconds = "1m"  {HERE} '), "site.up_seconds",
                             r"must be a number, got str"),
        "bad-failback": Bad(edit(t, 'failback = "auto"', f'failback = "never"  {HERE}'), "site.failback",
                            r"'never' is not one of: auto, manual"),
        "backup-without-services": Bad(
            edit(without_services(t), 'role = "backup"', f'role = "backup"  {HERE}'),
            "site.role", r"add a \[\[service\]\] to probe"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_site_is_reported_with_file_line_key_and_what_to_do(case: Bad) -> None:
    with pytest.raises(SpecError) as info:
        parse(case.text, FILE)
    problems = info.value.problems
    assert len(problems) == 1, problems
    prefix = f"{FILE}:{marked_line(case.text)}: {case.path}: "
    assert problems[0].startswith(prefix), f"{problems[0]!r} does not start with {prefix!r}"
    assert re.search(case.problem, problems[0][len(prefix):]), problems[0]


def test_site_must_be_a_table() -> None:
    text = edit(TEXT.replace("\n[site]\n", "\n[site_]\n"), "[cluster]\n", "site = 1\n[cluster]\n")
    with pytest.raises(SpecError) as info:
        parse(text, FILE)
    assert f"{FILE}:7: site: must be a table, got int 1" in info.value.problems  # line 7: `site = 1`


# ---------------------------------------------------------------------------------------------------------
# The TSIG key file: what tsig-keygen writes, or the bare secret


CLAUSE = 'key "herd-site" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";\n};\n'


def _site_with_key(tmp_path: Path, content: str | None) -> dnsupdate.Zone:
    key = tmp_path / "site.tsig"
    if content is not None:
        key.write_text(content)
    spec = parse(edit(TEXT, 'key_file = "/etc/herd/site.tsig"', f'key_file = "{key}"'), FILE)
    assert spec.site is not None
    return dnsupdate.Zone(spec.site)


@pytest.mark.parametrize("content", [CLAUSE, "c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n"], ids=["tsig-keygen", "bare"])
def test_key_file_in_either_form(tmp_path: Path, content: str) -> None:
    zone = _site_with_key(tmp_path, content)
    key = dnsupdate.read_key(zone.site)
    assert key.secret == b"secret-secret-secret"
    assert str(key.name) == "herd-site." and str(key.algorithm) == "hmac-sha256."


@pytest.mark.parametrize(("content", "problem"), [(None, "cannot read the TSIG key"),
                                                  ("not base64!\n", "not base64"), ("\n", "is empty")])
def test_bad_key_file_is_an_error_that_never_shows_the_secret(tmp_path: Path, content: str | None,
                                                              problem: str) -> None:
    zone = _site_with_key(tmp_path, content)
    with pytest.raises(dnsupdate.DnsError, match=problem) as info:
        dnsupdate.read_key(zone.site)
    assert str(tmp_path) in str(info.value)


def test_the_commented_site_in_the_main_example_is_valid_once_uncommented() -> None:
    text = (PROJECT / "examples" / "cluster.toml").read_text(encoding="utf-8")
    start = text.index("# [site]\n")
    block = text[start:text.index("\n\n", start)]
    site = parse(text.replace(block, "\n".join(line[2:] for line in block.splitlines())), FILE).site
    assert site is not None and site.role == SiteRole.MAIN and site.names == ("www.example.com", "example.com")

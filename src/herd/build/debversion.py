"""Debian package versions compared as dpkg compares them (deb-version(7): epoch, upstream version, revision;
letters before non-letters, `~` before everything, even the end). Pure, so the build can say which installed
package an archive has a newer version of without running dpkg once per package."""

from __future__ import annotations

import functools
import re


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternately the non-digit prefixes (by _order) and the numbers (by value)."""
    while a or b:
        da = re.match(r"[^0-9]*", a).group()  # type: ignore[union-attr]
        db = re.match(r"[^0-9]*", b).group()  # type: ignore[union-attr]
        for i in range(max(len(da), len(db))):
            ca = _order(da[i]) if i < len(da) else 0
            cb = _order(db[i]) if i < len(db) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(da):], b[len(db):]
        na = re.match(r"[0-9]*", a).group()  # type: ignore[union-attr]
        nb = re.match(r"[0-9]*", b).group()  # type: ignore[union-attr]
        if int(na or 0) != int(nb or 0):
            return -1 if int(na or 0) < int(nb or 0) else 1
        a, b = a[len(na):], b[len(nb):]
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as a is older than, the same as or newer than b."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


sort_key = functools.cmp_to_key(compare)


def newer_offered(installed: dict[str, str], lists: dict[str, dict[str, str]]) -> dict[str, tuple[str, str]]:
    """package -> (installed, newest offered) for every installed package an archive (suite -> its Packages'
    versions) has a newer version of: a fix the build did not install."""
    found = {}
    for name, version in installed.items():
        offered = [v for versions in lists.values() if (v := versions.get(name.split(":")[0]))]
        newest = max(offered, key=sort_key, default=None)
        if newest is not None and compare(version, newest) < 0:
            found[name] = (version, newest)
    return dict(sorted(found.items()))

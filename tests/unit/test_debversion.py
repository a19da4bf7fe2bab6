"""Debian version order, checked against dpkg itself on versions that exercise each rule."""

from __future__ import annotations

import itertools
import subprocess

from herd.build.debversion import compare, newer_offered

VERSIONS = [
    "1.0", "1.0-1", "1.0-1+b1", "1.0-1~bpo12+1", "1.0~rc1-1", "1.0~~-1", "1.0a-1", "1.0+dfsg-1", "1.0.1-1",
    "1:0.9-1", "2:1.0", "1.10-1", "1.9-1", "6.1.176-1", "6.1.192-3", "3.0.11-1~deb12u2", "3.0.13-1~deb12u1",
    "2.36-9+deb12u10", "2.36-9+deb12u9", "1:1.31-1+b1", "1:1.31-5", "10.11.18-0+deb12u1", "1.0-1.1", "a", "1.0-a",
    "0", "00", "1.0--1", "1:2:3-4",
]


def dpkg(a: str, op: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0


def test_the_same_order_as_dpkg() -> None:
    wrong = []
    for a, b in itertools.product(VERSIONS, repeat=2):
        want = -1 if dpkg(a, "lt", b) else 1 if dpkg(a, "gt", b) else 0
        if compare(a, b) != want:
            wrong.append((a, b, compare(a, b), want))
    assert wrong == []


def test_fixes_the_build_did_not_install() -> None:
    installed = {"openssl": "3.0.11-1~deb12u2", "bash": "5.2.15-2+b7", "libc6:i386": "2.36-9+deb12u9"}
    lists = {"bookworm": {"openssl": "3.0.11-1~deb12u2", "bash": "5.2.15-2+b7", "libc6": "2.36-9+deb12u4"},
             "bookworm-security": {"openssl": "3.0.13-1~deb12u1", "libc6": "2.36-9+deb12u10"}}
    assert newer_offered(installed, lists) == {"libc6:i386": ("2.36-9+deb12u9", "2.36-9+deb12u10"),
                                               "openssl": ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1")}

"""build.py diff on hand-made manifests: packages, kernel, herdd, config files, sizes; roles added and removed;
older manifests without config digests; JSON output; bad input exits 2."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from herd.build.cli import main
from herd.build.manifest_diff import Change, ManifestError, check, diff, text

MiB = 2**20


def image(role: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "file": f"demo-{role}-1.0.img", "size": 643 * MiB, "allocated": 330 * MiB, "sha256": "a" * 64,
        "bmap": f"demo-{role}-1.0.img.bmap", "kernel": "6.1.0-25-amd64", "herdd_sha256": "d" * 64,
        "overlay_sha256": "o" * 64,
        "overlay": {"/etc/hosts": "1" * 64, "/etc/herd/release": "2" * 64, "/etc/motd": "3" * 64},
        "packages": {"bash": "5.2.15-2+b7", "openssl": "3.0.11-1~deb12u2", "ipvsadm": "1:1.31-1+b1"},
    }
    entry.update(extra)
    return entry


def manifest(release: str = "1.0", **images: dict[str, Any]) -> dict[str, Any]:
    return {"cluster": "demo", "release": release, "herd_version": "0.1.0", "spec_sha256": "s" * 64,
            "build_date": "2026-11-25T00:00:00Z", "debian": {"suite": "bookworm", "arch": "amd64"},
            "images": images or {"director": image("director"), "web": image("web")}}


OLD = manifest()


def test_identical_manifests() -> None:
    d = diff(OLD, copy.deepcopy(OLD))
    assert [r.status for r in d.roles] == ["unchanged", "unchanged"]
    assert d.herd_version is None and d.spec is None
    assert text(d) == ("cluster demo: release 1.0 -> 1.0\nherd: same version\nspec: unchanged\n"
                       "director: unchanged\nweb: unchanged\n")


def test_packages_kernel_herdd_config_and_size() -> None:
    new = manifest("1.1")
    new["herd_version"] = "0.2.0"
    new["spec_sha256"] = "t" * 64
    web = new["images"]["web"]
    web["packages"] = {"bash": "5.2.15-2+b7", "openssl": "3.0.13-1~deb12u1", "curl": "7.88.1-10"}
    web["kernel"] = "6.1.0-26-amd64"
    web["herdd_sha256"] = "e" * 64
    web["overlay"] = {"/etc/hosts": "9" * 64, "/etc/herd/release": "2" * 64, "/etc/exports": "4" * 64}
    web["size"] = 650 * MiB
    web["sha256"] = "b" * 64
    d = diff(OLD, new)
    director, w = d.roles
    assert director.status == "unchanged"
    assert w.status == "changed"
    assert w.packages_added == {"curl": "7.88.1-10"}
    assert w.packages_removed == {"ipvsadm": "1:1.31-1+b1"}
    assert w.packages_changed == {"openssl": Change("3.0.11-1~deb12u2", "3.0.13-1~deb12u1")}
    assert w.kernel == Change("6.1.0-25-amd64", "6.1.0-26-amd64")
    assert w.herdd == Change("d" * 64, "e" * 64)
    assert (w.config_added, w.config_removed, w.config_changed) == (["/etc/exports"], ["/etc/motd"], ["/etc/hosts"])
    assert w.size == Change(643 * MiB, 650 * MiB)
    out = text(d)
    assert out == f"""\
cluster demo: release 1.0 -> 1.1
herd 0.1.0 -> 0.2.0
spec changed (sha256 {"s" * 12} -> {"t" * 12})
director: unchanged
web:
  kernel 6.1.0-25-amd64 -> 6.1.0-26-amd64
  herdd zipapp changed ({"d" * 12} -> {"e" * 12})
  packages: 1 added, 1 removed, 1 changed
    + curl 7.88.1-10
    - ipvsadm 1:1.31-1+b1
    ~ openssl 3.0.11-1~deb12u2 -> 3.0.13-1~deb12u1
  config files: 1 added, 1 removed, 1 changed
    + /etc/exports
    - /etc/motd
    ~ /etc/hosts
  image size 643 MiB -> 650 MiB (+7.0 MiB)
"""


def test_roles_added_and_removed_in_role_order() -> None:
    old = manifest(director=image("director"), web=image("web"))
    new = manifest("1.1", db=image("db", size=1019 * MiB), director=image("director"))
    d = diff(old, new)
    assert [(r.role, r.status) for r in d.roles] == [("director", "unchanged"), ("web", "removed"),
                                                     ("db", "added")]
    lines = text(d).splitlines()
    assert "web: not in this release any more" in lines
    assert "db: new in this release (1019 MiB)" in lines


def test_an_old_manifest_without_config_digests() -> None:
    old = copy.deepcopy(OLD)
    for entry in old["images"].values():
        del entry["overlay"], entry["overlay_sha256"], entry["herdd_sha256"]
    d = diff(old, OLD)
    assert all(r.config_unknown and r.herdd is None for r in d.roles)
    assert "config files: cannot tell" in text(d)
    only_digest = copy.deepcopy(OLD)
    for entry in only_digest["images"].values():
        del entry["overlay"]
    assert all(not r.config_unknown for r in diff(only_digest, OLD).roles)  # same digest: no change


def test_only_the_bytes_differ() -> None:
    new = copy.deepcopy(OLD)
    new["images"]["web"]["sha256"] = "c" * 64
    assert "web:\n  image bytes differ; packages, kernel, herdd and config files are the same\n" in text(
        diff(OLD, new))


def test_compressed_size_change() -> None:
    old, new = copy.deepcopy(OLD), copy.deepcopy(OLD)
    old["images"]["web"]["zst_size"] = 100 * MiB
    new["images"]["web"]["zst_size"] = 90 * MiB
    assert "  compressed 100 MiB -> 90 MiB (-10.0 MiB)" in text(diff(old, new))


def test_fixes_from_the_security_and_updates_archives_are_marked() -> None:
    new = manifest("1.1")
    web = new["images"]["web"]
    web["packages"] = {"bash": "5.2.15-2+b8", "openssl": "3.0.13-1~deb12u1", "ipvsadm": "1:1.31-1+b1",
                       "tzdata": "2026a-0+deb12u1"}
    web["fixes"] = {"openssl": "bookworm-security", "tzdata": "bookworm-updates", "libc6": "bookworm-security"}
    (w,) = [r for r in diff(OLD, new).roles if r.role == "web"]
    assert w.fixes == {"tzdata": "bookworm-updates", "openssl": "bookworm-security"}
    lines = text(diff(OLD, new)).splitlines()
    assert "    ~ openssl 3.0.11-1~deb12u2 -> 3.0.13-1~deb12u1  [security fix]" in lines
    assert "    + tzdata 2026a-0+deb12u1  [bookworm-updates]" in lines
    assert "    ~ bash 5.2.15-2+b7 -> 5.2.15-2+b8" in lines  # a point release's: not marked


def test_json_has_every_field() -> None:
    new = copy.deepcopy(OLD)
    new["images"]["web"]["packages"]["openssl"] = "3.0.13-1~deb12u1"
    data = json.loads(json.dumps(diff(OLD, new).as_json()))
    assert data["release"] == {"old": "1.0", "new": "1.0"}
    web = data["roles"][1]
    assert web["role"] == "web" and web["status"] == "changed"
    assert web["packages_changed"] == {"openssl": {"old": "3.0.11-1~deb12u2", "new": "3.0.13-1~deb12u1"}}
    assert web["packages_added"] == {} and web["kernel"] is None


@pytest.mark.parametrize(("data", "message"), [
    ([], "not a herd manifest"),
    ({"release": "1"}, "no cluster, images"),
    ({"cluster": "x", "release": "1", "images": []}, "images must map"),
    ({"cluster": "x", "release": "1", "images": {"web": {"packages": []}}}, "images.web"),
    ({"cluster": "x", "release": 3, "images": {}}, "release: must be a string, got 3"),
    ({"cluster": "x", "release": "1", "spec_sha256": 3, "images": {}}, "spec_sha256: must be a string"),
    ({"cluster": "x", "release": "1", "images": {"web": {"size": "big"}}}, r"images.web.size: must be a whole"),
    ({"cluster": "x", "release": "1", "images": {"web": {"size": True}}}, r"images.web.size: must be a whole"),
    ({"cluster": "x", "release": "1", "images": {"web": {"kernel": 6}}}, r"images.web.kernel: must be a string"),
    ({"cluster": "x", "release": "1", "images": {"web": {"packages": {"bash": 5}}}},
     r"images.web.packages.bash: must be a string, got 5"),
    ({"cluster": "x", "release": "1", "images": {"web": {"overlay": {"etc/x": None}}}},
     r"images.web.overlay.etc/x: must be a string"),
    ({"cluster": "x", "release": "1", "images": {"web": {"fixes": ["openssl"]}}}, r"images.web: .*fixes must be"),
])
def test_check_refuses_what_is_not_a_manifest(data: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        check(data, "m.json")


# -- build.py diff -------------------------------------------------------------------------------------------

def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_cli_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = copy.deepcopy(OLD)
    new["release"] = "1.1"
    new["images"]["director"]["kernel"] = "6.1.0-26-amd64"
    old_path = write(tmp_path / "old.json", OLD)
    (tmp_path / "1.1").mkdir()
    write(tmp_path / "1.1" / "manifest.json", new)
    assert main(["diff", str(old_path), str(tmp_path / "1.1")]) == 0  # a release directory works too
    out = capsys.readouterr().out
    assert out.startswith("cluster demo: release 1.0 -> 1.1\n")
    assert "director:\n  kernel 6.1.0-25-amd64 -> 6.1.0-26-amd64\n" in out
    assert main(["diff", "--json", str(old_path), str(tmp_path / "1.1/manifest.json")]) == 0
    assert json.loads(capsys.readouterr().out)["roles"][0]["kernel"] == {"old": "6.1.0-25-amd64",
                                                                         "new": "6.1.0-26-amd64"}


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("not json", "not JSON"),
    ('{"cluster": "demo"}', "not a herd manifest: no release, images"),
    (b"\xff\xfe", "not JSON"),
])
def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None,
                               message: str) -> None:
    good = write(tmp_path / "good.json", OLD)
    bad = tmp_path / "bad.json"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    assert main(["diff", str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {bad}: ") and message in err

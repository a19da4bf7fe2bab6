"""herdd's first slice: identity from the spec by MAC, systemd readiness, the console line, clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herd.daemon.identity import identify, local_macs
from herd.spec import Role, load

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "examples/cluster.toml"


def test_identify_by_mac() -> None:
    spec = load(EXAMPLE)
    node = identify(spec, Role.WEB, {"02:00:00:00:00:01", "52:54:00:50:00:22"})
    assert node is not None and node.name == "web2"
    assert identify(spec, Role.WEB, {"02:00:00:00:00:01"}) is None


def test_identify_refuses_a_mac_of_another_role() -> None:
    with pytest.raises(LookupError, match="dir1"):
        identify(load(EXAMPLE), Role.WEB, {"52:54:00:50:00:11"})


def test_forced_identity() -> None:
    spec = load(EXAMPLE)
    assert identify(spec, Role.DB, set(), forced="db1").name == "db1"  # type: ignore[union-attr]
    with pytest.raises(LookupError, match="nope"):
        identify(spec, Role.DB, set(), forced="nope")


def test_local_macs_reads_sysfs(tmp_path: Path) -> None:
    for name, mac in (("eth0", "52:54:00:AA:bb:01"), ("lo", "00:00:00:00:00:00")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "address").write_text(mac + "\n")
    assert local_macs(tmp_path) == {"52:54:00:aa:bb:01"}


def test_node_refused_in_the_hosts_network_namespace(tmp_path: Path) -> None:
    """--node would configure interfaces and send heartbeats: only ever inside a namespace of its own."""
    key = tmp_path / "key"
    key.write_text("k" * 64)
    r = subprocess.run([sys.executable, "-m", "herd.daemon.main", "--spec", str(EXAMPLE), "--key", str(key),
                        "--state-dir", str(tmp_path / "state"), "--socket", str(tmp_path / "s"), "--node", "dir2"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT / "src")})
    assert r.returncode == 2
    assert "network namespace" in r.stderr
    assert not (tmp_path / "s").exists()


def test_herdd_bad_spec_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "cluster.toml"
    bad.write_text(EXAMPLE.read_text().replace('role = "db"', 'role = "dbx"'))
    role = tmp_path / "role"
    role.write_text("db\n")
    r = subprocess.run([sys.executable, "-m", "herd.daemon.main", "--spec", str(bad), "--role-file", str(role)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT / "src")})
    assert r.returncode == 2
    assert "node[5].role" in r.stderr


def test_the_key_files_whole_content_is_the_key(tmp_path: Path) -> None:
    from herd.daemon.main import StartError, read_key

    path = tmp_path / "cluster.key"
    path.write_bytes(b"0123456789abcdef" * 4 + b"\n")
    assert read_key(path) == b"0123456789abcdef" * 4 + b"\n"
    path.write_bytes(b"short")
    with pytest.raises(StartError, match="too short"):
        read_key(path)
    with pytest.raises(StartError, match="cannot read"):
        read_key(tmp_path / "missing")


def test_a_stored_identity_is_kept_while_the_spec_gives_its_slot_to_this_box(tmp_path: Path) -> None:
    from herd.daemon.main import who_am_i
    from herd.daemon.state import StateDir

    spec = load(EXAMPLE)
    state = StateDir(tmp_path / "state")
    state.save_identity("web2", "web", "mac")
    assert who_am_i(spec, Role.WEB, state, b"k" * 32, None, {"52:54:00:50:00:22"}).name == "web2"
    # The operator gives web2's slot to another box (its MAC in the spec): this box, which has web1's MAC
    # now (a swapped NIC), must not go on as web2 beside it.
    assert who_am_i(spec, Role.WEB, state, b"k" * 32, None, {"52:54:00:50:00:21"}).name == "web1"
    assert state.identity() == {"name": "web1", "role": "web", "how": "mac"}

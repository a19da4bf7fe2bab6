"""herdd's state dir: identity and boot generation, written atomically."""

from __future__ import annotations

import itertools
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.daemon.state import StateDir, write_atomic


@pytest.fixture
def umask() -> Iterator[int]:
    """Pin the umask so file modes are predictable, and put it back afterwards."""
    old = os.umask(0o022)
    try:
        yield 0o022
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- identity ------------------------------------------------------------------------------------------------

def test_identity_absent(tmp_path: Path) -> None:
    assert StateDir(tmp_path / "missing").identity() is None
    assert StateDir(tmp_path).identity() is None


def test_identity_round_trip(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "var/lib/herd")  # created on first write
    state.save_identity("web1", "web", "mac")
    assert state.identity() == {"name": "web1", "role": "web", "how": "mac"}
    assert StateDir(tmp_path / "var/lib/herd").identity() == {"name": "web1", "role": "web", "how": "mac"}
    state.save_identity("web2", "web", "forced")
    assert state.identity() == {"name": "web2", "role": "web", "how": "forced"}
    assert json.loads((tmp_path / "var/lib/herd/identity.json").read_text())["name"] == "web2"


@pytest.mark.parametrize("content", [
    b"", b"{", b"not json", b"[]", b"null", b'"web1"', b"{}", b'{"name": 1, "role": "web"}',
    b'{"role": "web"}', b"\xff\xfe\x00garbage",
])
def test_corrupt_identity_is_absent(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "identity.json").write_bytes(content)
    state = StateDir(tmp_path)
    assert state.identity() is None
    state.save_identity("db1", "db", "mac")  # and it is simply rewritten
    assert state.identity() == {"name": "db1", "role": "db", "how": "mac"}


def test_unreadable_identity_is_absent(tmp_path: Path) -> None:
    (tmp_path / "identity.json").mkdir()  # a directory where the file should be: OSError on read
    assert StateDir(tmp_path).identity() is None


# -- generation ----------------------------------------------------------------------------------------------

def test_generation_starts_at_the_wall_clock(tmp_path: Path) -> None:
    assert StateDir(tmp_path).next_generation(wall_clock=1_700_000_000.9) == 1_700_000_000
    assert (tmp_path / "generation").read_text() == "1700000000\n"


def test_generation_without_a_wall_clock_uses_the_real_one(tmp_path: Path) -> None:
    before = int(time.time())
    generation = StateDir(tmp_path).next_generation()
    assert before <= generation <= int(time.time())


def test_generation_strictly_increases(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    seen = [state.next_generation(wall_clock=1000) for _ in range(5)]
    assert seen == [1000, 1001, 1002, 1003, 1004]
    # across new StateDir objects on the same path (a restart), still strictly increasing
    seen += [StateDir(tmp_path).next_generation(wall_clock=1000) for _ in range(3)]
    assert seen[5:] == [1005, 1006, 1007]
    assert all(a < b for a, b in itertools.pairwise(seen))


def test_generation_is_floored_by_the_wall_clock(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert state.next_generation(wall_clock=10) == 10
    assert state.next_generation(wall_clock=5_000) == 5_000  # jumps forward with the clock
    assert state.next_generation(wall_clock=20) == 5_001     # the clock went back: still increasing
    assert state.next_generation(wall_clock=0) == 5_002


def test_generation_survives_a_wiped_or_corrupt_file(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.next_generation(wall_clock=100)
    (tmp_path / "generation").write_text("garbage\n")
    assert state.next_generation(wall_clock=2_000) == 2_000  # a reflashed node: the wall clock carries it
    (tmp_path / "generation").unlink()
    assert state.next_generation(wall_clock=3_000) == 3_000


def test_generation_is_persisted_before_it_is_returned(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    generation = state.next_generation(wall_clock=42)
    assert int((tmp_path / "generation").read_text()) == generation


# -- files ---------------------------------------------------------------------------------------------------

def test_no_temp_files_left(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.save_identity("web1", "web", "mac")
    state.save_identity("web1", "web", "mac")
    for _ in range(3):
        state.next_generation(wall_clock=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generation", "identity.json"]


def test_a_stale_temp_file_from_a_crash_is_overwritten(tmp_path: Path) -> None:
    (tmp_path / ".generation.tmp").write_text("99999999999999999999 torn half-write " * 10)
    (tmp_path / ".identity.json.tmp").write_text('{"name": "torn" ' * 10)
    state = StateDir(tmp_path)
    assert state.identity() is None
    assert state.next_generation(wall_clock=7) == 7
    state.save_identity("nfs1", "nfs", "mac")
    assert (tmp_path / "generation").read_text() == "7\n"
    assert state.identity() == {"name": "nfs1", "role": "nfs", "how": "mac"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generation", "identity.json"]


def test_file_modes(tmp_path: Path, umask: int) -> None:
    state = StateDir(tmp_path)
    state.save_identity("web1", "web", "mac")
    state.next_generation(wall_clock=1)
    assert mode(tmp_path / "identity.json") == 0o644
    assert mode(tmp_path / "generation") == 0o644


def test_write_atomic_default_mode_and_replace(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "sub/dir/secret"
    write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    assert mode(target) == 0o600
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["secret"]


def test_write_atomic_replaces_a_symlink_not_its_target(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"untouched")
    link = tmp_path / "generation"
    link.symlink_to(elsewhere)
    write_atomic(link, b"7\n")
    assert not link.is_symlink()
    assert link.read_bytes() == b"7\n"
    assert elsewhere.read_bytes() == b"untouched"


def test_writers_in_several_threads_never_trip_over_each_other(tmp_path: Path) -> None:
    """herdd's event loop and its storage thread both write storage.json."""
    import concurrent.futures

    state = StateDir(tmp_path)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: state.save_json("storage.json", {"term": i}), range(200)))
    assert state.load_json("storage.json") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["storage.json"]

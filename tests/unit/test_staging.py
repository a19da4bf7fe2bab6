"""A node takes a signed bundle into its other slot (herd.staging), against files standing for the slots' /usr
partitions, boot and config folders and GRUB's environment block: what it writes, in what order, and what it
refuses, with the bundles signed by OpenSSH as the builder signs them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from herd.bundle import BadSignature
from herd.slots import grubenv
from herd.slots.blockwrite import SlotError
from herd.slots.bootcount import Slot, State, from_env, initial
from herd.staging import Node, SlotPaths, StagingError, take

from .test_bundle import RUNNING, Keys, keys, make  # noqa: F401 (keys: the fixture)

SLOT_SIZE = 1 << 20


def node_paths(folder: Path, state: State | None = None, usr_b: int = SLOT_SIZE) -> SlotPaths:
    paths = SlotPaths(usr={s: folder / f"usr-{s.value.lower()}" for s in Slot},
                      boot={s: folder / "esp" / "herd" / s.value for s in Slot},
                      config={s: folder / "config" / s.value for s in Slot}, grubenv=folder / "esp" / "grubenv")
    folder.mkdir()
    paths.usr[Slot.A].write_bytes(b"A" * SLOT_SIZE)
    paths.usr[Slot.B].write_bytes(b"\0" * usr_b)
    paths.grubenv.parent.mkdir(parents=True)
    paths.grubenv.write_bytes(grubenv.render((state or initial()).env()))
    return paths


def node(keys: Keys, booted: Slot = Slot.A) -> Node:  # noqa: F811
    return Node("demo", "web", RUNNING, booted, keys.signers)


def env(paths: SlotPaths) -> State:
    return from_env(grubenv.read(paths.grubenv))


def test_the_release_goes_into_the_other_slot_and_is_staged_last(tmp_path: Path, keys: Keys) -> None:  # noqa: F811
    bundle, sig = make(tmp_path / "b", keys.release, release="2026.12.0", version=(2026, 12, 0))
    paths = node_paths(tmp_path / "node")
    staged = take(bundle, sig, node(keys), paths)
    assert staged.slot is Slot.B and staged.manifest.release == "2026.12.0"
    parts = tmp_path / "b" / "parts"
    squashfs = (parts / "usr.squashfs").read_bytes()
    assert paths.usr[Slot.B].read_bytes()[:len(squashfs)] == squashfs
    assert paths.usr[Slot.A].read_bytes() == b"A" * SLOT_SIZE  # the running slot untouched
    for name in ("vmlinuz", "initrd.img"):
        assert (paths.boot[Slot.B] / name).read_bytes() == (parts / name).read_bytes()
    config = paths.config[Slot.B]
    assert (config / "etc/herd/role").read_text() == "web\n"
    assert stat.S_IMODE(os.stat(config / "etc/drbd.d/herd.res").st_mode) == 0o600
    assert env(paths) == State(default=Slot.A, trying=Slot.B, tries="3", release="2026.12.0")
    assert staged.usr.written > 0
    # A retry of the same bundle (the upgrade asked again): withdrawn, written again where it differs (nowhere),
    # staged again.
    again = take(bundle, sig, node(keys), paths)
    assert (again.usr.written, again.usr.blocks) == (0, 0)
    assert env(paths).trying is Slot.B


def test_a_slot_write_that_fails_leaves_no_try(tmp_path: Path, keys: Keys) -> None:  # noqa: F811
    bundle, sig = make(tmp_path / "b", keys.release, release="2026.12.0", version=(2026, 12, 0))
    staged_before = initial().stage(Slot.B, "2026.11.5")  # an earlier try, staged and not begun
    paths = node_paths(tmp_path / "node", staged_before, usr_b=1024)  # a slot too small for this /usr
    with pytest.raises(SlotError, match="does not fit"):
        take(bundle, sig, node(keys), paths)
    assert env(paths) == initial()  # the earlier try withdrawn before its slot was touched; nothing staged


def test_a_bad_signature_changes_nothing(tmp_path: Path, keys: Keys) -> None:  # noqa: F811
    bundle, sig = make(tmp_path / "b", keys.other, release="2026.12.0", version=(2026, 12, 0))
    paths = node_paths(tmp_path / "node")
    block = paths.grubenv.read_bytes()
    with pytest.raises(BadSignature):
        take(bundle, sig, node(keys), paths)
    assert paths.grubenv.read_bytes() == block and paths.usr[Slot.B].read_bytes() == b"\0" * SLOT_SIZE
    assert not paths.config[Slot.B].exists()


def test_a_release_that_failed_here_is_taken_again_only_when_forced(tmp_path: Path, keys: Keys) -> None:  # noqa: F811
    bundle, sig = make(tmp_path / "b", keys.release, release="2026.12.0", version=(2026, 12, 0))
    failed = initial().stage(Slot.B, "2026.12.0").failed()
    paths = node_paths(tmp_path / "node", failed)
    with pytest.raises(StagingError, match=r"release 2026\.12\.0 failed on this node before"):
        take(bundle, sig, node(keys), paths)
    assert env(paths) == failed
    take(bundle, sig, node(keys), paths, force=True)
    assert env(paths).trying is Slot.B and env(paths).release == "2026.12.0"


def test_nothing_is_staged_while_a_try_runs(tmp_path: Path, keys: Keys) -> None:  # noqa: F811
    bundle, sig = make(tmp_path / "b", keys.release, release="2026.12.0", version=(2026, 12, 0))
    trying = initial().stage(Slot.B, "2026.11.5").boot().after  # GRUB counted the try and booted B
    paths = node_paths(tmp_path / "node", trying)
    with pytest.raises(StagingError, match="runs slot B while slot A is the default"):
        take(bundle, sig, node(keys, booted=Slot.B), paths)
    assert env(paths) == trying

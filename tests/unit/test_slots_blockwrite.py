"""Writing a release's /usr into the inactive slot: only what differs, then read back and checked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from herd.slots.blockwrite import SlotError, verify, write_differing

BLOCK = 4096


def image(path: Path, blocks: int, seed: int = 0) -> Path:
    path.write_bytes(b"".join(bytes([(i * 7 + seed) % 251]) * BLOCK for i in range(blocks)) + b"tail")
    return path


def test_only_the_blocks_that_differ_are_written(tmp_path: Path) -> None:
    old = image(tmp_path / "old.squashfs", 16)
    slot = tmp_path / "slot"
    slot.write_bytes(old.read_bytes() + bytes(8 * BLOCK))  # the slot is larger than any release
    new = bytearray(old.read_bytes())
    new[3 * BLOCK + 10] ^= 0xFF  # two blocks changed, and the tail
    new[9 * BLOCK] ^= 0xFF
    new[-1:] = b"!"
    (tmp_path / "new.squashfs").write_bytes(bytes(new))
    seen: list[tuple[int, int]] = []
    result = write_differing(tmp_path / "new.squashfs", slot, lambda done, total: seen.append((done, total)),
                             block=BLOCK)
    assert (result.size, result.blocks, result.written) == (len(new), 3, 2 * BLOCK + 4)
    assert slot.read_bytes()[:len(new)] == bytes(new) and slot.stat().st_size == 24 * BLOCK + 4
    assert seen[-1] == (len(new), len(new)) and len(seen) == 17
    verify(slot, len(new), hashlib.sha256(bytes(new)).hexdigest(), block=BLOCK)
    again = write_differing(tmp_path / "new.squashfs", slot, block=BLOCK)  # a retry: nothing left to write
    assert (again.blocks, again.written) == (0, 0)


def test_a_release_larger_than_the_slot_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    new = image(tmp_path / "new.squashfs", 16)
    slot = tmp_path / "slot"
    slot.write_bytes(bytes(8 * BLOCK))
    with pytest.raises(SlotError, match=r"new\.squashfs is 0\.1 MiB, the slot .* only 0\.0 MiB: the release does "
                       "not fit"):
        write_differing(new, slot, block=BLOCK)
    assert slot.read_bytes() == bytes(8 * BLOCK)


def test_a_slot_that_does_not_hold_the_image_fails_its_check(tmp_path: Path) -> None:
    new = image(tmp_path / "new.squashfs", 4)
    slot = tmp_path / "slot"
    slot.write_bytes(bytes(8 * BLOCK))
    write_differing(new, slot, block=BLOCK)
    sha = hashlib.sha256(new.read_bytes()).hexdigest()
    with open(slot, "r+b") as f:  # a bit gone bad on the stick, or a write cut short
        f.seek(2 * BLOCK)
        f.write(b"\0")
    with pytest.raises(SlotError, match="does not hold the image it was written"):
        verify(slot, new.stat().st_size, sha, block=BLOCK)
    with pytest.raises(SlotError):  # shorter than the image: not a match either
        verify(tmp_path / "new.squashfs", new.stat().st_size + 1, sha, block=BLOCK)
    os.unlink(slot)

"""Block maps: ranges from a sparse file, the XML bmaptool writes and reads, and reading theirs."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from herd.build import bmap
from herd.build.bmap import BlockRange, Bmap, BmapError, NoChecksums, block_ranges, data_extents

from .sparse import BLOCKS, SIZE, make_image


def test_block_ranges_widen_to_blocks_and_merge_neighbours() -> None:
    assert block_ranges([]) == []
    assert block_ranges([(0, 1)]) == [(0, 0)]
    assert block_ranges([(0, 4096)]) == [(0, 0)]
    assert block_ranges([(0, 4097)]) == [(0, 1)]
    assert block_ranges([(4095, 2)]) == [(0, 1)]            # two bytes across a boundary: two blocks
    assert block_ranges([(8192, 4096), (0, 4096)]) == [(0, 0), (2, 2)]   # sorted, a hole between
    assert block_ranges([(0, 4096), (4096, 4096)]) == [(0, 1)]           # touching: merged
    assert block_ranges([(0, 100), (200, 100)]) == [(0, 0)]              # same block: merged
    assert block_ranges([(0, 10 * 4096), (4096, 4096)]) == [(0, 9)]      # contained
    assert block_ranges([(5, 0)]) == []
    assert block_ranges([(0, 1024), (1024, 1024)], block_size=1024) == [(0, 1)]


def test_data_extents_of_a_sparse_file(tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk.img")
    fd = os.open(image, os.O_RDONLY)
    try:
        assert block_ranges(data_extents(fd)) == BLOCKS
    finally:
        os.close(fd)
    empty = tmp_path / "holes.img"
    with open(empty, "wb") as f:
        f.truncate(SIZE)
    fd = os.open(empty, os.O_RDONLY)
    try:
        assert data_extents(fd) == []
    finally:
        os.close(fd)


NO_SEEK_DATA = ("/proc/cmdline", "/proc/version", *sorted(str(p) for p in Path("/proc/bus/pci").glob("*/*")))


def test_data_extents_of_a_file_without_seek_data_is_the_whole_file() -> None:
    """Real kernel files whose lseek refuses SEEK_DATA (EINVAL) but that say their size: all of it is data."""
    for name in NO_SEEK_DATA:
        fd = os.open(name, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            try:
                os.lseek(fd, 0, os.SEEK_DATA)
            except OSError as exc:
                if size and exc.errno == errno.EINVAL:
                    assert data_extents(fd) == [(0, size)]
                    return
        finally:
            os.close(fd)
    pytest.skip(f"none of {NO_SEEK_DATA[:3]}... has a size and refuses SEEK_DATA on this kernel")


def test_data_extents_of_a_file_whose_lseek_ignores_seek_data_is_the_whole_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver with noop_llseek answers every lseek with the current position and moves nowhere. No file
    here does that and has a size, so its lseek is played by a fake; the file and its size are real."""
    image = make_image(tmp_path / "disk.img")
    real_lseek = os.lseek
    calls = 0

    def noop_llseek(fd: int, pos: int, whence: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 100:
            raise AssertionError("data_extents kept seeking: it would loop forever")
        if whence in (os.SEEK_DATA, os.SEEK_HOLE):
            return real_lseek(fd, 0, os.SEEK_CUR)
        return real_lseek(fd, pos, whence)

    fd = os.open(image, os.O_RDONLY)
    try:
        real_lseek(fd, 0, os.SEEK_SET)
        monkeypatch.setattr(os, "lseek", noop_llseek)
        assert data_extents(fd) == [(0, SIZE)]
    finally:
        monkeypatch.undo()
        os.close(fd)


def test_create_checksums_each_range(tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk.img")
    data = image.read_bytes()
    b = bmap.create(image)
    assert b.image_size == SIZE and b.block_size == 4096
    assert b.blocks_count == 2049  # the last block is cut short
    assert [(r.first, r.last) for r in b.ranges] == BLOCKS
    for r in b.ranges:
        offset, length = b.span(r)
        assert r.checksum == hashlib.sha256(data[offset:offset + length]).hexdigest()
    assert b.span(b.ranges[-1]) == (8 * 1024 * 1024, 1000)
    assert b.mapped_blocks == 2 + 16 + 1 + 1
    assert b.mapped_bytes == 19 * 4096 + 1000


def test_xml_round_trip(tmp_path: Path) -> None:
    b = bmap.create(make_image(tmp_path / "disk.img"))
    text = bmap.to_xml(b)
    assert bmap.parse(text) == b
    assert '<bmap version="2.0">' in text
    assert re.search(r"<ImageSize> 8389608 </ImageSize>", text)
    assert re.search(r"<BlockSize> 4096 </BlockSize>", text)
    assert re.search(r"<BlocksCount> 2049 </BlocksCount>", text)
    assert re.search(r"<MappedBlocksCount> 20 </MappedBlocksCount>", text)
    assert re.search(r"<ChecksumType> sha256 </ChecksumType>", text)
    assert f'<Range chksum="{b.ranges[2].checksum}"> 768 </Range>' in text    # a single block
    assert f'<Range chksum="{b.ranges[1].checksum}"> 256-271 </Range>' in text
    stated = re.search(r"<BmapFileChecksum> ([0-9a-f]{64}) </BmapFileChecksum>", text)
    assert stated and stated.group(1) == hashlib.sha256(text.replace(stated.group(1), "0" * 64).encode()).hexdigest()


def test_bmaptool_reads_ours_and_we_read_theirs(tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk.img")
    theirs = tmp_path / "theirs.bmap"
    r = subprocess.run(["bmaptool", "create", "-o", str(theirs), str(image)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert bmap.load(theirs) == bmap.create(image)
    ours = tmp_path / "ours.bmap"
    ours.write_text(bmap.to_xml(bmap.create(image)))
    copy = tmp_path / "copy.img"
    r = subprocess.run(["bmaptool", "copy", "--bmap", str(ours), str(image), str(copy)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr  # bmaptool checks the file's checksum and every range's
    assert copy.read_bytes() == image.read_bytes()


@pytest.mark.parametrize(("block_size", "kind"), [(1024, "sha1"), (512, "md5"), (8192, "sha512")])
def test_other_block_sizes_and_checksum_types_round_trip_and_bmaptool_copies_with_them(
        tmp_path: Path, block_size: int, kind: str) -> None:
    """Bmaps made by other tools for other images: their own block size and checksum (older bmaptools wrote
    sha1) are read and kept, and the file's own checksum is of that type too."""
    image = make_image(tmp_path / "disk.img")
    b = bmap.create(image, block_size=block_size, checksum_type=kind)
    data = image.read_bytes()
    for r in b.ranges:
        offset, length = b.span(r)
        assert offset % block_size == 0 and r.checksum == hashlib.new(kind, data[offset:offset + length]).hexdigest()
    text = bmap.to_xml(b)
    assert f"<ChecksumType> {kind} </ChecksumType>" in text and f"<BlockSize> {block_size} </BlockSize>" in text
    assert bmap.parse(text) == b
    path = tmp_path / "other.bmap"
    path.write_text(text)
    copy = tmp_path / "copy.img"
    r = subprocess.run(["bmaptool", "copy", "--bmap", str(path), str(image), str(copy)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr  # bmaptool checks the file's checksum and every range's
    assert copy.read_bytes() == data


def test_a_bmap_without_checksums_is_told_apart(tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk.img")
    theirs = tmp_path / "theirs.bmap"
    subprocess.run(["bmaptool", "create", "--no-checksum", "-o", str(theirs), str(image)], check=True,
                   capture_output=True)
    with pytest.raises(NoChecksums, match=f"{theirs}: has no checksums .*make it again with checksums"):
        bmap.load(theirs)


def test_human_size_is_bmaptools() -> None:
    assert [bmap.human_size(n) for n in (1, 100, 512, 8389608, 3 * 2**30)] == \
        ["1 byte", "100 bytes", "0.5 KiB", "8.0 MiB", "3.0 GiB"]


TWO = Bmap(10 * 4096, (BlockRange(0, 1, "a" * 64), BlockRange(5, 9, "b" * 64)))


def reseal(text: str) -> str:
    """Recompute the file checksum after an edit, so parse() gets past it to the edited field."""
    old = re.search(r"<BmapFileChecksum> ([0-9a-f]{64})", text)
    assert old
    zeroed = text.replace(old.group(1), "0" * 64)
    return zeroed.replace("0" * 64, hashlib.sha256(zeroed.encode()).hexdigest(), 1)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('version="2.0"', 'version="3.0"', "unsupported bmap version '3.0'"),
    ("<ChecksumType> sha256", "<ChecksumType> crc32", "checksum type 'crc32' is not supported"),
    ("<ChecksumType> sha256", "<ChecksumType> shake_128", "checksum type 'shake_128' is not supported"),
    ("<ChecksumType> sha256", "<ChecksumType> sha1", "<BmapFileChecksum> is missing or malformed"),
    ("> 5-9 <", "> 1-9 <", "out of order"),
    ("> 5-9 <", "> 9-5 <", "out of order"),
    ("> 5-9 <", "> 5-10 <", "outside the image"),
    ("> 5-9 <", "> five <", "bad <Range>"),
    ("<MappedBlocksCount> 7 <", "<MappedBlocksCount> 8 <", "does not match"),
    ("<ImageSize> 40960 <", "<ImageSize> x <", "<ImageSize> is missing or not a number"),
    ("<ImageSize> 40960 <", "<ImageSize> 4096\u00b2 <", "<ImageSize> is missing or not a number"),
])
def test_parse_refuses_bad_files(old: str, new: str, message: str) -> None:
    text = bmap.to_xml(TWO)
    assert old in text
    with pytest.raises(BmapError, match=re.escape(message)):
        bmap.parse(reseal(text.replace(old, new)))


def test_parse_refuses_an_edited_file_and_non_xml(tmp_path: Path) -> None:
    text = bmap.to_xml(TWO)
    with pytest.raises(BmapError, match="corrupt"):
        bmap.parse(text.replace("> 5-9 <", "> 5-8 <"))
    with pytest.raises(BmapError, match="not a bmap file"):
        bmap.parse("<bmap")
    path = tmp_path / "x.bmap"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(BmapError, match=f"{path}: cannot read"):
        bmap.load(path)
    with pytest.raises(BmapError, match="cannot read"):
        bmap.load(tmp_path / "missing.bmap")

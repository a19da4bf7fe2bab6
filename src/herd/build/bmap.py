"""Block maps: which 4 KiB blocks of a sparse image hold data, with a sha256 per range (herd's), in the XML format of
`bmaptool create` (bmap format 2.0), so `bmaptool copy` can use our files and we can use theirs (any block
size, any checksum type hashlib knows).

The mapped ranges come from the filesystem (SEEK_DATA/SEEK_HOLE): an image is made as one big hole and only
what mkfs, sfdisk and GRUB write becomes data. Writing a stick then means writing only those ranges."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK_SIZE = 4096
VERSION = "2.0"
CHUNK = 4 * 1024 * 1024


class BmapError(Exception):
    pass


class NoChecksums(BmapError):
    """A valid bmap without range checksums (`bmaptool create --no-checksum`): nothing to verify a copy by."""


@dataclass(frozen=True)
class BlockRange:
    first: int     # block numbers, both included
    last: int
    checksum: str  # hex, of the range's bytes (the last block may be cut short by the image's end)


@dataclass(frozen=True)
class Bmap:
    image_size: int
    ranges: tuple[BlockRange, ...]
    block_size: int = BLOCK_SIZE
    checksum_type: str = "sha256"   # a hashlib name

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.checksum_type)

    @property
    def blocks_count(self) -> int:
        return -(-self.image_size // self.block_size)

    @property
    def mapped_blocks(self) -> int:
        return sum(r.last - r.first + 1 for r in self.ranges)

    def span(self, r: BlockRange) -> tuple[int, int]:
        """A range as (byte offset, byte length), cut at the image's end."""
        start = r.first * self.block_size
        return start, min((r.last + 1) * self.block_size, self.image_size) - start

    @property
    def mapped_bytes(self) -> int:
        return sum(self.span(r)[1] for r in self.ranges)


# ---------------------------------------------------------------------------------------------------------
# Mapped ranges of a file


def data_extents(fd: int) -> list[tuple[int, int]]:
    """(offset, length) of every data extent of an open file, from SEEK_DATA/SEEK_HOLE. A file without them
    has the rest of it reported as data, which is correct, only slower to write: so has one whose lseek
    ignores them and answers with a position that does not move on (noop_llseek), which would loop forever.
    Any other error is raised: taking it for "no more data" would map an image as (partly) empty."""
    size = os.fstat(fd).st_size
    extents: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                break
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            start = end = -1
        if start < pos or end <= start:  # no SEEK_DATA here: holes cannot be told from data
            extents.append((pos, size - pos))
            break
        extents.append((start, end - start))
        pos = end
    return extents


def block_ranges(extents: list[tuple[int, int]], block_size: int = BLOCK_SIZE) -> list[tuple[int, int]]:
    """Byte extents as (first, last) block ranges: widened to whole blocks, touching ranges merged."""
    out: list[tuple[int, int]] = []
    for offset, length in sorted(extents):
        if length <= 0:
            continue
        first, last = offset // block_size, (offset + length - 1) // block_size
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def read_span(fd: int, offset: int, length: int, chunk: int = CHUNK) -> Iterator[bytes]:
    end = offset + length
    while offset < end:
        data = os.pread(fd, min(chunk, end - offset), offset)
        if not data:
            raise BmapError(f"unexpected end of file at byte {offset}")
        yield data
        offset += len(data)


def create(image: Path, on_bytes: Callable[[int], None] | None = None, block_size: int = BLOCK_SIZE,
           checksum_type: str = "sha256") -> Bmap:
    """The bmap of an image: its data ranges and their checksums (reads every mapped byte once). herd's own
    are sha256 over 4 KiB blocks; the others are for reading bmaps that other tools made."""
    fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise BmapError(f"{image}: empty image")
        ranges = []
        for first, last in block_ranges(data_extents(fd), block_size):
            start = first * block_size
            h = hashlib.new(checksum_type)
            for data in read_span(fd, start, min((last + 1) * block_size, size) - start):
                h.update(data)
                if on_bytes:
                    on_bytes(len(data))
            ranges.append(BlockRange(first, last, h.hexdigest()))
        return Bmap(size, tuple(ranges), block_size, checksum_type)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# XML, as bmaptool writes it


def human_size(size: int) -> str:
    """bmaptool's human_size(), for the comments."""
    if size == 1:
        return "1 byte"
    if size < 512:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024.0
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} EiB"


HEADER = """\
<?xml version="1.0" ?>
<!-- This file contains the block map for an image file, which is basically
     a list of useful (mapped) block numbers in the image file. In other words,
     it lists only those blocks which contain data (boot sector, partition
     table, file-system metadata, files, directories, extents, etc). These
     blocks have to be copied to the target device. The other blocks do not
     contain any useful data and do not have to be copied to the target
     device.

     Made by herd (`build.py`), in the format of `bmaptool create`: flash with
     `build.py flash IMAGE DEVICE` or `bmaptool copy IMAGE DEVICE`. -->

<bmap version="{version}">
    <!-- Image size in bytes: {image_human} -->
    <ImageSize> {image_size} </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> {block_size} </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> {blocks} </BlocksCount>

    <!-- Count of mapped blocks: {mapped_human} or {percent:.1f}%   -->
    <MappedBlocksCount> {mapped} </MappedBlocksCount>

    <!-- Type of checksum used in this file -->
    <ChecksumType> {checksum_type} </ChecksumType>

    <!-- The checksum of this bmap file. When it is calculated, the value of
         the checksum has be zero (all ASCII "0" symbols).  -->
    <BmapFileChecksum> {checksum} </BmapFileChecksum>

    <!-- The block map which consists of elements which may either be a
         range of blocks or a single block. The 'chksum' attribute
         (if present) is the checksum of this blocks range. -->
    <BlockMap>
"""


def to_xml(bmap: Bmap) -> str:
    mapped = bmap.mapped_blocks
    fields = {
        "version": VERSION, "image_human": human_size(bmap.image_size), "image_size": bmap.image_size,
        "block_size": bmap.block_size, "blocks": bmap.blocks_count,
        "mapped_human": human_size(mapped * bmap.block_size), "percent": mapped * 100.0 / bmap.blocks_count,
        "mapped": mapped, "checksum_type": bmap.checksum_type,
    }
    zeros = "0" * len(bmap.hasher().hexdigest())
    lines = [HEADER.format(checksum=zeros, **fields)]
    for r in bmap.ranges:
        blocks = f"{r.first}-{r.last}" if r.last != r.first else f"{r.first}"
        lines.append(f'        <Range chksum="{r.checksum}"> {blocks} </Range>\n')
    lines.append("    </BlockMap>\n</bmap>\n")
    text = "".join(lines)
    # The file's own checksum is taken with its field all zeros, then written into that field.
    h = bmap.hasher()
    h.update(text.encode())
    return text.replace(zeros, h.hexdigest(), 1)


def _int(root: ET.Element, tag: str) -> int:
    node = root.find(tag)
    # Not str.isdigit(), which takes "4096²" (and int() then does not).
    if node is None or node.text is None or not re.fullmatch(r"[0-9]+", node.text.strip()):
        raise BmapError(f"<{tag}> is missing or not a number")
    return int(node.text.strip())


RANGE = re.compile(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?")


def _digest_length(kind: str) -> int:
    """Hex digits of a checksum of this type; a type hashlib does not know (or of no fixed size) is refused."""
    try:
        size = hashlib.new(kind).digest_size
    except (ValueError, TypeError):
        size = 0
    if not size:
        raise BmapError(f"checksum type {kind!r} is not supported (not a hash Python's hashlib knows)")
    return 2 * size


def parse(text: str) -> Bmap:
    """A bmap file (format 1.4 or 2.x, any checksum type hashlib knows), its own checksum verified. One made
    without range checksums raises NoChecksums."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise BmapError(f"not a bmap file: {exc}") from None
    version = root.get("version", "")
    if root.tag != "bmap" or not re.fullmatch(r"(2\.\d+|1\.4)", version):
        raise BmapError(f"unsupported bmap version {version!r}; this reads version 2 (bmaptool 3.x)")
    kind = (root.findtext("ChecksumType") or "").strip()
    digits = _digest_length(kind)
    checksum = re.compile(f"[0-9a-f]{{{digits}}}")
    stated = (root.findtext("BmapFileChecksum") or "").strip()
    if not checksum.fullmatch(stated):
        raise BmapError("<BmapFileChecksum> is missing or malformed")
    # As bmaptool does: the file's checksum is of the file with that field all zeros.
    h = hashlib.new(kind)
    h.update(text.replace(stated, "0" * digits, 1).encode())
    if h.hexdigest() != stated:
        raise BmapError("the bmap file is corrupt: its checksum does not match its content")
    image_size, block_size = _int(root, "ImageSize"), _int(root, "BlockSize")
    if block_size <= 0 or image_size <= 0:
        raise BmapError("<ImageSize> and <BlockSize> must be positive")
    ranges: list[BlockRange] = []
    nodes = list(root.iterfind("BlockMap/Range"))
    if nodes and all("chksum" not in node.attrib for node in nodes):
        raise NoChecksums("has no checksums (made with bmaptool create --no-checksum), so a write could not be "
                          "verified: make it again with checksums, or remove it and flash maps the image itself")
    for node in nodes:
        m = RANGE.fullmatch(node.text or "")
        chksum = node.get("chksum", "")
        if not m or not checksum.fullmatch(chksum):
            raise BmapError(f"bad <Range>: {ET.tostring(node, encoding='unicode').strip()}")
        first = int(m.group(1))
        last = int(m.group(2) or first)
        if last < first or (ranges and first <= ranges[-1].last) or last * block_size >= image_size:
            raise BmapError(f"bad <Range> {first}-{last}: out of order or outside the image")
        ranges.append(BlockRange(first, last, chksum))
    bmap = Bmap(image_size, tuple(ranges), block_size, kind)
    if _int(root, "BlocksCount") != bmap.blocks_count or _int(root, "MappedBlocksCount") != bmap.mapped_blocks:
        raise BmapError("<BlocksCount> or <MappedBlocksCount> does not match the image size and ranges")
    return bmap


def load(path: Path) -> Bmap:
    try:
        return parse(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise BmapError(f"{path}: cannot read: {exc}") from None
    except BmapError as exc:
        raise type(exc)(f"{path}: {exc}") from None

"""The bytes of a flash: the image's mapped ranges (its .bmap) copied to the target, checked against the bmap on
the way, and read back from the device (its cache dropped first) to compare with the bmap's checksums. Chunks are
read in a thread while the one before is hashed and written. The command around it is flash.py."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from herd.build.bmap import BLOCK_SIZE, BlockRange, Bmap

CHUNK = 4 * 1024 * 1024
BLKFLSBUF = 0x1261  # linux/fs.h: flush a block device's buffer cache


class FlashError(Exception):
    pass


@dataclass
class Counter:
    """Bytes done so far, for the progress bar and for saying how far an interrupted flash got."""
    total: int
    done: int = 0
    on_bytes: Callable[[int], None] | None = None

    def add(self, n: int) -> None:
        self.done += n
        if self.on_bytes:
            self.on_bytes(n)


@dataclass(frozen=True)
class Chunk:
    range: int          # index into bmap.ranges
    offset: int         # bytes
    data: memoryview
    short: bool         # the file ended before this chunk did


def chunks(fd: int, bmap: Bmap) -> Generator[Chunk, None, None]:
    """The mapped ranges' bytes, chunk by chunk, each read in a thread while the caller works on the one
    before (hashing and writing overlap reading). Two page-aligned buffers, as O_DIRECT wants: a chunk's data
    is valid until the caller asks for the chunk after the next. Use it in contextlib.closing()."""
    plan = [(i, pos, min(CHUNK, offset + length - pos))
            for i, (offset, length) in enumerate(bmap.span(r) for r in bmap.ranges)
            for pos in range(offset, offset + length, CHUNK)]
    buffers = [memoryview(mmap.mmap(-1, CHUNK)) for _ in range(2)]

    def read(k: int) -> int:
        _, pos, want = plan[k]
        view, got = buffers[k % 2], 0
        while got < want:
            n = os.preadv(fd, [view[got:want]], pos + got)
            if n == 0:
                break
            got += n
        return got

    pool = ThreadPoolExecutor(1, thread_name_prefix="flash-read")
    try:
        pending = pool.submit(read, 0) if plan else None
        for k, (i, pos, want) in enumerate(plan):
            assert pending is not None
            got = pending.result()
            pending = pool.submit(read, k + 1) if k + 1 < len(plan) else None
            yield Chunk(i, pos, buffers[k % 2][:got], got < want)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write(image_fd: int, fd: int, tail_fd: int | None, bmap: Bmap, counter: Counter) -> None:
    """Copy the mapped ranges; each range's bytes are checked against the bmap on the way (a bmap made for
    another image stops the copy). With O_DIRECT (tail_fd given) only whole 4 KiB blocks go through fd; a
    short last block goes through tail_fd."""
    hashes = [bmap.hasher() for _ in bmap.ranges]
    with contextlib.closing(chunks(image_fd, bmap)) as it:
        for chunk in it:
            n = len(chunk.data)
            if chunk.short:
                raise FlashError(f"the image ends at byte {chunk.offset + n}, before its bmap says")
            hashes[chunk.range].update(chunk.data)
            aligned = n - n % BLOCK_SIZE if tail_fd is not None else n
            if aligned:
                _pwrite_all(fd, chunk.data[:aligned], chunk.offset)
            if aligned < n:
                assert tail_fd is not None
                _pwrite_all(tail_fd, chunk.data[aligned:], chunk.offset + aligned)
            counter.add(n)
            r = bmap.ranges[chunk.range]
            if chunk.offset + n == sum(bmap.span(r)) and hashes[chunk.range].hexdigest() != r.checksum:
                raise FlashError(f"the image does not match its bmap at {describe(bmap, r)}: "
                                 "give the image's own --bmap, or remove the stale .bmap")


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def drop_cache(fd: int, block: bool) -> None:
    """After fsync: forget the cached pages so the read-back comes from the device."""
    if block:
        with contextlib.suppress(OSError):  # needs CAP_SYS_ADMIN; fadvise below still drops clean pages
            fcntl.ioctl(fd, BLKFLSBUF)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def verify(path: Path, bmap: Bmap, counter: Counter | None = None) -> list[BlockRange]:
    """The ranges whose bytes on PATH do not hash to the bmap's checksum (one cut short by the end too)."""
    hashes = [bmap.hasher() for _ in bmap.ranges]
    short: set[int] = set()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with contextlib.closing(chunks(fd, bmap)) as it:
            for chunk in it:
                hashes[chunk.range].update(chunk.data)
                if chunk.short:
                    short.add(chunk.range)
                if counter:
                    counter.add(len(chunk.data))
    finally:
        os.close(fd)
    return [r for i, r in enumerate(bmap.ranges) if i in short or hashes[i].hexdigest() != r.checksum]


def describe(bmap: Bmap, r: BlockRange) -> str:
    offset, length = bmap.span(r)
    return f"blocks {r.first}-{r.last} (bytes {offset}-{offset + length - 1})"

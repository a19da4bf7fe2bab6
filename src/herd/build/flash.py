"""`python3 build.py flash IMAGE DEVICE`: write an image to a USB stick, safely.

Refuses anything but a regular file or a whole, unmounted, removable or USB-attached disk big enough for the
image (see herd.build.target); asks before writing; writes only the image's mapped blocks (its .bmap);
flushes, drops the device's cache, and reads every mapped range back to compare it with the bmap's checksum."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from herd.build import bmap as bmaps
from herd.build import flashio
from herd.build.bmap import BLOCK_SIZE, BlockRange, Bmap, BmapError
from herd.build.flashio import Counter, FlashError, describe, verify, write
from herd.build.target import (
    BlockDevice,
    RegularFile,
    System,
    Target,
    changes,
    human,
    read_opened,
    read_target,
    refusals,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130

EPILOG = """\
what it writes:
  Only the image's mapped blocks, listed in IMAGE.bmap (made by the build beside every image; computed with
  SEEK_DATA/SEEK_HOLE when there is none). On a stick the unmapped blocks are not written, so they keep
  whatever was there before, as with bmaptool: the image's filesystems never read blocks they have not
  written (and the root filesystem grows into the rest of the stick at first boot). A regular file is
  emptied and sized to the image first, so it ends up a sparse, exact copy of the image. The .bmap files
  are bmaptool's: `bmaptool copy IMAGE DEVICE` does the same job, and --bmap takes bmaptool's (any block
  size and checksum type; not one made with --no-checksum: nothing could verify the write).

what it refuses (exit 2, nothing written):
  a partition, a device that is neither removable nor on USB (loop devices are allowed, as test sticks),
  a disk with a mounted filesystem, active swap, LVM/dm-crypt/RAID on it or on any of its partitions, the
  disk holding / or /boot, a read-only device, a device smaller than the image, a disk or file backing a
  loop device, a loop device over any of these or over the image, a missing /dev node or a link to nothing,
  a file in /proc, /sys or another kernel interface, a compressed image (.img.zst: give the .img, or
  zstd -d it first), an image that does not match its bmap (checked before anything is asked or written;
  while written, it is checked again). What is written is what was checked and shown: a
  stick swapped on the same /dev name (or a file replaced) while the question waited is refused too.

examples:
  python3 build.py flash out/2026.11.0/demo-web-2026.11.0.img /dev/sdb
  python3 build.py flash out/2026.11.0/demo-db-2026.11.0.img vm-disk.img --yes

Exit codes: 0 written and verified, 1 write or verification failed, 2 refused or bad input, 130 interrupted.
"""


class Refused(Exception):
    pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="build.py flash", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Write a herd image to a USB stick (or a regular file), then read it back to verify it.")
    p.add_argument("image", type=Path, metavar="IMAGE", help="the image, e.g. out/<release>/<cluster>-web-….img")
    p.add_argument("device", type=Path, metavar="DEVICE",
                   help="the whole stick, e.g. /dev/sdb (see lsblk), or a regular file (made if missing)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed when stdin is not "
                   "a terminal)")
    p.add_argument("--bmap", type=Path, metavar="FILE", help="the block map; default: IMAGE.bmap if present, "
                   "else the image's data ranges (SEEK_DATA)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------
# Opening the target (the bytes written and read back: flashio.py)


def open_target(target: Target, path: Path, image: Path, image_size: int, system: System | None,
                direct: bool = True) -> tuple[int, int | None]:
    """(fd for aligned writes, fd for the rest or None), for the very target that was checked (and shown):
    one swapped since (another stick on the same /dev name, another file renamed over it) is refused with
    nothing written. A stick is claimed exclusively (the kernel says busy if anything has it) and written with
    O_DIRECT unless `direct` is false; a file is emptied and sized to the image (all one hole)."""
    if isinstance(target, BlockDevice):
        flags = os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = -1
            if direct:
                try:
                    fd = os.open(path, flags | os.O_DIRECT)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # EINVAL: no O_DIRECT on this device
                        raise
            if fd < 0:
                fd, direct = os.open(path, flags), False
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise Refused(f"{path} is busy (mounted, or held by another program)") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise Refused(f"cannot open {path}: {exc.strerror}; run as root") from None
            raise Refused(f"cannot open {path}: {exc.strerror}") from None
    else:
        assert isinstance(target, RegularFile)
        # A file that was missing must still be: not one (or a link) made in the meantime.
        flags = os.O_WRONLY | os.O_CLOEXEC | (0 if target.exists else os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise Refused(f"{path} appeared after it was checked: nothing written; run flash again") from None
        except OSError as exc:
            raise Refused(f"cannot open {path}: {exc.strerror}") from None
    try:
        made_now = isinstance(target, RegularFile) and not target.exists  # O_EXCL: nothing was there
        if not made_now:
            found = changes(target, read_opened(fd, path, image, system))
            if found:
                raise Refused(f"{path} is not what was checked ({'; '.join(found)}): nothing written; "
                              "run flash again")
        if isinstance(target, BlockDevice):
            # The rest through the open device itself, not its name again.
            return fd, os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC) if direct else None
        os.ftruncate(fd, 0)
        os.ftruncate(fd, image_size)
    except BaseException:
        os.close(fd)
        raise
    return fd, None


# ---------------------------------------------------------------------------------------------------------
# The command


# Compressed release files (.img.zst and the like) by their first bytes, and how to unpack each.
MAGIC = {b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz", b"\x1f\x8b": "gzip", b"BZh": "bzip2"}
DECOMPRESS = {"zstd": "zstd -d", "xz": "xz -dk", "gzip": "gzip -dk", "bzip2": "bzip2 -dk"}


def compression(image: Path) -> str:
    """The compression the file starts with, "" for none (a disk image starts with its boot sector)."""
    with open(image, "rb") as f:
        head = f.read(8)
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), "")


def load_bmap(image: Path, given: Path | None, console: Console) -> Bmap:
    size = image.stat().st_size
    path = given or image.with_name(image.name + ".bmap")
    if given or path.exists():
        try:
            bmap = bmaps.load(path)
        except BmapError as exc:
            raise Refused(str(exc)) from None
        if bmap.image_size != size:
            raise Refused(f"{path} is for an image of {bmap.image_size} bytes, {image} has {size}: "
                          "not this image's bmap")
        return bmap
    console.print(f"no {escape(path.name)}: mapping the image with SEEK_DATA", highlight=False)
    try:
        return bmaps.create(image)
    except BmapError as exc:  # an empty image, one cut short while read
        raise Refused(str(exc)) from None


def check_image(image: Path, bmap: Bmap, console: Console) -> list[BlockRange]:
    """The ranges where the image does not hash to its bmap (a .bmap left from another build of the same size),
    found before anything is written or asked; a fraction of a second from the page cache."""
    checked = Counter(bmap.mapped_bytes)
    with progress_bar(console) as bar:
        task = bar.add_task(f"checking {image.name} against its bmap", total=bmap.mapped_bytes)
        checked.on_bytes = _advance(bar, task)
        return verify(image, bmap, checked)


def confirm(target: Target, path: Path, image: Path, bmap: Bmap, console: Console,
            ask: Callable[[str], str], interactive: bool) -> bool:
    """Show what is about to be overwritten, and wait for "yes"."""
    if isinstance(target, RegularFile) and target.size == 0:
        return True  # a new or empty file: nothing to lose
    about = target.description if isinstance(target, BlockDevice) else \
        f"a file of {human(target.size)}" if isinstance(target, RegularFile) else ""
    console.print(f"[bold]{escape(str(path))}[/]: {escape(about)}", highlight=False)
    console.print(f"Everything on it will be lost. It will hold {escape(image.name)} "
                  f"({human(bmap.image_size)}, {human(bmap.mapped_bytes)} to write).", highlight=False)
    if not interactive:
        raise Refused("stdin is not a terminal, so nobody can confirm: give --yes to write without asking")
    try:
        return ask("Type yes to write it: ").strip() == "yes"
    except EOFError:
        return False


class SpeedColumn(ProgressColumn):
    """MiB/s, to match the MiB of the byte counts (rich's own speed column is in MB/s)."""

    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else f"{task.speed / 2**20:.1f} MiB/s", style="progress.data.speed")


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), DownloadColumn(binary_units=True),
                    SpeedColumn(), TimeRemainingColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def run(args: argparse.Namespace, console: Console, system: System | None,
        ask: Callable[[str], str], interactive: bool) -> int:
    image, path = args.image, args.device
    if not image.is_file():
        raise Refused(f"{image}: no such image file")
    compressed = compression(image)
    if compressed:
        raise Refused(f"{image} is {compressed}-compressed, not a disk image: write the .img beside it, or "
                      f"decompress it first (for example: {DECOMPRESS[compressed]} {image})")
    try:
        target = read_target(path, image, system)
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror or exc}") from None
    bmap = load_bmap(image, args.bmap, console)
    stale = check_image(image, bmap, console)
    if stale:
        more = f" and {len(stale) - 1} more ranges" if len(stale) > 1 else ""
        raise Refused(f"{image} does not match its bmap at {describe(bmap, stale[0])}{more}: give the image's own "
                      "--bmap, or remove the stale .bmap (without one the image's data ranges are found anew)")
    reasons = refusals(target, bmap.image_size)
    if reasons:
        console.print(f"[red]error:[/] will not write to {escape(str(path))}:", highlight=False)
        for reason in reasons:
            console.print(f"  {escape(reason)}", highlight=False)
        return EXIT_REFUSED
    if not args.yes and not confirm(target, path, image, bmap, console, ask, interactive):
        console.print("not confirmed: nothing written", highlight=False)
        return EXIT_REFUSED
    image_fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    fd: int | None = None
    tail_fd: int | None = None
    try:
        # O_DIRECT needs aligned offsets: a bmap of smaller blocks (bmaptool's for another tool's image) has
        # ranges starting anywhere on 512 bytes, written through the page cache instead.
        try:
            fd, tail_fd = open_target(target, path, image, bmap.image_size, system,
                                      direct=bmap.block_size % BLOCK_SIZE == 0)
        except OSError as exc:  # sizing the file (too large for its filesystem, say)
            console.print(f"[red]error:[/] preparing {escape(str(path))} failed: {escape(exc.strerror or str(exc))}",
                          highlight=False)
            return EXIT_FAILED
        # The target stays open (a stick claimed) until it is verified, read back through that same open file.
        return write_and_verify(image, image_fd, path, fd, tail_fd, isinstance(target, BlockDevice), bmap, console)
    finally:
        for f in (tail_fd, fd, image_fd):
            if f is not None:
                os.close(f)


def write_and_verify(image: Path, image_fd: int, path: Path, fd: int, tail_fd: int | None, block: bool,
                     bmap: Bmap, console: Console) -> int:
    counter = Counter(bmap.mapped_bytes)
    start = time.monotonic()
    try:
        with progress_bar(console) as bar:
            task = bar.add_task(f"writing {path.name}", total=bmap.mapped_bytes)
            counter.on_bytes = _advance(bar, task)
            write(image_fd, fd, tail_fd, bmap, counter)
            bar.update(task, description=f"flushing {path.name}")
            for f in (tail_fd, fd):
                if f is not None:
                    os.fsync(f)
            flashio.drop_cache(fd, block)
        written = time.monotonic() - start
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: {escape(str(path))} is incomplete ({human(counter.done)} of "
                      f"{human(counter.total)} written): flash it again before using it", highlight=False)
        return EXIT_INTERRUPTED
    except (FlashError, OSError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        console.print(f"[red]error:[/] writing {escape(str(path))} failed after {human(counter.done)}: "
                      f"{escape(message)}; the target is incomplete", highlight=False)
        return EXIT_FAILED
    checked = Counter(bmap.mapped_bytes)
    try:
        with progress_bar(console) as bar:
            task = bar.add_task(f"verifying {path.name}", total=bmap.mapped_bytes)
            checked.on_bytes = _advance(bar, task)
            bad = verify(Path(f"/proc/self/fd/{fd}"), bmap, checked)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/] while verifying: {escape(str(path))} was written in full "
                      "but not verified", highlight=False)
        return EXIT_INTERRUPTED
    except OSError as exc:
        console.print(f"[red]error:[/] reading {escape(str(path))} back failed after {human(checked.done)}: "
                      f"{escape(exc.strerror or str(exc))}; a failing stick? try another one", highlight=False)
        return EXIT_FAILED
    if bad:
        console.print(f"[red]error:[/] verification failed: {escape(str(path))} does not read back as written "
                      f"in {len(bad)} of {len(bmap.ranges)} ranges:", highlight=False)
        for r in bad[:5]:
            console.print(f"  {describe(bmap, r)}", highlight=False)
        if len(bad) > 5:
            console.print(f"  … and {len(bad) - 5} more", highlight=False)
        console.print("  a failing or fake stick? try another one", highlight=False)
        return EXIT_FAILED
    total = time.monotonic() - start
    speed = bmap.mapped_bytes / written / 2**20 if written > 0 else 0.0
    print(f"flashed {image.name} to {path}: wrote {human(bmap.mapped_bytes)} of {human(bmap.image_size)} in "
          f"{written:.1f} s ({speed:.1f} MiB/s), verified; {total:.1f} s in all", flush=True)
    return EXIT_OK


def _advance(bar: Progress, task: TaskID) -> Callable[[int], None]:
    return lambda n: bar.advance(task, n)


def main(argv: list[str], *, system: System | None = None, ask: Callable[[str], str] = input,
         interactive: bool | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args, console, system, ask, sys.stdin.isatty() if interactive is None else interactive)
    except Refused as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: nothing was written", highlight=False)
        return EXIT_INTERRUPTED


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

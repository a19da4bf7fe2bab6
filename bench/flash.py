#!/usr/bin/env python3
"""Flash benchmark (figures, not asserts): one image written to the same target, a loop device over a file in
the cache directory standing in for a stick, one run each:

- `build.py flash` with the image's bmap: only the mapped blocks, O_DIRECT, then every range read back and
  checked (the figure includes that verification; the write alone is shown too);
- `dd` of the whole raw image (bs=4M, oflag=direct, conv=fsync: the same I/O mode, every byte);
- `bmaptool copy` with the same bmap, for reference (no read-back).

Twice: first at the loop device's own speed (the host's page cache: memory speed, so this measures CPU, and
the sha256 of every byte, written and read back, is most of it), then throttled to a USB stick's speed with
the blkio cgroup (default: write 20 MiB/s, read 80 MiB/s). The throttle binds direct and synchronous I/O only,
so bmaptool, which writes through the page cache, is left out of that pass. Before each run the image's and
the target's cached pages are dropped. Target: the bmap flash at least 3x faster than dd of the whole image.

    python3 bench/flash.py [IMAGE] [--stick W,R]    (as root; default: the newest image under out/)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from herd.build import bmap  # noqa: E402

CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd"))
PYTHON = CACHE / "venv/bin/python"
BLKIO = Path("/sys/fs/cgroup/blkio")
WRITTEN = re.compile(r"in ([\d.]+) s \(")
MiB = 2**20


def drop(*paths: Path) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(args: list[str], cold: list[Path], cgroup: Path | None) -> tuple[float, str]:
    drop(*cold)
    enter: Callable[[], None] | None = None
    if cgroup is not None:
        procs = cgroup / "cgroup.procs"

        def enter() -> None:
            procs.write_text(str(os.getpid()))

    start = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT / "src")},
                       preexec_fn=enter)
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return elapsed, r.stdout


def newest_image() -> Path:
    images = sorted((PROJECT / "out").glob("*/*.img"), key=lambda p: p.stat().st_mtime)
    if not images:
        sys.exit("no image under out/: run python3 build.py first, or give one")
    return images[-1]


def throttle(loop: str, write: float, read: float) -> Path:
    if not (BLKIO / "blkio.throttle.write_bps_device").exists():
        sys.exit(f"no blkio cgroup at {BLKIO}: run with --stick 0 to skip the stick-speed pass")
    st = os.stat(loop)
    dev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    cgroup = BLKIO / f"herd-bench-flash-{os.getpid()}"
    cgroup.mkdir()
    (cgroup / "blkio.throttle.write_bps_device").write_text(f"{dev} {int(write * MiB)}")
    (cgroup / "blkio.throttle.read_bps_device").write_text(f"{dev} {int(read * MiB)}")
    return cgroup


def runs(image: Path, loop: str, bmap_file: Path, backing: Path, cgroup: Path | None) -> dict[str, float]:
    cold = [image, backing]
    ours, out = timed([str(PYTHON), "-m", "herd.build.cli", "flash", str(image), loop, "--yes",
                       "--bmap", str(bmap_file)], cold, cgroup)
    m = WRITTEN.search(out)
    figures = {"flash": ours, "flash writing": float(m.group(1)) if m else float("nan")}
    figures["dd"], _ = timed(["dd", f"if={image}", f"of={loop}", "bs=4M", "oflag=direct", "conv=fsync",
                              "status=none"], cold, cgroup)
    if cgroup is None:
        figures["bmaptool"], _ = timed(["bmaptool", "-q", "copy", "--bmap", str(bmap_file), str(image), loop],
                                       cold, None)
    return figures


def report(title: str, f: dict[str, float], size: int, mapped: int) -> None:
    print(title)
    print(f"  build.py flash (bmap + verify)  {f['flash']:6.1f} s   (writing {f['flash writing']:.1f} s, "
          f"{mapped / MiB / f['flash writing']:.0f} MiB/s)")
    print(f"  dd whole image                  {f['dd']:6.1f} s   ({size / MiB / f['dd']:.0f} MiB/s)")
    if "bmaptool" in f:
        print(f"  bmaptool copy (no verify)       {f['bmaptool']:6.1f} s")
    print(f"  dd / build.py flash: {f['dd'] / f['flash']:.1f}x with verification, "
          f"{f['dd'] / f['flash writing']:.1f}x writing only (target: 3x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, nargs="?", help="default: the newest out/*/*.img")
    p.add_argument("--stick", default="20,80", help="a stick's write,read speed in MiB/s; 0: skip that pass")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/flash.py needs root (a loop device)")
    image = (args.image or newest_image()).resolve()
    size = image.stat().st_size
    bmap_file = image.with_name(image.name + ".bmap")
    backing = CACHE / f"bench-flash-{os.getpid()}.img"
    made = 0.0
    if not bmap_file.exists():  # an image from before bmaps: make one aside
        bmap_file = CACHE / f"bench-flash-{os.getpid()}.bmap"
        start = time.monotonic()
        bmap_file.write_text(bmap.to_xml(bmap.create(image)))
        made = time.monotonic() - start
    mapped = bmap.load(bmap_file).mapped_bytes
    with open(backing, "wb") as f:  # every block written once, as on a stick: no run pays for allocating
        zeros = bytes(4 * MiB)
        for _ in range(-(-size // len(zeros))):
            f.write(zeros)
        f.truncate(size)
        os.fsync(f.fileno())
    loop = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True,
                          check=True).stdout.strip()
    cgroup = None
    try:
        raw = runs(image, loop, bmap_file, backing, None)
        stick = None
        if args.stick != "0":
            write, read = (float(x) for x in args.stick.split(","))
            cgroup = throttle(loop, write, read)
            stick = runs(image, loop, bmap_file, backing, cgroup)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        backing.unlink(missing_ok=True)
        if bmap_file.parent == CACHE:
            bmap_file.unlink(missing_ok=True)
        if cgroup is not None:
            cgroup.rmdir()
    print(f"image {image.name}: {size / MiB:.0f} MiB, {mapped / MiB:.0f} MiB mapped ({100 * mapped / size:.0f} %)"
          + (f"; its bmap made in {made:.1f} s (none beside it)" if made else ""))
    report(f"a loop device over a file in {CACHE}, at its own speed:", raw, size, mapped)
    if stick is not None:
        report(f"the same, throttled to a stick's speed (write {write:g} MiB/s, read {read:g} MiB/s):", stick,
               size, mapped)


if __name__ == "__main__":
    main()

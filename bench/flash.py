#!/usr/bin/env python3
"""Flash benchmark (figures, not asserts): one image written to the same target, a loop device over a file in
the cache directory standing in for a stick, one run each:

- `build.py flash` with the image's bmap: only the mapped blocks, O_DIRECT, then every range read back and
  checked (the figure includes that verification; the write alone is shown too);
- `dd` of the whole raw image (bs=4M, oflag=direct, conv=fsync: the same I/O mode, every byte);
- `bmaptool copy` with the same bmap, for reference (no read-back).

Before each run the image's and the target's cached pages are dropped, so the image is read from disk as
after a fresh build. The target's disk is this machine's, not a stick: compare the ratios, not the speeds.
Target: the bmap flash at least 3x faster than dd of the whole image.

    python3 bench/flash.py [IMAGE]     (as root; default: the newest image under out/)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from herd.build import bmap  # noqa: E402

CACHE = Path(os.environ.get("HERD_CACHE", "/var/cache/herd"))
PYTHON = CACHE / "venv/bin/python"
WRITTEN = re.compile(r"in ([\d.]+) s \(")


def drop(*paths: Path) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(args: list[str], *cold: Path) -> tuple[float, str]:
    drop(*cold)
    start = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT / "src")})
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return elapsed, r.stdout


def newest_image() -> Path:
    images = sorted((PROJECT / "out").glob("*/*.img"), key=lambda p: p.stat().st_mtime)
    if not images:
        sys.exit("no image under out/: run python3 build.py first, or give one")
    return images[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, nargs="?", help="default: the newest out/*/*.img")
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
        zeros = bytes(4 * 2**20)
        for _ in range(-(-size // len(zeros))):
            f.write(zeros)
        f.truncate(size)
        os.fsync(f.fileno())
    loop = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        ours, out = timed([str(PYTHON), "-m", "herd.build.cli", "flash", str(image), loop, "--yes",
                           "--bmap", str(bmap_file)], image, backing)
        m = WRITTEN.search(out)
        write_only = float(m.group(1)) if m else float("nan")
        dd, _ = timed(["dd", f"if={image}", f"of={loop}", "bs=4M", "oflag=direct", "conv=fsync", "status=none"],
                      image, backing)
        theirs, _ = timed(["bmaptool", "-q", "copy", "--bmap", str(bmap_file), str(image), loop], image, backing)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        backing.unlink(missing_ok=True)
        if bmap_file.parent == CACHE:
            bmap_file.unlink(missing_ok=True)
    mib = 2**20
    print(f"image {image.name}: {size / mib:.0f} MiB, {mapped / mib:.0f} MiB mapped ({100 * mapped / size:.0f} %)"
          + (f"; its bmap made in {made:.1f} s (none beside it)" if made else ""))
    print(f"target: a loop device over a file in {CACHE}")
    print(f"  build.py flash (bmap + verify)  {ours:6.1f} s   (writing {write_only:.1f} s, "
          f"{mapped / mib / write_only:.0f} MiB/s)")
    print(f"  dd whole image                  {dd:6.1f} s   ({size / mib / dd:.0f} MiB/s)")
    print(f"  bmaptool copy (no verify)       {theirs:6.1f} s")
    print(f"  dd / build.py flash: {dd / ours:.1f}x with verification, {dd / write_only:.1f}x writing only "
          "(target: 3x)")


if __name__ == "__main__":
    main()

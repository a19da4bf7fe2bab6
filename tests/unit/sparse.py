"""A small sparse disk image for the bmap and flash tests: a few data extents (one crossing a block boundary,
one in mid-block, one cut short by an image end that is not a whole block) between holes."""

from __future__ import annotations

import random
from pathlib import Path

MiB = 1024 * 1024
SIZE = 8 * MiB + 1000
EXTENTS = [(0, 5000), (1 * MiB, 64 * 1024), (3 * MiB + 100, 10), (8 * MiB, 1000)]
# The same extents as 4 KiB block ranges, both ends included.
BLOCKS = [(0, 1), (256, 271), (768, 768), (2048, 2048)]


def make_image(path: Path, seed: int = 1, size: int = SIZE) -> Path:
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in EXTENTS:
            f.seek(offset)
            f.write(rng.randbytes(length))
    return path

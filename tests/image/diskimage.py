"""Looking inside a built image without mounting or booting it: sfdisk for the partition table, debugfs for
the ext4 root (at its offset in the image), mtools for the ESP."""

from __future__ import annotations

import gzip
import json
import lzma
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Part:
    start: int  # bytes
    size: int
    type: str
    uuid: str
    name: str


def partitions(image: Path) -> tuple[str, list[Part]]:
    out = subprocess.run(["sfdisk", "--json", str(image)], check=True, capture_output=True, text=True).stdout
    table = json.loads(out)["partitiontable"]
    parts = [Part(p["start"] * 512, p["size"] * 512, p["type"].upper(), p["uuid"].upper(), p.get("name", ""))
             for p in table["partitions"]]
    return table["label"], parts


class Ext4:
    def __init__(self, image: Path, offset: int) -> None:
        self.device = f"{image}?offset={offset}"

    def _debugfs(self, request: str) -> str:
        r = subprocess.run(["debugfs", "-R", request, self.device], capture_output=True)
        return r.stdout.decode("utf-8", "replace")

    def read(self, path: str) -> bytes:
        r = subprocess.run(["debugfs", "-R", f"cat {path}", self.device], capture_output=True, check=True)
        return r.stdout

    def text(self, path: str) -> str:
        return self.read(path).decode()

    def stat(self, path: str) -> dict[str, int | str] | None:
        out = self._debugfs(f"stat {path}")
        m = re.search(r"Type: (\S+)\s+Mode:\s+(\d+)", out)
        if not m:
            return None
        user = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
        size = re.search(r"Size: (\d+)", out)
        return {"type": m.group(1), "mode": int(m.group(2), 8), "uid": int(user.group(1)) if user else -1,
                "gid": int(user.group(2)) if user else -1, "size": int(size.group(1)) if size else -1}

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def listdir(self, path: str) -> list[str]:
        out = self._debugfs(f"ls -p {path}")
        names = [line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6]
        return [n for n in names if n not in (".", "..")]

    def readlink(self, path: str) -> str:
        m = re.search(r'Fast link dest: "([^"]*)"', self._debugfs(f"stat {path}"))
        return m.group(1) if m else ""

    def label_and_uuid(self) -> tuple[str, str]:
        out = subprocess.run(["dumpe2fs", "-h", self.device], capture_output=True, text=True).stdout
        label = re.search(r"Filesystem volume name:\s+(\S*)", out)
        uuid = re.search(r"Filesystem UUID:\s+(\S+)", out)
        return (label.group(1) if label else "", uuid.group(1) if uuid else "")


def esp_listing(image: Path, offset: int, path: str) -> str:
    return subprocess.run(["mdir", "-b", "-i", f"{image}@@{offset}", f"::{path}"], capture_output=True, text=True,
                          env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}, check=True).stdout


def cpio_names(data: bytes) -> list[str]:
    """File names in an initramfs: concatenated (possibly compressed) newc cpio archives."""
    names: list[str] = []
    while data:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
            continue
        if data[:6] == b"\xfd7zXZ\x00":
            data = lzma.decompress(data)
            continue
        if data[:6] != b"070701":
            break
        pos = 0
        while data[pos:pos + 6] == b"070701":
            size = int(data[pos + 54:pos + 62], 16)
            namesize = int(data[pos + 94:pos + 102], 16)
            name = data[pos + 110:pos + 110 + namesize - 1].decode("utf-8", "replace")
            pos += (110 + namesize + 3) & ~3
            pos += (size + 3) & ~3
            if name == "TRAILER!!!":
                break
            names.append(name)
        data = data[pos:].lstrip(b"\0")
    return names

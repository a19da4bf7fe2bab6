"""Looking inside a built image without mounting or booting it: sfdisk for the partition table, debugfs for
the ext4 root and unsquashfs for /usr (each at its offset in the image), mtools for the ESP."""

from __future__ import annotations

import gzip
import json
import lzma
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from herd.build.disk import ROOT_X86_64, USR_X86_64


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


_LISTED = re.compile(r"^(\S{10}) (\d+)/(\d+)\s+(\S+) \d{4}-\d\d-\d\d \d\d:\d\d (.*)$")
_TYPES = {"-": "regular", "d": "directory", "l": "symlink", "c": "character", "b": "block", "p": "FIFO",
          "s": "socket"}


def _mode(perms: str) -> int:
    """The permission bits of an `ls -l` mode string such as rwsr-xr-x."""
    mode = 0
    for i, (char, bit) in enumerate(zip(perms, "rwxrwxrwx", strict=True)):
        if char.lower() in (bit, "s", "t") and char not in "ST":
            mode |= 1 << (8 - i)
    for i, special in ((2, 0o4000), (5, 0o2000), (8, 0o1000)):
        if perms[i] in "sStT":
            mode |= special
    return mode


class Squashfs:
    """The same questions as Ext4, of a squashfs (the image's /usr), through unsquashfs."""

    def __init__(self, image: Path, offset: int) -> None:
        self.image, self.offset = image, offset

    def _entries(self, path: str) -> list[tuple[str, dict[str, int | str], str]]:
        """(path, stat, link target) of path, its parents and, for a directory, everything under it."""
        r = subprocess.run(["unsquashfs", "-o", str(self.offset), "-lln", "-d", "", str(self.image),
                            path.strip("/")], capture_output=True, check=True)
        out = []
        for line in r.stdout.decode("utf-8", "replace").splitlines():
            m = _LISTED.match(line)
            if not m:
                continue
            perms, uid, gid, size, name = m.groups()
            name, _, target = name.partition(" -> ") if perms[0] == "l" else (name, "", "")
            out.append((name or "/", {"type": _TYPES[perms[0]], "mode": _mode(perms[1:]), "uid": int(uid),
                                      "gid": int(gid), "size": int(size) if size.isdigit() else -1}, target))
        return out

    def read(self, path: str) -> bytes:
        return subprocess.run(["unsquashfs", "-o", str(self.offset), "-cat", str(self.image), path.strip("/")],
                              capture_output=True, check=True).stdout

    def text(self, path: str) -> str:
        return self.read(path).decode()

    def stat(self, path: str) -> dict[str, int | str] | None:
        want = "/" + path.strip("/")
        return next((st for name, st, _ in self._entries(path) if name == want), None)

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def listdir(self, path: str) -> list[str]:
        want = "/" + path.strip("/")
        prefix = want.rstrip("/") + "/"
        return [name[len(prefix):] for name, _, _ in self._entries(path)
                if name.startswith(prefix) and "/" not in name[len(prefix):]]

    def readlink(self, path: str) -> str:
        want = "/" + path.strip("/")
        return next((target for name, _, target in self._entries(path) if name == want), "")


class RootFs:
    """The node's file system as it boots: the ext4 root with the squashfs mounted on /usr (and the merged-/usr
    links, /lib -> usr/lib and the like, followed into it)."""

    def __init__(self, image: Path) -> None:
        _, parts = partitions(image)
        (root,) = [p for p in parts if p.type == ROOT_X86_64]
        (usr,) = [p for p in parts if p.type == USR_X86_64]
        self.root, self.usr = Ext4(image, root.start), Squashfs(image, usr.start)

    def _where(self, path: str) -> tuple[Ext4 | Squashfs, str]:
        first, _, rest = path.strip("/").partition("/")
        if first == "usr":
            return self.usr, "/" + rest
        link = self.root.readlink("/" + first) if first else ""
        if link.removeprefix("/").startswith("usr/"):
            return self.usr, "/" + link.removeprefix("/").removeprefix("usr/") + ("/" + rest if rest else "")
        return self.root, path

    def read(self, path: str) -> bytes:
        fs, inner = self._where(path)
        return fs.read(inner)

    def text(self, path: str) -> str:
        return self.read(path).decode()

    def stat(self, path: str) -> dict[str, int | str] | None:
        fs, inner = self._where(path)
        return fs.stat(inner)

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def listdir(self, path: str) -> list[str]:
        fs, inner = self._where(path)
        return fs.listdir(inner)

    def readlink(self, path: str) -> str:
        fs, inner = self._where(path)
        return fs.readlink(inner)


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

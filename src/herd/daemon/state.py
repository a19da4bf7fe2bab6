"""What herdd keeps across restarts, in its state dir: its identity and its boot generation. Every write is
atomic (temp file, fsync, rename, fsync the dir), so power loss at any moment leaves the old or the new
content, never a torn or empty file, and never a second identity."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

_WRITING = threading.Lock()


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # one name: a crash's leftover is simply overwritten next time
    with _WRITING:  # herdd writes from its event loop and from worker threads: one write at a time
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load_json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def save_json(self, name: str, data: Any) -> None:
        write_atomic(self.path / name, json.dumps(data, sort_keys=True).encode() + b"\n", 0o600)

    def identity(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.path / "identity.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable: treated as absent, and rewritten once known
        return data if isinstance(data, dict) and isinstance(data.get("name"), str) else None

    def save_identity(self, name: str, role: str, how: str) -> None:
        write_atomic(self.path / "identity.json",
                     json.dumps({"name": name, "role": role, "how": how}).encode() + b"\n", 0o644)

    def next_generation(self, wall_clock: float | None = None) -> int:
        """A number larger than any this node used before, persisted before it is used. The wall clock is
        a floor so that a node whose state was wiped (reflashed) is not taken for a replayer."""
        path = self.path / "generation"
        try:
            last = int(path.read_text().strip())
        except (OSError, ValueError):
            last = 0
        now = int(time.time() if wall_clock is None else wall_clock)
        generation = max(last + 1, now)
        write_atomic(path, f"{generation}\n".encode(), 0o644)
        return generation

    def raise_generation(self, above: int) -> int:
        """A generation larger than `above` (one a peer has seen from this node), persisted before use."""
        return self.next_generation(wall_clock=above + 1)

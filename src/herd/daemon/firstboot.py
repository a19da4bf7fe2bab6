"""What makes a freshly flashed box a node of its own: host name, machine-id. Each step is idempotent and skipped
when already done; none of them runs under `--node` (tests share the host). SSH host keys are sshd's own unit's
job (ssh.service's drop-in runs `ssh-keygen -A` before sshd): herdd making them too had both generate an RSA
key at once on a box's first boot, and held herdd's join up for it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from herd.daemon.state import write_atomic


def set_hostname(name: str, etc: Path = Path("/etc")) -> None:
    if socket.gethostname() != name:
        socket.sethostname(name)
    hostname = etc / "hostname"
    if not hostname.exists() or hostname.read_text().strip() != name:
        write_atomic(hostname, f"{name}\n".encode(), 0o644)


def machine_id(etc: Path = Path("/etc")) -> bool:
    path = etc / "machine-id"
    if path.exists() and path.read_text().strip():
        return False
    if shutil.which("systemd-machine-id-setup"):
        subprocess.run(["systemd-machine-id-setup"], check=True, capture_output=True)
    else:
        write_atomic(path, os.urandom(16).hex().encode() + b"\n", 0o444)
    return True


def publish_node_name(name: str, path: Path = Path("/run/herd/node.txt")) -> None:
    """For Apache's /herd-node (web nodes): which real server answered."""
    write_atomic(path, f"{name}\n".encode(), 0o644)


def in_initial_netns() -> bool:
    """True unless this process provably runs in a network namespace other than the host's: there, `--node`
    must not touch interfaces. Proof is PID 1 being elsewhere, or ours being one `ip netns` made."""
    try:
        mine = os.stat("/proc/self/ns/net")
    except OSError:
        return True
    try:
        return os.stat("/proc/1/ns/net").st_ino == mine.st_ino
    except OSError:
        pass  # PID 1 is not ours to look at (containers): fall back to the names ip netns gives
    named = Path("/run/netns")
    for entry in named.iterdir() if named.is_dir() else ():
        try:
            st = entry.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return False
    return True

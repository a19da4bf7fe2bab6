"""systemd's sd_notify protocol (Type=notify, watchdog), without libsystemd."""

from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> bool:
    """Tell systemd about our state; a no-op when not started by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True

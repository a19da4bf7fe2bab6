"""herdd's control socket, the client side: one JSON request, one JSON reply line. Standard library only, so
DRBD's fence-peer handler (herd.fence) starts in a fraction of a second."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

SOCKET = Path("/run/herd/herdd.sock")


class CtlError(Exception):
    pass


def request(path: Path, message: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise CtlError(f"{path}: no such socket; is herdd running? (systemctl status herdd)") from None
    except OSError as exc:
        raise CtlError(f"{path}: {exc.strerror or exc}") from None
    try:
        reply: dict[str, Any] = json.loads(data)
    except ValueError:
        raise CtlError("herdd sent a reply that is not JSON") from None
    if not reply.get("ok"):
        raise CtlError(str(reply.get("error", "herdd refused the request")))
    return reply

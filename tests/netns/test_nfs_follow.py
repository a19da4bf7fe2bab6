"""The web node's cut of a stale NFS connection (`ss -K`, the kernel's socket destroy), between two namespaces:
the client's TCP connection to the service address is reset at once, and a new one can be made."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .harness import Lan, python_in, terminate, two_hosts

SERVER = ("import socket\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('10.78.0.2', 2049)); s.listen()\n"
          "conns = []\n"
          "while True:\n"
          "    conns.append(s.accept()[0])\n")
# Connects, cuts (as herdd would), and says what the old connection saw and whether a new one works.
CLIENT = ("import socket, sys, time\n"
          "from herd.daemon.nfsfollow import cut_connections\n"
          "c = socket.create_connection(('10.78.0.2', 2049), timeout=5)\n"
          "print('cut', cut_connections('10.78.0.2'))\n"
          "try:\n"
          "    c.send(b'x'); c.recv(1); print('old: still open')\n"
          "except OSError as e:\n"
          "    print('old:', type(e).__name__)\n"
          "socket.create_connection(('10.78.0.2', 2049), timeout=5); print('new: connected')\n")


@pytest.fixture
def lan() -> Iterator[Lan]:
    with two_hosts(f"f{os.getpid() % 10000}", "10.78.0") as lan:
        yield lan


def test_the_stale_connection_is_reset_and_a_new_one_made(lan: Lan) -> None:
    server = subprocess.Popen(["ip", "netns", "exec", f"{lan.tag}-b", sys.executable, "-c", SERVER])
    try:
        time.sleep(0.5)
        r = python_in(f"{lan.tag}-a", CLIENT)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[:3] == ["cut None", "old: ConnectionAbortedError", "new: connected"], r.stdout
    finally:
        terminate(server)

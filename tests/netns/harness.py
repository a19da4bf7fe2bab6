"""Several herdd processes, each in a network namespace of its own, on one bridge in a "switch" namespace.
Nothing touches the host's interfaces; every packet stays inside namespaces made here."""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from herd.ctl import CtlError, request
from herd.spec import Spec

PROJECT = Path(__file__).resolve().parents[2]


def terminate(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not gone within timeout; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def new_key(work: Path) -> Path:
    """A fresh cluster key (0600) in work, as a build makes beside the spec."""
    key = work / "cluster.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    return key


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Lan:
    def __init__(self, tag: str) -> None:
        self.tag = tag  # keeps names short (interface names max 15 chars) and unique per run
        self.switch = f"{tag}-sw"
        self.namespaces: list[str] = []
        self.ports: dict[str, str] = {}  # host name -> its port on the switch
        ip("netns", "add", self.switch)
        self.namespaces.append(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        self.count = 0

    def host(self, name: str, mac: str | None = None, address: str | None = None) -> str:
        ns = f"{self.tag}-{name}"
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        self.count += 1
        a, b = f"{self.tag}{self.count}a", f"{self.tag}{self.count}b"
        ip("link", "add", a, "type", "veth", "peer", "name", b)
        ip("link", "set", a, "netns", ns)
        ip("link", "set", b, "netns", self.switch)
        ip("-n", ns, "link", "set", a, "name", "eth0")
        if mac:
            ip("-n", ns, "link", "set", "eth0", "address", mac)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "set", b, "master", "br0", "up")
        self.ports[name] = b
        if address:
            ip("-n", ns, "addr", "add", address, "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        return ns

    def unplug(self, name: str, plugged: bool = False) -> None:
        """Pull (or put back) the host's cable at the switch."""
        ip("-n", self.switch, "link", "set", self.ports[name], "up" if plugged else "down")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextlib.contextmanager
def two_hosts(tag: str, subnet: str) -> Iterator[Lan]:
    """A LAN of two bare hosts, "a" at subnet.1 and "b" at subnet.2 (a /24), for tests of one mechanism."""
    lan = Lan(tag)
    try:
        lan.host("a", address=f"{subnet}.1/24")
        lan.host("b", address=f"{subnet}.2/24")
        yield lan
    finally:
        lan.close()


def python_in(ns: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Python code run inside namespace ns, with the checkout's herd importable."""
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(PROJECT / "src")})


# What a TCP connection from a namespace gets: "open", "refused" (reached: nothing listens) or "dropped" (no
# answer in time: a firewall).
REACH = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close(); print("open")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("dropped")
"""

def reach(ns: str, host: str, port: int) -> str:
    return python_in(ns, REACH, host, str(port)).stdout.strip()


def reach_all(probes: dict[Any, tuple[str, str, int]]) -> dict[Any, str]:
    """Every probe at once (a dropped one waits out its timeout)."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = {key: pool.submit(reach, *probe) for key, probe in probes.items()}
        return {key: f.result() for key, f in futures.items()}


def systemd_fd_limit() -> None:
    """In herdd's process, before exec: the descriptor limit systemd gives a service unless its unit raises it
    (1024), not whatever the test run's shell had, so running out of descriptors shows as it would on a node."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


class Herdd:
    def __init__(self, name: str, ns: str, spec_path: Path, key: Path, work: Path,
                 args: list[str] | None = None) -> None:
        self.name = name
        self.args = ["--node", name] if args is None else args
        self.ns = ns
        self.spec_path = spec_path
        self.key = key
        self.work = work
        self.socket = work / "herdd.sock"
        self.state = work / "state"
        self.log = work / "herdd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(PROJECT / "src"), "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, sys.executable, "-m", "herd.daemon.main", "--spec",
                 str(self.spec_path), "--key", str(self.key), "--state-dir", str(self.state), "--socket",
                 str(self.socket), *self.args], stdout=log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=systemd_fd_limit)

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(10)

    def request(self, message: dict[str, Any], timeout: float = 2) -> dict[str, Any]:
        return request(self.socket, message, timeout)  # what herdctl does

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.request({"cmd": "status"})["status"]
        return status

    def states(self) -> dict[str, str]:
        return {n["name"]: n["state"] for n in self.status()["nodes"]}

    def ready(self) -> bool:
        return self.log.exists() and " ready" in self.log.read_text() and self.socket.exists()


def wait_for(predicate: Any, timeout: float, every: float = 0.05, what: str = "condition") -> float:
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except (OSError, ValueError, KeyError, CtlError):
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Cluster:
    """All nodes of a spec as herdd processes on one LAN."""

    def __init__(self, spec: Spec, spec_path: Path, key: Path, work: Path, tag: str,
                 only: set[str] | None = None) -> None:
        self.spec = spec
        self.lan = Lan(tag)
        self.nodes: dict[str, Herdd] = {}
        for node in spec.nodes:
            if only is not None and node.name not in only:
                continue
            ns = self.lan.host(node.name, node.mac)
            self.nodes[node.name] = Herdd(node.name, ns, spec_path, key, work / node.name)

    def start(self) -> None:
        for herdd in self.nodes.values():
            herdd.start()
        for herdd in self.nodes.values():
            wait_for(herdd.ready, 30, what=f"{herdd.name} ready")

    def all_see_all_alive(self) -> bool:
        return all(set(h.states().values()) == {"alive"} for h in self.nodes.values())

    def close(self) -> None:
        for herdd in self.nodes.values():
            herdd.kill(signal.SIGTERM)
        self.lan.close()

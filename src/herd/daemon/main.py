"""herdd entry point. For now: find out who this node is, set the host name, tell systemd it is ready and
say so on the console. Membership, directors and roles build on this."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from herd import __version__, spec
from herd.daemon.identity import identify, local_macs


def sd_notify(message: str) -> bool:
    """Tell systemd (Type=notify) about our state; a no-op when not started by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def set_hostname(name: str, etc: Path = Path("/etc")) -> None:
    if socket.gethostname() != name:
        socket.sethostname(name)
    hostname = etc / "hostname"
    if not hostname.exists() or hostname.read_text().strip() != name:
        tmp = hostname.with_name(".hostname.herd-tmp")
        tmp.write_text(name + "\n")
        os.replace(tmp, hostname)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="herdd", description="herd cluster daemon: runs on every node.")
    p.add_argument("--spec", type=Path, default=Path("/etc/herd/cluster.toml"), help="cluster spec (%(default)s)")
    p.add_argument("--role-file", type=Path, default=Path("/etc/herd/role"),
                   help="file naming this image's role (%(default)s)")
    p.add_argument("--key", type=Path, default=Path("/etc/herd/cluster.key"), help="cluster key (%(default)s)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/herd"), help="state (%(default)s)")
    p.add_argument("--node", help="force this node's identity (tests); never touches the host's name")
    p.add_argument("--version", action="version", version=f"herdd {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cluster = spec.load(args.spec)
        role = spec.Role(args.role_file.read_text().strip())
        node = identify(cluster, role, local_macs(), args.node)
    except spec.SpecError as exc:
        print(f"herdd: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, LookupError) as exc:
        print(f"herdd: {exc}", file=sys.stderr)
        return 2
    if node is not None and args.node is None:
        set_hostname(node.name)
    hostname = node.name if node is not None else socket.gethostname()
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    sd_notify("READY=1\nSTATUS=ready")
    print(f"herd: {hostname} {role.value} ready", flush=True)
    signal.sigwait(stop)
    sd_notify("STOPPING=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""herdd: find out who this node is, set the node up, then keep the cluster's membership running."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from herd import __version__, spec
from herd.daemon import firstboot, netconfig
from herd.daemon.claiming import claim_slot
from herd.daemon.identity import identify, local_macs
from herd.daemon.loop import Config, Daemon
from herd.daemon.notify import sd_notify
from herd.daemon.state import StateDir

log = logging.getLogger("herdd")


class StartError(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="herdd", description="herd cluster daemon: runs on every node (systemd unit herdd.service).")
    p.add_argument("--spec", type=Path, default=Path("/etc/herd/cluster.toml"), help="cluster spec (%(default)s)")
    p.add_argument("--key", type=Path, default=Path("/etc/herd/cluster.key"), help="cluster key (%(default)s)")
    p.add_argument("--role-file", type=Path, default=Path("/etc/herd/role"),
                   help="file naming this image's role (%(default)s)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/herd"), help="persistent state (%(default)s)")
    p.add_argument("--socket", type=Path, default=Path("/run/herd/herdd.sock"),
                   help="control socket for herdctl (%(default)s)")
    p.add_argument("--node", help="force this identity (tests); implies --sandbox")
    p.add_argument("--sandbox", action="store_true",
                   help="for tests: never touch the host's name, SSH keys, machine-id or resolv.conf, and run "
                        "only inside a network namespace of its own")
    p.add_argument("--version", action="version", version=f"herdd {__version__}")
    return p.parse_args(argv)


def read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()  # the whole content is the key, byte for byte
    except OSError as exc:
        raise StartError(f"{path}: cannot read the cluster key: {exc.strerror}") from None
    if len(key) < 32:
        raise StartError(f"{path}: the cluster key is too short ({len(key)} bytes; at least 32)")
    return key


def who_am_i(cluster: spec.Spec, role: spec.Role, state: StateDir, key: bytes, forced: str | None,
             macs: set[str] | None = None) -> spec.Node:
    """`macs`: this box's NICs' (default: read from sysfs)."""
    if forced is not None:
        node = cluster.node_named(forced)
        if node is None:
            raise StartError(f"--node {forced}: no node of that name in the spec")
        return node
    stored = state.identity()
    macs = local_macs() if macs is None else macs
    if stored is not None:
        node = cluster.node_named(stored["name"])
        if node is not None and node.role == role and (node.mac is None or node.mac in macs):
            return node
        if node is not None and node.role == role:
            # The operator gave the slot to another box: two nodes must not run with one name and address.
            log.warning("stored identity %s now belongs to the box with MAC %s in the spec; finding out again",
                        node.name, node.mac)
        else:
            log.warning("stored identity %s is not a %s node of this spec any more; finding out again",
                        stored["name"], role)
    node = identify(cluster, role, macs)
    if node is not None:
        state.save_identity(node.name, role.value, "mac")
        return node
    return claim(cluster, role, state, key)


def claim(cluster: spec.Spec, role: spec.Role, state: StateDir, key: bytes) -> spec.Node:
    """No NIC of ours is in the spec: ask the cluster for a free slot of our role."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        nics = netconfig.wired_nics(netconfig.read_actual(ipr).links)
    if not nics:
        raise StartError("no wired network card found")
    mac = Path(f"/sys/class/net/{nics[0]}/address").read_text().strip().lower()
    ready = netconfig.bring_up_and_wait_link_local(nics)
    if not ready:
        raise StartError(f"no IPv6 link-local address on {', '.join(nics)}: cannot ask the cluster for a slot")
    print(f"herd: {mac} is not in the spec; claiming a free {role} slot", flush=True)
    slot = asyncio.run(claim_slot(cluster, role, key, mac, list(ready.values()), state.next_generation(),
                                  raise_generation=state.raise_generation))
    state.save_identity(slot, role.value, f"claimed by {mac}")
    node = cluster.node_named(slot)
    assert node is not None
    print(f"herd: claimed slot {slot}", flush=True)
    return node


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="herdd: %(message)s", stream=sys.stderr)
    try:
        cluster = spec.load(args.spec)
        key = read_key(args.key)
        state = StateDir(args.state_dir)
        forced = cluster.node_named(args.node) if args.node else None
        if forced is not None:
            role = forced.role  # a forced identity brings its role; no image role file needed
        else:
            try:
                role = spec.Role(args.role_file.read_text().strip())
            except (OSError, ValueError) as exc:
                raise StartError(f"{args.role_file}: cannot tell this image's role: {exc}") from None
        sandbox = args.sandbox or args.node is not None
        if sandbox and firstboot.in_initial_netns():
            # It would configure the host's interfaces and send heartbeats to the spec's addresses from here.
            raise StartError("--node and --sandbox run only inside a network namespace of their own "
                             "(ip netns exec NS herdd …), never in the host's")
        node = who_am_i(cluster, role, state, key, args.node)
        if not sandbox:
            firstboot.set_hostname(node.name)
            firstboot.machine_id()
            if node.role == spec.Role.WEB:
                firstboot.publish_node_name(node.name)
        address = ipaddress.IPv4Interface(f"{node.address}/{cluster.network.subnet.prefixlen}")
        for op in netconfig.reconcile(address, cluster.network.gateway):
            log.info("network: %s", op)
        if not sandbox:
            netconfig.write_resolv_conf([str(d) for d in cluster.network.dns], cluster.network.domain)
        generation = state.next_generation()
    except spec.SpecError as exc:
        print(f"herdd: {exc}", file=sys.stderr)
        return 2
    except (StartError, LookupError) as exc:
        print(f"herdd: {exc}", file=sys.stderr)
        return 2

    config = Config(spec=cluster, me=node, key=key, generation=generation, socket_path=args.socket,
                    metrics_port=cluster.membership.metrics_port or None, state=state, manage_roles=not sandbox)

    def ready() -> None:
        sd_notify(f"READY=1\nSTATUS={node.name}: {len(cluster.nodes)} nodes in {cluster.name}")
        print(f"herd: {node.name} {role.value} ready", flush=True)

    async def run() -> None:
        daemon = Daemon(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.stopping.set)
        await daemon.run(str(node.address), on_ready=ready)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"herdd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

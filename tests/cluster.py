"""The whole example cluster (or another spec's) in QEMU, by hand: build its images (cache allowed), boot its
nodes as VMs, each from its own copy of its role's image (nfs nodes of a spec with two get a data disk each), on
a virtual LAN inside network namespaces this makes, with a client namespace on that LAN. Nothing outside those
namespaces is reached.

    tests/lab up [--spec FILE] [--timing lab|spec]
                                   build, boot, wait until every node has joined; runs until Ctrl-C or `down`.
                                   Heartbeats at the tests' timing (500 ms, dead after 3 s) unless --timing spec:
                                   the example's own 200 ms / 1 s flaps when every node is an emulated VM
    tests/lab status               `herdctl status` on a director (through the client namespace)
    tests/lab ssh NODE [COMMAND]   log in to a node (root, with the lab's own SSH key)
    tests/lab down                 stop a running `up`: VMs, namespaces, taps and disk copies are removed

`up` cleans up whatever happens (Ctrl-C, SIGTERM from `down`, a failure while booting).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("HERD_LAB_STATE", "/run/herd-lab.json"))  # where `status` and `down` find it


def up(args: argparse.Namespace) -> int:
    from tests.image.conftest import LAB_DEADTIME_MS, LAB_INTERVAL_MS, lab_timing, make_build
    from tests.image.lab import VM_NODES, start_lab

    if STATE.exists():
        print(f"a lab is already up (see {STATE}); `tests/lab down` first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="herd-lab-", dir=args.workdir))

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        (work / "build").mkdir()
        print(f"building {args.spec} (cache: {os.environ.get('HERD_CACHE', '/var/cache/herd')}) ...", flush=True)
        text = args.spec.read_text()
        if args.timing == "lab":
            text = lab_timing(text)
            print(f"heartbeats every {LAB_INTERVAL_MS} ms, a node dead after {LAB_DEADTIME_MS} ms: the tests' timing, "
                  "steady with every node an emulated VM on this machine (--timing spec for the spec's own)",
                  flush=True)
        else:
            print("the spec's own heartbeat timing: under TCG emulation, starved VMs may miss their heartbeats and "
                  "the VIP move with no fault injected (the example's 200 ms / 1 s does)", flush=True)
        build = make_build(work / "build", text)
        state = {"pid": os.getpid(), "phase": "booting", "client": None, "ssh_key": str(build.ssh_key),
                 "work": str(work), "nodes": {n.name: str(n.address) for n in build.spec.nodes},
                 "directors": [n.name for n in build.spec.nodes if n.role.value == "director"],
                 "vip": str(build.spec.network.vip)}
        STATE.write_text(json.dumps(state, indent=2))  # from now on `down` can stop it
        names = tuple(n.name for n in build.spec.nodes)
        print(f"booting {len(names)} VMs (each from its own copy of its role's image) ...", flush=True)
        started = time.monotonic()
        if set(names) == set(VM_NODES):  # the example: dir1 takes the VIP before web2 and nfs1 boot
            lab_gen = start_lab(build, work / "vms", persistent=True)
        else:  # another spec (two nfs nodes, say): every node at once
            lab_gen = start_lab(build, work / "vms", names, vip_after=None, persistent=True)
        try:
            lab = next(lab_gen)
            print(f"every node is up and has joined after {time.monotonic() - started:.0f} s", flush=True)
            state.update(phase="up", client=lab.client)
            STATE.write_text(json.dumps(state, indent=2))
            print(f"client namespace: {lab.client}; VIP {state['vip']}; `tests/lab status`, `tests/lab down`",
                  flush=True)
            while True:
                time.sleep(1)
        finally:
            lab_gen.close()  # VMs stopped, namespaces and taps removed (also when booting was interrupted)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        STATE.unlink(missing_ok=True)
    return 0


def load_state() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(STATE.read_text())
        return state
    except FileNotFoundError:
        raise SystemExit("no lab is up (tests/lab up)") from None


def ssh_argv(state: dict[str, Any], node: str, command: list[str]) -> list[str]:
    if state["client"] is None:
        raise SystemExit("the lab is still booting")
    if node not in state["nodes"]:
        raise SystemExit(f"no node {node!r}; nodes: {', '.join(state['nodes'])}")
    return ["ip", "netns", "exec", state["client"], "ssh", "-i", state["ssh_key"], "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
            f"root@{state['nodes'][node]}", *command]


def status(args: argparse.Namespace) -> int:
    state = load_state()
    if state["phase"] != "up":
        print(f"the lab is {state['phase']} (process {state['pid']})")
        return 1
    for director in state["directors"]:
        r = subprocess.run(ssh_argv(state, director, ["herdctl", "status"]), text=True)
        if r.returncode == 0:
            return 0
    return 1


def ssh(args: argparse.Namespace) -> int:
    return subprocess.run(ssh_argv(load_state(), args.node, args.command)).returncode


def down(args: argparse.Namespace) -> int:
    state = load_state()
    try:
        os.kill(state["pid"], signal.SIGTERM)
    except ProcessLookupError:
        STATE.unlink(missing_ok=True)
        print("the lab's process was gone; state removed")
        return 0
    for _ in range(120):
        if not STATE.exists():
            print("lab stopped")
            return 0
        time.sleep(0.5)
    print("the lab did not stop within 60 s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tests/lab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="build and boot the cluster; runs until Ctrl-C or `down`")
    u.add_argument("--spec", type=Path, default=PROJECT / "examples/cluster.toml")
    u.add_argument("--workdir", type=Path, default=Path("/var/tmp"), help="where the disk copies go")
    u.add_argument("--timing", choices=("lab", "spec"), default="lab",
                   help="heartbeat timing: lab (default: the tests' 500 ms interval and 3 s deadtime, steady with "
                        "every node an emulated VM on a small machine) or spec (the spec's own; the example's "
                        "200 ms / 1 s flaps under TCG: starved VMs miss heartbeats and the VIP moves)")
    u.set_defaults(run=up)
    sub.add_parser("status", help="herdctl status on a director").set_defaults(run=status)
    s = sub.add_parser("ssh", help="run a command on a node (or log in)")
    s.add_argument("node")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(run=ssh)
    sub.add_parser("down", help="stop the running lab and remove everything it made").set_defaults(run=down)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (namespaces, taps, QEMU)", file=sys.stderr)
        return 2
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

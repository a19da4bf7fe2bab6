"""With two nfs nodes, every heartbeat says whom its sender hears (`hears`): a standby nfs node takes over from a
silent server only once no node it hears still hears the server. Heartbeats captured off the wire, decoded with
the cluster's key; without replicated storage there is no `hears` at all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.daemon.wire import KIND_HEARTBEAT, decode
from herd.spec import load

from .harness import PROJECT, Cluster, new_key, wait_for

HERE = Path(__file__).resolve().parent
EXAMPLE = PROJECT / "examples/cluster.toml"
NFS2 = '[[node]]\nname = "nfs2"\nrole = "nfs"\naddress = "192.168.50.32"\nmac = "52:54:00:50:00:32"\n\n'


def two_nfs_spec() -> str:
    """The example with a second nfs node and the NFS service address that two nfs nodes need."""
    text = EXAMPLE.read_text()
    text = text.replace("[nfs]\n", '[nfs]\naddress = "192.168.50.30"\n', 1)
    return text.replace("[access]", NFS2 + "[access]", 1)


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, bytes]]:
    work = tmp_path_factory.mktemp("hears")
    key = new_key(work)
    spec_path = work / "cluster.toml"
    spec_path.write_text(two_nfs_spec())
    spec = load(spec_path)
    assert spec.replicated_storage
    c = Cluster(spec, spec_path, key, work, f"r{os.getpid() % 100000}")
    try:
        c.start()
        yield c, key.read_bytes()
    finally:
        c.close()


def heard_at(cluster: Cluster, key: bytes, at: str, seconds: float, path: Path) -> dict[str, list[dict[str, Any]]]:
    """The heartbeats arriving at node `at` within `seconds`, decoded: sender -> their health, in order."""
    ns = cluster.nodes[at].ns
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(HERE / "packets.py"), "capture", str(path),
                    str(seconds), str(cluster.spec.membership.port)], check=True)
    out: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().split():
        frame = bytes.fromhex(line)
        ihl = (frame[14] & 0x0F) * 4
        msg = decode(frame[14 + ihl + 8:], cluster.spec.name, key)
        if msg.kind == KIND_HEARTBEAT:
            out.setdefault(msg.sender, []).append(msg.payload["health"])
    return out


def test_every_heartbeat_says_whom_its_sender_hears(replicated: tuple[Cluster, bytes], tmp_path: Path) -> None:
    cluster, key = replicated
    wait_for(cluster.all_see_all_alive, 15, what="all alive")
    everyone = set(cluster.nodes)
    beats = heard_at(cluster, key, "web1", 1.5, tmp_path / "before.hex")
    assert set(beats) == everyone - {"web1"}, beats.keys()
    for sender, healths in beats.items():
        assert healths[-1]["hears"] == sorted(everyone - {sender}), (sender, healths[-1])

    # web2 dies: once the others have declared it dead, their heartbeats no longer list it.
    cluster.nodes["web2"].kill()
    wait_for(lambda: cluster.nodes["nfs1"].states()["web2"] == "dead", 5, what="nfs1 sees web2 dead")
    wait_for(lambda: cluster.nodes["nfs2"].states()["web2"] == "dead", 5, what="nfs2 sees web2 dead")
    beats = heard_at(cluster, key, "web1", 1.0, tmp_path / "after.hex")
    assert "web2" not in beats
    for sender in ("nfs1", "nfs2"):
        assert beats[sender][-1]["hears"] == sorted(everyone - {sender, "web2"}), (sender, beats[sender][-1])
    cluster.nodes["web2"].start()
    wait_for(cluster.all_see_all_alive, 15, what="web2 back")


def test_without_replicated_storage_heartbeats_carry_no_hears(tmp_path: Path) -> None:
    """One nfs node (the example as it is): nothing to witness, so the heartbeat stays as small as before."""
    key = new_key(tmp_path)
    spec = load(EXAMPLE)
    assert not spec.replicated_storage
    c = Cluster(spec, EXAMPLE, key, tmp_path, f"n{os.getpid() % 100000}", only={"dir1", "web1", "nfs1"})
    try:
        c.start()
        wait_for(lambda: all(c.nodes[n].states()[m] == "alive" for n in c.nodes for m in c.nodes), 15,
                 what="the three see each other")
        beats = heard_at(c, key.read_bytes(), "web1", 1.0, tmp_path / "frames.hex")
        assert {"dir1", "nfs1"} <= set(beats)
        assert all("hears" not in h for healths in beats.values() for h in healths), beats
    finally:
        c.close()

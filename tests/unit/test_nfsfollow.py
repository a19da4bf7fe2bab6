"""When a web node cuts its NFS client's connection to the service address: once another nfs node says it
serves and is ready, never at start-up, never twice for one move."""

from __future__ import annotations

from herd.daemon.drbd import Report
from herd.daemon.membership import Peer
from herd.daemon.nfsfollow import Follow, ready_server
from herd.spec import Role

from .test_storage import SPEC


def peers(serving: str | None = None, ready: bool = True, alive: bool = True) -> dict[str, Peer]:
    out = {node.name: Peer(node) for node in SPEC.nodes}
    for name in ("nfs1", "nfs2"):
        out[name].alive, out[name].last_seen = alive, 1.0
        out[name].health = {"drbd": Report(role="Primary" if name == serving else "Secondary",
                                           serving=name == serving, ready=ready and name == serving).to_json()}
    return out


def test_the_ready_server_is_the_one_that_serves_and_says_it_is_done() -> None:
    nfs = SPEC.nodes_of(Role.NFS)
    assert ready_server(peers("nfs2"), nfs) == "nfs2"
    assert ready_server(peers("nfs2", ready=False), nfs) is None  # promoting, mounting: not yet
    assert ready_server(peers("nfs2", alive=False), nfs) is None
    assert ready_server(peers(None), nfs) is None


def test_a_move_cuts_once_and_start_up_does_not() -> None:
    follow = Follow()
    assert [follow.moved(s) for s in (None, "nfs1", "nfs1")] == [False, False, False]  # the first server
    assert [follow.moved(s) for s in (None, None, "nfs2", "nfs2")] == [False, False, True, False]  # failover
    assert follow.moved("nfs1") is True  # straight to the other (a partition healing the other way)
    assert [follow.moved(s) for s in (None, "nfs1")] == [False, True]  # the same node, back after a gap


def test_ready_rides_in_the_heartbeat_only_when_true() -> None:
    assert "ready" not in Report(serving=True).to_json()
    report = Report.from_json(Report(serving=True, ready=True).to_json())
    assert report is not None and report.ready

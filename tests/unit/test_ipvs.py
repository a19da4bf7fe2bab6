"""The IPVS plan: the spec's services on the VIP, web nodes as real servers, only differences applied."""

from __future__ import annotations

import socket
from pathlib import Path

from herd.daemon.ipvs import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Table,
    VDest,
    VService,
    desired,
    plan,
)
from herd.spec import load, parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/cluster.toml"
SPEC = load(EXAMPLE)
VIP = str(SPEC.network.vip)


def up(service: str, node: str) -> int:
    return 1


def apply(table: Table, ops: list[object]) -> Table:
    """What the kernel does with the ops (for checking that a plan reaches its goal)."""
    out = {k: (vs, dict(ds)) for k, (vs, ds) in table.items()}
    for op in ops:
        match op:
            case AddService(vs):
                assert vs.key not in out
                out[vs.key] = (vs, {})
            case EditService(vs):
                out[vs.key] = (vs, out[vs.key][1])
            case DelService(vs):
                del out[vs.key]
            case AddDest(vs, d):
                assert d.address not in out[vs.key][1]
                out[vs.key][1][d.address] = d
            case EditDest(vs, d):
                out[vs.key][1][d.address] = d
            case DelDest(vs, d):
                del out[vs.key][1][d.address]
    return out


def test_desired_table_from_the_spec() -> None:
    table = desired(SPEC, up)
    ((key, (vs, dests)),) = table.items()
    assert key == (socket.IPPROTO_TCP, VIP, 80)
    assert vs.scheduler == "wlc" and vs.persistence == 0
    assert set(dests) == {"192.168.50.21", "192.168.50.22"}
    assert all(d.forwarding == 3 and d.weight == 1 and d.port == 80 for d in dests.values())  # DR


def test_nat_persistence_and_weights() -> None:
    text = EXAMPLE.read_text().replace('forwarding = "dr"', 'forwarding = "nat"').replace(
        "persistence = 0 ", "persistence = 300 ")
    spec = parse(text)
    table = desired(spec, lambda svc, node: 0 if node == "web2" else 5)
    ((_, (vs, dests)),) = table.items()
    assert vs.persistence == 300
    assert dests["192.168.50.21"] == VDest("192.168.50.21", 80, 5, 0)
    assert dests["192.168.50.22"].weight == 0


def test_from_empty_then_nothing_to_do() -> None:
    want = desired(SPEC, up)
    ops = plan(want, {}, VIP)
    assert isinstance(ops[0], AddService) and sum(isinstance(o, AddDest) for o in ops) == 2
    assert apply({}, ops) == want
    assert plan(want, want, VIP) == []


def test_a_failing_server_is_quiesced_not_removed() -> None:
    want = desired(SPEC, up)
    failing = desired(SPEC, lambda svc, node: 0 if node == "web1" else 1)
    ops = plan(failing, want, VIP)
    assert len(ops) == 1 and isinstance(ops[0], EditDest) and ops[0].dest.weight == 0
    assert not any(isinstance(o, DelService | DelDest) for o in ops)  # connections are never cut by a flush


def test_scheduler_change_edits_in_place_and_strangers_are_left_alone() -> None:
    want = desired(SPEC, up)
    (key,) = want
    vs, dests = want[key]
    have: Table = {key: (VService(vs.protocol, vs.address, vs.port, "rr", 0), dests)}
    stranger = VService(socket.IPPROTO_TCP, "10.9.9.9", 22, "rr", 0)
    have[stranger.key] = (stranger, {})
    old_vip_service = VService(socket.IPPROTO_TCP, VIP, 8080, "rr", 0)
    have[old_vip_service.key] = (old_vip_service, {})
    ops = plan(want, have, VIP)
    assert ops == [EditService(vs), DelService(old_vip_service)]
    assert stranger.key in apply(have, ops)


def test_extra_real_server_is_removed() -> None:
    want = desired(SPEC, up)
    (key,) = want
    vs, dests = want[key]
    extra = VDest("192.168.50.77", 80, 1, 3)
    ops = plan(want, {key: (vs, {**dests, extra.address: extra})}, VIP)
    assert ops == [DelDest(vs, extra)]


def test_sync_daemons_from_ipvsadm() -> None:
    from herd.daemon.ipvs import sync_daemons

    assert sync_daemons("master sync daemon (mcast=ens3, syncid=1, maxlen=1472, group=224.0.0.81, port=8848, "
                        "ttl=1)\n") == {"master"}
    assert sync_daemons("backup sync daemon (mcast=ens3, syncid=1)\n") == {"backup"}
    both = "master sync daemon (mcast=ens3, syncid=1)\nbackup sync daemon (mcast=ens3, syncid=1)\n"
    assert sync_daemons(both) == {"master", "backup"}
    assert sync_daemons("") == set()

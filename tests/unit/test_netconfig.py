"""The pure half of network reconciliation: plan() lists only what differs, and applying its ops then planning
again gives nothing to do; wired_nics(); write_resolv_conf()."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from pathlib import Path

import pytest

from herd.daemon.netconfig import (
    BOND,
    Actual,
    AddAddress,
    CreateBond,
    Desired,
    Enslave,
    Link,
    Op,
    SetGateway,
    SetUp,
    plan,
    wired_nics,
    write_resolv_conf,
)

ADDRESS = ipaddress.IPv4Interface("192.168.50.21/24")
GATEWAY = ipaddress.IPv4Address("192.168.50.1")
VIP = "192.168.50.10/24"
LO = Link("lo", 1, wired=False, up=True)


def desired(*nics: str, gateway: ipaddress.IPv4Address | None = GATEWAY) -> Desired:
    return Desired(ADDRESS, gateway, nics)


def actual(*links: Link, addresses: set[tuple[str, str]] | None = None, gateway: str | None = None) -> Actual:
    return Actual((LO, *links), frozenset(addresses or set()), gateway)


def simulate(state: Actual, ops: list[Op]) -> Actual:
    """What the kernel would look like after apply(ops): checks each op is applicable where it comes."""
    links = {link.name: link for link in state.links}
    addresses = set(state.addresses)
    gateway = state.gateway
    for op in ops:
        match op:
            case CreateBond(name):
                assert name not in links, f"{name} already exists"
                links[name] = Link(name, max(link.index for link in links.values()) + 1, kind="bond")
            case Enslave(nic, bond):
                assert bond in links and links[bond].kind == "bond", f"enslaving {nic} to missing {bond}"
                # apply() takes the NIC down to enslave it; the kernel's bond_enslave() opens it again
                links[nic] = dataclasses.replace(links[nic], master=links[bond].index, up=True)
            case SetUp(name):
                links[name] = dataclasses.replace(links[name], up=True)
            case AddAddress(name, address):
                assert name in links
                addresses.add((name, address))
            case SetGateway(gw):
                gateway = gw
    return Actual(tuple(links.values()), frozenset(addresses), gateway)


def mentions(op: Op) -> set[str]:
    return {str(v) for v in dataclasses.astuple(op)}


# -- single NIC ----------------------------------------------------------------------------------------------

def test_single_nic_down_without_address() -> None:
    state = actual(Link("eth0", 2))
    assert plan(desired("eth0"), state) == [
        SetUp("eth0"), AddAddress("eth0", "192.168.50.21/24"), SetGateway("192.168.50.1")]


def test_single_nic_already_configured() -> None:
    state = actual(Link("eth0", 2, up=True), addresses={("eth0", "192.168.50.21/24")}, gateway="192.168.50.1")
    assert plan(desired("eth0"), state) == []


def test_wrong_gateway() -> None:
    state = actual(Link("eth0", 2, up=True), addresses={("eth0", "192.168.50.21/24")}, gateway="192.168.50.254")
    assert plan(desired("eth0"), state) == [SetGateway("192.168.50.1")]


def test_no_gateway_desired_means_no_route_op() -> None:
    for gw in (None, "192.168.50.254"):
        state = actual(Link("eth0", 2), gateway=gw)
        ops = plan(desired("eth0", gateway=None), state)
        assert ops == [SetUp("eth0"), AddAddress("eth0", "192.168.50.21/24")]
        assert not any(isinstance(op, SetGateway) for op in ops)


def test_same_address_with_another_prefix_is_added() -> None:
    state = actual(Link("eth0", 2, up=True), addresses={("eth0", "192.168.50.21/16")}, gateway="192.168.50.1")
    assert plan(desired("eth0"), state) == [AddAddress("eth0", "192.168.50.21/24")]


def test_address_on_another_link_does_not_count() -> None:
    state = actual(Link("eth0", 2, up=True), Link("dummy0", 3, kind="dummy"),
                   addresses={("dummy0", "192.168.50.21/24")}, gateway="192.168.50.1")
    assert plan(desired("eth0"), state) == [AddAddress("eth0", "192.168.50.21/24")]


# -- no NICs -------------------------------------------------------------------------------------------------

def test_no_nics() -> None:
    assert plan(desired(), actual()) == []
    assert plan(desired(), actual(Link("eth0", 2))) == []
    assert plan(desired("eth9"), actual(Link("eth0", 2))) == []  # asked for NICs that are not there


# -- bonding -------------------------------------------------------------------------------------------------

def test_two_nics_are_bonded() -> None:
    state = actual(Link("eth0", 2), Link("eth1", 3))
    assert plan(desired("eth0", "eth1"), state) == [
        CreateBond(BOND),
        Enslave("eth0", BOND), Enslave("eth1", BOND),
        SetUp("eth0"), SetUp("eth1"), SetUp(BOND),
        AddAddress(BOND, "192.168.50.21/24"),
        SetGateway("192.168.50.1"),
    ]


def test_two_nics_up_are_not_set_up_again() -> None:
    state = actual(Link("eth0", 2, up=True), Link("eth1", 3, up=True), gateway="192.168.50.1")
    assert plan(desired("eth0", "eth1"), state) == [
        CreateBond(BOND), Enslave("eth0", BOND), Enslave("eth1", BOND), SetUp(BOND),
        AddAddress(BOND, "192.168.50.21/24")]


def test_existing_bond_fully_configured() -> None:
    state = actual(Link("eth0", 2, up=True, master=4), Link("eth1", 3, up=True, master=4),
                   Link(BOND, 4, kind="bond", up=True),
                   addresses={(BOND, "192.168.50.21/24")}, gateway="192.168.50.1")
    assert plan(desired("eth0", "eth1"), state) == []


def test_existing_bond_missing_a_slave() -> None:
    state = actual(Link("eth0", 2, up=True, master=4), Link("eth1", 3), Link(BOND, 4, kind="bond", up=True),
                   addresses={(BOND, "192.168.50.21/24")}, gateway="192.168.50.1")
    assert plan(desired("eth0", "eth1"), state) == [Enslave("eth1", BOND), SetUp("eth1")]


def test_a_nic_enslaved_elsewhere_is_moved_to_the_bond() -> None:
    state = actual(Link("eth0", 2, up=True, master=9), Link("eth1", 3, up=True, master=4),
                   Link(BOND, 4, kind="bond", up=True), Link("br0", 9, kind="bridge", up=True),
                   addresses={(BOND, "192.168.50.21/24")}, gateway="192.168.50.1")
    assert plan(desired("eth0", "eth1"), state) == [Enslave("eth0", BOND)]


def test_only_present_nics_are_bonded() -> None:
    state = actual(Link("eth0", 2))
    # eth1 is asked for but gone: one NIC left, so no bond
    assert plan(desired("eth0", "eth1"), state)[:2] == [SetUp("eth0"), AddAddress("eth0", "192.168.50.21/24")]


# -- never touch what is not ours ----------------------------------------------------------------------------

STARTS = {
    "single": actual(Link("eth0", 2, up=True), addresses={("eth0", VIP), ("eth0", "10.0.0.5/8")},
                     gateway="192.168.50.1"),
    "single-down": actual(Link("eth0", 2), addresses={("eth0", VIP)}),
    "bond": actual(Link("eth0", 2, up=True, master=4), Link("eth1", 3, up=True, master=4),
                   Link(BOND, 4, kind="bond", up=True), addresses={(BOND, VIP), ("eth0", "169.254.1.1/16")},
                   gateway="192.168.50.254"),
}


@pytest.mark.parametrize("name", list(STARTS))
def test_extra_addresses_are_never_mentioned(name: str) -> None:
    state = STARTS[name]
    nics = wired_nics(state.links)
    ops = plan(desired(*nics), state)
    extras = {address for _, address in state.addresses}
    assert extras
    for op in ops:
        assert not mentions(op) & extras, op
    after = simulate(state, ops)
    assert state.addresses <= after.addresses
    assert plan(desired(*nics), after) == []


def test_vip_on_the_right_link_does_not_stand_in_for_the_node_address() -> None:
    state = actual(Link("eth0", 2, up=True), addresses={("eth0", VIP)}, gateway="192.168.50.1")
    assert plan(desired("eth0"), state) == [AddAddress("eth0", "192.168.50.21/24")]


# -- idempotence over many starting states -------------------------------------------------------------------

def starting_states() -> list[tuple[str, Actual]]:
    states = []
    for n_nics, nic_up, enslaved, bond, address, gw, vip in itertools.product(
            (0, 1, 2, 3), (False, True), (False, True), (None, "down", "up"), (None, "nic", "bond", "/16"),
            (None, "192.168.50.1", "192.168.50.254"), (False, True)):
        if (bond is None and enslaved) or (bond is not None and n_nics < 2 and enslaved):
            continue
        links = [Link(f"eth{i}", 2 + i, up=nic_up and i != 1, master=10 if enslaved and i != 0 else None)
                 for i in range(n_nics)]
        links.append(Link("wlan0", 8, wired=False))
        links.append(Link("docker0", 9, kind="bridge", up=True))
        if bond is not None:
            links.append(Link(BOND, 10, kind="bond", up=bond == "up"))
        addresses: set[tuple[str, str]] = set()
        if address == "nic" and n_nics:
            addresses.add(("eth0", str(ADDRESS)))
        elif address == "bond" and bond is not None:
            addresses.add((BOND, str(ADDRESS)))
        elif address == "/16" and n_nics:
            addresses.add(("eth0", "192.168.50.21/16"))
        if vip and n_nics:
            addresses.add((BOND if bond else "eth0", VIP))
        addresses.add(("docker0", "172.17.0.1/16"))
        label = f"nics={n_nics} up={nic_up} enslaved={enslaved} bond={bond} addr={address} gw={gw} vip={vip}"
        states.append((label, actual(*links, addresses=addresses, gateway=gw)))
    return states


@pytest.mark.parametrize("gateway", [GATEWAY, None])
def test_plan_then_apply_then_plan_is_empty(gateway: ipaddress.IPv4Address | None) -> None:
    states = starting_states()
    assert len(states) > 200
    for label, state in states:
        nics = wired_nics(state.links)
        want = Desired(ADDRESS, gateway, nics)
        ops = plan(want, state)
        assert len(ops) == len(set(ops)), (label, ops)  # nothing done twice
        after = simulate(state, ops)
        assert plan(Desired(ADDRESS, gateway, wired_nics(after.links)), after) == [], label
        assert state.addresses <= after.addresses, label
        if gateway is None:
            assert after.gateway == state.gateway, label
        if not nics:
            assert ops == [], label


# -- wired_nics ----------------------------------------------------------------------------------------------

def test_wired_nics() -> None:
    links = (
        Link("lo", 1, wired=False),
        Link("enp3s0", 5),
        Link("eno1", 2),
        Link(BOND, 7, kind="bond"),
        Link("br0", 8, kind="bridge"),
        Link("wlp2s0", 3, wired=False),
        Link("veth-a", 9, kind="veth"),
        Link("vlan10", 10, kind="vlan"),
        Link("eth9", 11, wired=False),
    )
    assert wired_nics(links) == ("eno1", "enp3s0", "veth-a")
    assert wired_nics(tuple(reversed(links))) == ("eno1", "enp3s0", "veth-a")
    assert wired_nics(()) == ()


def test_wired_nics_keeps_enslaved_nics() -> None:
    links = (Link("eth1", 3, master=4, up=True), Link("eth0", 2, master=4, up=True), Link(BOND, 4, kind="bond"))
    assert wired_nics(links) == ("eth0", "eth1")


# -- resolv.conf ---------------------------------------------------------------------------------------------

RESOLV = "search herd.lan\nnameserver 192.168.50.1\nnameserver 1.1.1.1\n"


def test_write_resolv_conf(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    assert write_resolv_conf(["192.168.50.1", "1.1.1.1"], "herd.lan", path) is True
    assert path.read_text() == RESOLV
    assert write_resolv_conf(["192.168.50.1", "1.1.1.1"], "herd.lan", path) is False
    assert write_resolv_conf(["192.168.50.1"], "herd.lan", path) is True
    assert path.read_text() == "search herd.lan\nnameserver 192.168.50.1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["resolv.conf"]  # no temp file left


def test_write_resolv_conf_without_nameservers(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    assert write_resolv_conf([], "example.org", path) is True
    assert path.read_text() == "search example.org\n"


def test_write_resolv_conf_replaces_different_content(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 8.8.8.8\n")
    assert write_resolv_conf(["192.168.50.1", "1.1.1.1"], "herd.lan", path) is True
    assert path.read_text() == RESOLV


def test_write_resolv_conf_replaces_a_symlink(tmp_path: Path) -> None:
    stub = tmp_path / "run/systemd/resolve/stub-resolv.conf"
    stub.parent.mkdir(parents=True)
    stub.write_text(RESOLV)  # even with the same content: the link itself must go
    path = tmp_path / "etc/resolv.conf"
    path.parent.mkdir()
    path.symlink_to(stub)
    assert write_resolv_conf(["192.168.50.1", "1.1.1.1"], "herd.lan", path) is True
    assert not path.is_symlink()
    assert path.read_text() == RESOLV
    assert stub.read_text() == RESOLV  # not written through
    assert write_resolv_conf(["192.168.50.1", "1.1.1.1"], "herd.lan", path) is False


def test_write_resolv_conf_replaces_a_dangling_symlink(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.symlink_to(tmp_path / "nowhere")
    assert write_resolv_conf(["9.9.9.9"], "herd.lan", path) is True
    assert not path.is_symlink()
    assert not (tmp_path / "nowhere").exists()
    assert path.read_text() == "search herd.lan\nnameserver 9.9.9.9\n"

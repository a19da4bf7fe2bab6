"""herd.build.firewall: which ports each role lets in, and from whom (the rules nft loads are checked for real in
tests/netns/test_firewall.py and in the QEMU lab)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from herd.build.firewall import Allow, allowed, garbd
from herd.spec import Role, parse

from .. import specs

PROJECT = Path(__file__).resolve().parents[2]
TEXT = (PROJECT / "examples/cluster.toml").read_text()


def two_of_each(text: str = TEXT) -> str:
    return specs.two_of_each(text)


def by_why(rules: list[Allow]) -> dict[str, tuple[tuple[int, ...], tuple[str, ...], str | None]]:
    return {r.why: (r.ports, r.ipv4 + r.ipv6, None if r.to is None else str(r.to)) for r in rules}


EVERYONE = ("192.168.50.11", "192.168.50.12", "192.168.50.21", "192.168.50.22", "192.168.50.31", "192.168.50.41")
COMMON = {
    "herd heartbeats": ((694,), EVERYONE, None),
    "ssh": ((22,), ("192.168.50.0/24",), None),
    "herd metrics": ((9694,), ("192.168.50.0/24",), None),
}


def test_the_examples_roles() -> None:
    spec = parse(TEXT, "cluster.toml")
    assert by_why(allowed(spec, Role.DIRECTOR)) == {
        **COMMON,
        "the site's services, on the VIP": ((80,), (), "192.168.50.10"),
        "IPVS connection sync": ((8848,), ("192.168.50.11", "192.168.50.12"), None),
    }
    assert by_why(allowed(spec, Role.WEB)) == {**COMMON, "the site's services": ((80,), (), None)}
    assert by_why(allowed(spec, Role.NFS)) == {
        **COMMON, "NFS, to the web nodes": ((2049,), ("192.168.50.21", "192.168.50.22"), None)}
    assert by_why(allowed(spec, Role.DB)) == {
        **COMMON, "MariaDB, to the web nodes": ((3306,), ("192.168.50.21", "192.168.50.22"), None)}


def test_two_db_nodes_open_galera_to_each_other_and_to_garbd_and_drbd_between_the_nfs_nodes() -> None:
    spec = parse(two_of_each(), "cluster.toml")
    assert garbd(spec)
    dbs, directors = ("192.168.50.41", "192.168.50.42"), ("192.168.50.11", "192.168.50.12")
    db = by_why(allowed(spec, Role.DB))
    assert db["Galera"] == ((4567,), dbs + directors, None)
    assert db["Galera's state transfers"] == ((4568, 4444), dbs, None)
    assert by_why(allowed(spec, Role.DIRECTOR))["Galera, to garbd"] == ((4567,), dbs, None)
    assert by_why(allowed(spec, Role.NFS))["DRBD, between the nfs nodes"] == (
        (7789,), ("192.168.50.31", "192.168.50.32"), None)


def test_three_db_nodes_need_no_garbd() -> None:
    text = two_of_each().replace("\n[access]", '\n[[node]]\nname = "db3"\nrole = "db"\naddress = "192.168.50.43"\n'
                                                 "\n[access]")
    spec = parse(text, "cluster.toml")
    assert not garbd(spec)
    assert "Galera, to garbd" not in by_why(allowed(spec, Role.DIRECTOR))
    assert by_why(allowed(spec, Role.DB))["Galera"][1] == ("192.168.50.41", "192.168.50.42", "192.168.50.43")


def test_metrics_follow_the_allow_list_or_are_closed_with_the_endpoint() -> None:
    text = TEXT.replace("# metrics_allow = [\"192.168.50.0/24\"]", 'metrics_allow = ["192.168.50.5", "fd00::/64"]')
    rules = by_why(allowed(parse(text, "cluster.toml"), Role.WEB))
    assert rules["herd metrics"] == ((9694,), ("192.168.50.5", "fd00::/64"), None)
    off = TEXT.replace("metrics_port = 9694", "metrics_port = 0")
    assert "herd metrics" not in by_why(allowed(parse(off, "cluster.toml"), Role.WEB))


def test_udp_services_get_udp_rules() -> None:
    text = TEXT.replace("[nfs]\n", '[[service]]\nname = "dns"\nport = 53\nprotocol = "udp"\n'
                                  '[service.check]\ntype = "tcp"\n\n[nfs]\n')
    rules = [r for r in allowed(parse(text, "cluster.toml"), Role.WEB) if r.why == "the site's services"]
    assert {(r.protocol, r.ports) for r in rules} == {("tcp", (80,)), ("udp", (53,))}
    assert all(r.to is None and not r.sources for r in rules)
    on_vip = [r for r in allowed(parse(text, "cluster.toml"), Role.DIRECTOR) if r.to is not None]
    assert {(r.protocol, r.ports, r.to) for r in on_vip} == {
        ("tcp", (80,), ipaddress.ip_address("192.168.50.10")), ("udp", (53,), ipaddress.ip_address("192.168.50.10"))}

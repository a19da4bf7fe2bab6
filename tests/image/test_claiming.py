"""The whole cluster's second scenario: the web boxes' MACs are not in the spec (web1 and web2 have no `mac`).
Two boxes flashed from one web image find their identity by claiming the free web slots, each gets a different
one, the cluster serves through both, and a power cut does not change who is who. All six boot: a claim needs
grants from a strict majority of the spec's nodes (4 of 6), and the claimers themselves are not members yet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from ..netns.harness import wait_for
from .conftest import EXAMPLE, make_build
from .lab import VM_NODES, Lab, start_lab
from .scenario import wait_joined

# Boxes with MACs the spec does not know, booted as the VMs the lab calls web1 and web2 (which slot each
# ends up in is theirs to settle).
UNKNOWN = {"web1": "52:54:00:99:00:01", "web2": "52:54:00:99:00:02"}


@pytest.fixture(scope="module")
def claiming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    text = EXAMPLE.read_text()
    for slot in UNKNOWN:
        text, n = re.subn(rf'(name = "{slot}"\nrole = "web"\naddress = "[0-9.]+"\n)mac = "[0-9a-f:]+"\n', r"\1", text)
        assert n == 1
    build = make_build(tmp_path_factory.mktemp("claim-build"), text)
    yield from start_lab(build, tmp_path_factory.mktemp("claim-lab"), VM_NODES, vip_after=None, persistent=True,
                         macs=UNKNOWN)


def identity_of(lab: Lab, box: str) -> dict[str, str]:
    m = re.search(r"herd: (\S+) web ready", lab.vms[box].console())
    assert m, lab.vms[box].console()[-3000:]
    node = lab.build.spec.node_named(m.group(1))
    assert node is not None
    identity: dict[str, str] = json.loads(lab.ssh(node.name, "cat /var/lib/herd/identity.json"))
    return identity


def test_two_unknown_boxes_claim_the_two_free_slots(claiming: Lab) -> None:
    lab = claiming
    slots = {box: identity_of(lab, box) for box in UNKNOWN}
    assert sorted(s["name"] for s in slots.values()) == ["web1", "web2"], slots
    for box, identity in slots.items():
        assert identity["how"] == f"claimed by {UNKNOWN[box]}"
        assert lab.ssh(identity["name"], "hostname").strip() == identity["name"]
    status = wait_joined(lab)  # six alive, a VIP holder, both web nodes in the IPVS table
    assert status["ipvs"] == "in sync"
    wait_for(lambda: set(lab.fetch("/herd-node", 12)) == {"web1", "web2"}, 120, every=2,
             what="the VIP reaching both claimed web nodes")


def test_a_power_cut_keeps_the_claimed_identity(claiming: Lab) -> None:
    lab = claiming
    before = identity_of(lab, "web2")
    lab.vms["web2"].stop()
    lab.power_on("web2", background=True)
    lab.wait_ready(["web2"])
    assert identity_of(lab, "web2") == before
    assert not re.search(r"herd: claimed slot", lab.vms["web2"].console())  # no new claim: it knew who it was

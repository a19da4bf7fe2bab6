"""A box the spec does not know by its MAC finds its identity by claiming a free slot of its role. The shared
lab's spec leaves web2's `mac` out (specs.with_web2_claimed) and boots the web image there on a box with a MAC
of its own (CLAIMER): at first boot it claims the slot, with grants from a strict majority of the spec's nodes
(4 of 6: dir1, web1, db1 and dir2 are up before it), and serves as web2. That a power cut does not change who is
who is checked by the whole-cluster power loss (test_cluster.py); that two boxes claiming at once get different
slots, and the claim's other rules, in the netns tier (tests/netns/test_claim.py)."""

from __future__ import annotations

import json

from ..netns.harness import wait_for
from ..specs import CLAIMER
from .lab import Lab
from .scenario import wait_joined


def test_a_box_with_an_unknown_mac_claims_the_free_web_slot(lab: Lab) -> None:
    (box, mac), = CLAIMER.items()
    assert lab.build.spec.node_named(box).mac is None  # type: ignore[union-attr]
    identity = json.loads(lab.ssh(box, "cat /var/lib/herd/identity.json"))
    assert identity["name"] == box and identity["how"] == f"claimed by {mac}", identity
    assert lab.ssh(box, "hostname").strip() == box
    assert mac in lab.ssh(box, "ip -br link")
    status = wait_joined(lab)  # six alive, a VIP holder, both web nodes in the IPVS table
    assert {n["name"]: n["state"] for n in status["nodes"]}[box] == "alive"
    wait_for(lambda: box in set(lab.fetch("/herd-node", 12)), 120, every=2, what=f"the VIP reaching {box}")

"""The ARP probe a standby nfs node uses before it cuts DRBD's link to a silent peer, between two namespaces:
a host that is up answers, whatever runs on it; an address nobody holds, or a host whose cable is out, does not."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .harness import Lan, python_in, two_hosts

PROBE = "import sys; from herd.daemon.vip import answers_arp; print(answers_arp('eth0', sys.argv[1], sys.argv[2]))"


@pytest.fixture
def lan() -> Iterator[Lan]:
    with two_hosts(f"a{os.getpid() % 10000}", "10.77.0") as lan:
        yield lan


def probe(lan: Lan, target: str) -> bool:
    r = python_in(f"{lan.tag}-a", PROBE, "10.77.0.1", target)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "True"


def test_a_host_that_is_up_answers_and_nobody_answers_for_a_free_address(lan: Lan) -> None:
    assert probe(lan, "10.77.0.2")  # nothing listens there: the kernel answers
    assert not probe(lan, "10.77.0.3")


def test_a_host_whose_cable_is_out_does_not_answer(lan: Lan) -> None:
    lan.unplug("b")
    assert not probe(lan, "10.77.0.2")
    lan.unplug("b", plugged=True)
    assert probe(lan, "10.77.0.2")

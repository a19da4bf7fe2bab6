"""The ARP probe a standby nfs node uses before it cuts DRBD's link to a silent peer, between two namespaces:
a host that is up answers, whatever runs on it; an address nobody holds, or a host whose cable is out, does not."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from .harness import PROJECT, Lan

PROBE = "import sys; from herd.daemon.vip import answers_arp; print(answers_arp('eth0', sys.argv[1], sys.argv[2]))"


@pytest.fixture
def lan() -> Iterator[Lan]:
    lan = Lan(f"a{os.getpid() % 10000}")
    try:
        lan.host("a", address="10.77.0.1/24")
        lan.host("b", address="10.77.0.2/24")
        yield lan
    finally:
        lan.close()


def probe(lan: Lan, target: str) -> bool:
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    r = subprocess.run(["ip", "netns", "exec", f"{lan.tag}-a", sys.executable, "-c", PROBE, "10.77.0.1", target],
                       capture_output=True, text=True, timeout=30, env=env)
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

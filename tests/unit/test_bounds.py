"""What one authenticated message may carry: counters, MACs, and the storage terms in a heartbeat's health."""

from __future__ import annotations

from typing import Any

import pytest

from herd.daemon.bounds import AHEAD, COUNTER_LIMIT, counter, heartbeat, unicast_mac


@pytest.mark.parametrize(("value", "known", "taken"), [
    (0, 0, True),
    (5, None, True),
    (COUNTER_LIMIT - 1, None, True),
    (COUNTER_LIMIT, None, False),
    (10**400, None, False),
    (-1, None, False),
    (True, None, False),
    (1.0, None, False),
    ("1", None, False),
    (None, None, False),
    (AHEAD, 0, True),
    (AHEAD + 1, 0, False),
    (7 + AHEAD, 7, True),
    (3, 10**6, True),  # behind is fine: a node that was away may hear an older one
    (COUNTER_LIMIT - 1, COUNTER_LIMIT - 2, True),
])
def test_counter(value: Any, known: int | None, taken: bool) -> None:
    assert counter(value, known) is taken


@pytest.mark.parametrize(("value", "taken"), [
    ("52:54:00:12:34:56", True),
    ("02:00:00:00:0a:01", True),
    ("52:54:00:12:34:5G", False),
    ("52:54:00:12:34:56\n", False),
    ("52:54:00:12:34:56\nherd: granted slot web1 to 52:54:00:12:34:57", False),
    ("52:54:00:AB:CD:EF", False),  # herdd writes them lower-case: one spelling per box
    ("52-54-00-12-34-56", False),
    ("5254.0012.3456", False),
    ("52:54:00:12:34", False),
    ("01:00:5e:00:00:01", False),  # multicast
    ("ff:ff:ff:ff:ff:ff", False),
    ("00:00:00:00:00:00", False),
    (None, False),
    (525400123456, False),
])
def test_unicast_mac(value: Any, taken: bool) -> None:
    assert unicast_mac(value) is taken


def test_a_heartbeat_within_bounds_is_kept_as_it_is() -> None:
    payload = {"health": {"load1": 0.5, "storage_term": 12, "drbd": {"term": 11, "role": "Primary"}}, "vip": True}
    assert heartbeat(payload, 12) == (payload, [])
    assert heartbeat(payload, 12)[0] is payload
    assert heartbeat({"vip": True}, 0) == ({"vip": True}, [])
    assert heartbeat({"health": "x"}, 0) == ({"health": "x"}, [])
    older = {"health": {"storage_term": 3, "drbd": {"role": "Secondary"}}}  # behind, and a report without term
    assert heartbeat(older, 9) == (older, [])


@pytest.mark.parametrize("term", [2**53, 2**60, 10**4000 // 10**3800, -1, True, 5.0, "7", AHEAD + 13])
def test_storage_terms_out_of_bounds_are_left_out(term: Any) -> None:
    payload = {"health": {"load1": 0.5, "storage_term": term, "drbd": {"term": term, "role": "Primary"}},
               "vip": True}
    out, refused = heartbeat(payload, 12)
    assert out == {"health": {"load1": 0.5, "drbd": {"role": "Primary"}}, "vip": True}
    assert refused == ["storage_term", "drbd.term"]
    assert payload["health"]["storage_term"] == term  # not changed in place

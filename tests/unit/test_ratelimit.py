"""Token buckets per source in a bounded table: a burst, then the rate; sources apart; the table never outgrows
its bound, and a flood of new sources neither grows it nor gets a limited source's bucket refilled."""

from __future__ import annotations

import random

import pytest

from herd.daemon.ratelimit import PerSource, answers, source_of


def allowed(limit: PerSource, source: str, now: float, times: int) -> int:
    return sum(limit.allow(source, now) for _ in range(times))


def test_a_burst_then_the_rate() -> None:
    limit = PerSource(rate=2.0, burst=4.0, sources=8)
    assert allowed(limit, "a", 0.0, 10) == 4
    assert allowed(limit, "a", 0.25, 10) == 0  # half a token
    assert allowed(limit, "a", 0.5, 10) == 1
    assert allowed(limit, "a", 1.5, 10) == 2
    assert allowed(limit, "a", 100.0, 10) == 4  # refilled to the burst, no more


def test_sources_are_limited_apart() -> None:
    limit = PerSource(rate=1.0, burst=2.0, sources=8)
    assert allowed(limit, "fe80::1%2", 0.0, 5) == 2
    assert allowed(limit, "fe80::1%3", 0.0, 5) == 2  # the same address on another link
    assert allowed(limit, "fe80::2%2", 0.0, 5) == 2


def test_a_full_table_lets_no_new_source_in_until_one_is_refilled() -> None:
    limit = PerSource(rate=1.0, burst=2.0, sources=3)
    for source in "abc":
        assert limit.allow(source, 0.0)
    assert not limit.allow("d", 0.0) and len(limit) == 3
    assert limit.allow("a", 0.5)  # a known source still gets its share
    assert not limit.allow("d", 1.9)
    assert limit.allow("d", 2.0)  # b and c are full again (2 s untouched): forgotten
    assert len(limit) == 2  # a (asked at 0.5) and d


def test_a_flood_of_spoofed_sources_does_not_refill_a_victims_bucket() -> None:
    limit = PerSource(rate=1.0, burst=4.0, sources=16)
    assert allowed(limit, "victim", 0.0, 10) == 4
    for i in range(10_000):
        limit.allow(f"spoofed{i}", 0.001 * i / 10_000)
    assert len(limit) == 16
    assert allowed(limit, "victim", 0.5, 10) == 0


def test_the_table_stays_bounded_whatever_comes() -> None:
    rng = random.Random(7)
    limit = PerSource(rate=5.0, burst=3.0, sources=20)
    now = 0.0
    sent: dict[str, list[float]] = {}
    for _ in range(20_000):
        now += rng.expovariate(200)
        source = f"s{rng.randrange(60)}"
        if limit.allow(source, now):
            sent.setdefault(source, []).append(now)
        assert len(limit) <= 20
    for times in sent.values():  # no source ever got more than burst + rate x time
        for i, t in enumerate(times):
            in_window = sum(1 for u in times[i:] if u - t <= 1.0)
            assert in_window <= 3 + 5 * 1.0


def test_a_clock_that_goes_back_refills_nothing() -> None:
    limit = PerSource(rate=1.0, burst=2.0, sources=4)
    assert allowed(limit, "a", 10.0, 5) == 2
    assert allowed(limit, "a", 5.0, 5) == 0
    assert allowed(limit, "a", 10.9, 5) == 0
    assert allowed(limit, "a", 11.0, 5) == 1


def test_bad_settings_are_refused() -> None:
    for rate, burst, sources in ((0.0, 1.0, 1), (1.0, 0.5, 1), (1.0, 1.0, 0)):
        with pytest.raises(ValueError):
            PerSource(rate, burst, sources)


def test_source_of_keeps_an_ipv6_addresss_scope() -> None:
    assert source_of(("192.168.50.11", 694)) == "192.168.50.11"
    assert source_of(("fe80::1", 40000, 0, 2)) == "fe80::1%2"
    assert source_of(("2001:db8::1", 40000, 0, 0)) == "2001:db8::1"


def test_herdds_answers_allow_a_burst_of_four_then_one_a_second() -> None:
    limit = answers()
    assert allowed(limit, "fe80::1%2", 0.0, 10) == 4
    assert allowed(limit, "fe80::1%2", 1.0, 10) == 1

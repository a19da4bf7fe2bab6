"""Slot claiming as pure state machines: the granting table and the claimer, and many claimers racing
through a simulated LAN that loses and reorders messages."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from herd.daemon.claim import Binding, Claimed, Claimer, NoFreeSlot, SendClaim, SendRelease, SlotTable
from herd.spec import Role, Spec, parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/cluster.toml"


def spec_with_free(*slots: str) -> Spec:
    text = EXAMPLE.read_text()
    for slot in slots:
        text = re.sub(rf'(name = "{slot}"\nrole = "\w+"\naddress = "[0-9.]+"\n)mac = "[0-9a-f:]+"\n', r"\1", text)
    return parse(text)


def test_table_grants_a_slot_to_one_mac_only() -> None:
    table = SlotTable(spec_with_free("web1", "web2"))
    assert table.claim("web1", "02:aa", "r1", "web") == (True, None, True)
    assert table.claim("web1", "02:aa", "r1", "web") == (True, None, False)  # same round: nothing to persist
    assert table.claim("web1", "02:aa", "r2", "web") == (True, None, True)   # same box, new round
    assert table.claim("web1", "02:bb", "r3", "web") == (False, "02:aa", False)
    assert table.claim("web2", "02:bb", "r3", "web") == (True, None, True)


def test_table_refuses_slots_that_are_not_free_or_of_another_role() -> None:
    table = SlotTable(spec_with_free("web1"))
    assert table.claim("web2", "02:aa", "r", "web")[0] is False   # has a MAC in the spec
    assert table.claim("web1", "02:aa", "r", "db")[0] is False    # wrong role
    assert table.claim("nosuch", "02:aa", "r", "web")[0] is False


def test_release_only_undoes_its_own_round() -> None:
    table = SlotTable(spec_with_free("web1"))
    table.claim("web1", "02:aa", "r1", "web")
    table.claim("web1", "02:aa", "r2", "web")  # the box's later, successful round
    assert table.release("web1", "02:aa", "r1") is False  # a replayed old release changes nothing
    assert table.release("web1", "02:bb", "r2") is False
    assert table.release("web1", "02:aa", "r2") is True
    assert "web1" not in table.bindings


def test_table_round_trips_through_json() -> None:
    table = SlotTable(spec_with_free("web1"), {"web1": Binding("02:aa", "r1")})
    again = SlotTable(spec_with_free("web1"), SlotTable.from_json(table.to_json()))
    assert again.bindings == table.bindings
    assert SlotTable.from_json({"web1": {"mac": 3}, "x": "y"}) == {}


def test_claimer_wins_with_a_majority() -> None:
    spec = spec_with_free("web1", "web2")
    claimer = Claimer(spec, Role.WEB, "02:aa", random.Random(1))
    (first,) = claimer.tick(0.0)
    assert isinstance(first, SendClaim) and first.slot == "web1"
    voters = [n.name for n in spec.nodes][: claimer.quorum]
    for name in voters[:-1]:
        assert claimer.on_reply(name, "web1", first.round, True, 0.1) == []
    assert claimer.on_reply(voters[-1], "web1", first.round, True, 0.1) == [Claimed("web1")]
    assert claimer.quorum == len(spec.nodes) // 2 + 1


def test_claimer_moves_on_when_refused_and_ignores_stale_replies() -> None:
    spec = spec_with_free("web1", "web2")
    claimer = Claimer(spec, Role.WEB, "02:aa", random.Random(1))
    (first,) = claimer.tick(0.0)
    assert isinstance(first, SendClaim)
    effects = claimer.on_reply("dir1", "web1", first.round, False, 0.1)
    assert effects[0] == SendRelease("web1", first.round)
    assert isinstance(effects[1], SendClaim) and effects[1].slot == "web2"
    assert claimer.on_reply("dir2", "web1", first.round, True, 0.2) == []  # an answer to the old round


def test_claimer_releases_and_backs_off_after_a_split_vote() -> None:
    claimer = Claimer(spec_with_free("web1"), Role.WEB, "02:aa", random.Random(1))
    (first,) = claimer.tick(0.0)
    assert isinstance(first, SendClaim)
    claimer.on_reply("dir1", "web1", first.round, True, 0.1)
    assert claimer.tick(0.35) == [SendClaim("web1", first.round)]  # resent while waiting
    assert claimer.tick(1.6) == [SendRelease("web1", first.round)]
    assert claimer.tick(1.61) == []  # pausing
    retry = claimer.tick(3.0)
    assert isinstance(retry[0], SendClaim) and retry[0].round != first.round


def test_a_node_asking_to_hear_again_gets_the_current_claim_or_a_round_given_back_and_nothing_else() -> None:
    """PROVE: a node that has just started takes only messages echoing its generation, and asks for them again."""
    claimer = Claimer(spec_with_free("web1", "web2"), Role.WEB, "02:aa", random.Random(1))
    (first,) = claimer.tick(0.0)
    assert isinstance(first, SendClaim)
    assert claimer.on_prove("claim", "web1", first.round) == [first]
    assert claimer.on_prove("claim", "web1", "another round") == []
    assert claimer.on_prove("claim", "web2", first.round) == []
    (release, second) = claimer.on_reply("dir1", "web1", first.round, False, 0.1)  # refused: given back
    assert isinstance(second, SendClaim)
    assert claimer.on_prove("claim", "web1", first.round) == []  # no longer the round it is claiming
    assert claimer.on_prove("release", "web1", first.round) == [release] == [SendRelease("web1", first.round)]
    assert claimer.on_prove("release", "web2", second.round) == []  # not given back
    assert claimer.on_prove("grant", "web2", second.round) == []
    for i in range(40):  # only the last rounds given back are kept
        claimer.tick(2.0 + 2 * i)
        claimer.tick(3.6 + 2 * i)
    assert claimer.on_prove("release", "web1", first.round) == []
    assert 0 < len(claimer.released) <= 16


def test_no_free_slot_is_reported() -> None:
    claimer = Claimer(spec_with_free(), Role.WEB, "02:aa", random.Random(1))
    assert claimer.tick(0.0) == [NoFreeSlot("web")]


@pytest.mark.parametrize("seed", range(25))
def test_racing_claimers_never_share_a_slot(seed: int) -> None:
    """Three boxes race for two slots over a LAN that drops 20 % of messages and delays the rest; voters are
    the spec's four identified nodes. Whatever the timing, no slot is won twice and both slots are won."""
    rng = random.Random(seed)
    spec = spec_with_free("web1", "web2")
    voters = {n.name: SlotTable(spec) for n in spec.nodes if n.mac is not None}
    claimers = {mac: Claimer(spec, Role.WEB, mac, random.Random(rng.random())) for mac in ("02:a", "02:b", "02:c")}
    won: dict[str, str] = {}
    queue: list[tuple[float, str, object]] = []  # (deliver at, to, message)
    now = 0.0
    while now < 60 and len(won) < 2:
        for mac, claimer in claimers.items():
            if mac in won.values():
                continue
            for effect in claimer.tick(now):
                if isinstance(effect, SendClaim | SendRelease):
                    for voter in voters:
                        if rng.random() > 0.2:
                            queue.append((now + rng.uniform(0.001, 0.2), voter, (mac, effect)))
        due = [m for m in queue if m[0] <= now]
        queue = [m for m in queue if m[0] > now]
        for _, to, payload in sorted(due, key=lambda m: m[0]):
            if to in voters:
                mac, effect = payload  # type: ignore[misc]
                if isinstance(effect, SendRelease):
                    voters[to].release(effect.slot, mac, effect.round)
                    continue
                granted, _, _ = voters[to].claim(effect.slot, mac, effect.round, "web")
                if rng.random() > 0.2:
                    queue.append((now + rng.uniform(0.001, 0.2), mac, (to, effect.slot, effect.round, granted)))
            else:
                voter, slot, round_id, granted = payload  # type: ignore[misc]
                for effect in claimers[to].on_reply(voter, slot, round_id, granted, now):
                    if isinstance(effect, Claimed):
                        assert effect.slot not in won, f"slot {effect.slot} won twice"
                        won[effect.slot] = to
                    elif isinstance(effect, SendClaim | SendRelease):
                        for v in voters:
                            queue.append((now + rng.uniform(0.001, 0.2), v, (to, effect)))
        now += 0.05
    assert set(won) == {"web1", "web2"} and len(set(won.values())) == 2


def test_a_flood_of_answers_is_dropped_past_the_queue_not_held() -> None:
    """The claimer's port takes datagrams from anyone on the LAN: what it cannot read in time is dropped."""
    from herd.daemon.claiming import _Replies

    replies = _Replies(limit=3)
    for i in range(10):
        replies.datagram_received(bytes([i]), ("fe80::1", 9))
    assert replies.queue.qsize() == 3 and replies.dropped == 7
    assert replies.queue.get_nowait() == b"\x00"  # the first ones, in order

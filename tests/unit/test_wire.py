"""The heartbeat wire format: round trip, every reason decode() drops a datagram for, and the replay guard."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from types import SimpleNamespace
from typing import Any

import pytest

from herd.daemon import wire
from herd.daemon.wire import (
    HEADER,
    KIND_CLAIM,
    KIND_GRANT,
    KIND_HEARTBEAT,
    KIND_RELEASE,
    KIND_STALE,
    MAC_SIZE,
    MAGIC,
    MAX_SIZE,
    REASONS,
    Drop,
    Echoers,
    Message,
    ReplayGuard,
    admit_box,
    admit_peer,
    cluster_tag,
    decode,
    encode,
)

CLUSTER = "demo"
KEY = b"k" * 32
MSG = Message(KIND_HEARTBEAT, "web1", 1_700_000_000, 42,
              {"health": {"load1": 0.25, "mem_pct": 41.5}, "admin": {"web2": [True, 3, "dir1"]}})


def signed(body: bytes, key: bytes = KEY) -> bytes:
    """A datagram with a valid HMAC over whatever body it is given: for messages encode() would never make."""
    return body + hmac.new(key, body, hashlib.sha256).digest()


def header(name_len: int, *, cluster: str = CLUSTER, kind: int = KIND_HEARTBEAT, generation: int = 1,
           seq: int = 1, magic: bytes = MAGIC) -> bytes:
    return HEADER.pack(magic, kind, cluster_tag(cluster), generation, seq, name_len)


def reason(data: bytes, cluster: str = CLUSTER, key: bytes = KEY) -> str:
    with pytest.raises(Drop) as info:
        decode(data, cluster, key)
    assert info.value.reason in REASONS
    assert str(info.value) == info.value.reason
    return info.value.reason


# -- round trip ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("msg", [
    MSG,
    Message(KIND_HEARTBEAT, "dir1", 0, 0),
    Message(7, "db1", 2**64 - 1, 2**64 - 1, {"nested": {"list": [1, 2.5, None, "ü"]}}),
    Message(KIND_HEARTBEAT, "nödé", 5, 6, {"x": "snowman ☃"}),
])
def test_round_trip(msg: Message) -> None:
    data = encode(msg, CLUSTER, KEY)
    got = decode(data, CLUSTER, KEY)
    assert got == msg
    assert (got.kind, got.sender, got.generation, got.seq, got.payload) == (
        msg.kind, msg.sender, msg.generation, msg.seq, msg.payload)


def test_layout() -> None:
    data = encode(MSG, CLUSTER, KEY)
    assert data.startswith(MAGIC)
    assert data[5:13] == cluster_tag(CLUSTER)
    name = MSG.sender.encode()
    assert data[HEADER.size:HEADER.size + len(name)] == name
    assert data[-MAC_SIZE:] == hmac.new(KEY, data[:-MAC_SIZE], hashlib.sha256).digest()


def test_encoding_is_deterministic() -> None:
    reordered = Message(MSG.kind, MSG.sender, MSG.generation, MSG.seq, dict(reversed(list(MSG.payload.items()))))
    assert encode(MSG, CLUSTER, KEY) == encode(reordered, CLUSTER, KEY)


def test_cluster_tag_is_eight_bytes_and_differs_per_cluster() -> None:
    assert len(cluster_tag("a")) == 8
    assert cluster_tag("a") != cluster_tag("b")
    assert cluster_tag("a") == cluster_tag("a")


# -- size limits ---------------------------------------------------------------------------------------------

def padded(total: int) -> Message:
    """A message that encodes to exactly `total` bytes."""
    base = len(encode(Message(KIND_HEARTBEAT, "web1", 1, 1, {"pad": ""}), CLUSTER, KEY))
    return Message(KIND_HEARTBEAT, "web1", 1, 1, {"pad": "x" * (total - base)})


def test_encode_accepts_exactly_max_size() -> None:
    data = encode(padded(MAX_SIZE), CLUSTER, KEY)
    assert len(data) == MAX_SIZE
    assert decode(data, CLUSTER, KEY) == padded(MAX_SIZE)


def test_size_is_what_encode_makes() -> None:
    for msg in (MSG, padded(MAX_SIZE), padded(MAX_SIZE + 1), Message(KIND_HEARTBEAT, "nödé", 5, 6, {"x": "☃"})):
        assert wire.size(msg) == len(_body_and_mac(msg))


def _body_and_mac(msg: Message) -> bytes:
    """encode's bytes, without its size limit."""
    name = msg.sender.encode()
    body = header(len(name), kind=msg.kind, generation=msg.generation, seq=msg.seq) + name
    return signed(body + json.dumps(msg.payload, separators=(",", ":"), sort_keys=True).encode())


def test_encode_refuses_over_max_size() -> None:
    with pytest.raises(ValueError, match=str(MAX_SIZE)):
        encode(padded(MAX_SIZE + 1), CLUSTER, KEY)
    with pytest.raises(ValueError):
        encode(Message(KIND_HEARTBEAT, "web1", 1, 1, {"x": "a" * (MAX_SIZE + 100)}), CLUSTER, KEY)


def test_oversized() -> None:
    assert reason(b"\0" * (MAX_SIZE + 1)) == "oversized"
    # even with a valid MAC: the size is checked before anything else
    body = header(4) + b"web1" + json.dumps({"pad": "x" * MAX_SIZE}).encode()
    assert reason(signed(body)) == "oversized"


# -- truncated -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 4, HEADER.size, HEADER.size + MAC_SIZE - 1])
def test_truncated(length: int) -> None:
    assert reason(encode(MSG, CLUSTER, KEY)[:length]) == "truncated"


def test_minimal_message_and_cut_by_one_byte() -> None:
    # the shortest authentic datagram: empty name, empty payload (read as {})
    minimal = signed(header(0))
    assert len(minimal) == HEADER.size + MAC_SIZE
    assert decode(minimal, CLUSTER, KEY) == Message(KIND_HEARTBEAT, "", 1, 1, {})
    assert reason(minimal[:-1]) == "truncated"


def test_valid_message_cut_by_one_byte_is_bad_mac() -> None:
    data = encode(MSG, CLUSTER, KEY)
    assert len(data) - 1 >= HEADER.size + MAC_SIZE
    assert reason(data[:-1]) == "bad-mac"
    assert reason(data[1:]) == "bad-magic"
    assert reason(data + b"\0") == "bad-mac"


# -- magic, cluster, MAC -------------------------------------------------------------------------------------

def test_bad_magic() -> None:
    data = encode(MSG, CLUSTER, KEY)
    assert reason(b"HRD2" + data[4:]) == "bad-magic"
    assert reason(signed(header(0, magic=b"XXXX"))) == "bad-magic"


def test_wrong_cluster() -> None:
    data = encode(MSG, "a", KEY)
    assert decode(data, "a", KEY) == MSG
    assert reason(data, cluster="b") == "wrong-cluster"


def test_wrong_key() -> None:
    data = encode(MSG, CLUSTER, KEY)
    assert reason(data, key=b"another key") == "bad-mac"
    assert reason(data, key=b"") == "bad-mac"


def expected_flip_reason(position: int) -> str:
    if position < 4:
        return "bad-magic"
    if 5 <= position < 13:
        return "wrong-cluster"
    return "bad-mac"


def test_every_single_bit_flip_is_rejected() -> None:
    data = encode(MSG, CLUSTER, KEY)
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            assert reason(bytes(flipped)) == expected_flip_reason(position), (position, bit)


# -- malformed (authentic but not well-formed) ---------------------------------------------------------------

@pytest.mark.parametrize("body", [
    header(4) + b"web1" + b"{not json",
    header(4) + b"web1" + b"[1, 2, 3]",
    header(4) + b"web1" + b'"a string"',
    header(4) + b"web1" + b"42",
    header(4) + b"web1" + b"null",
    header(4) + b"web1" + b'{"a": 1} trailing',
    header(4) + b"web1" + b'{"a": "\xff\xfe"}',      # not UTF-8
    header(2) + b"\xff\xfe" + b"{}",                 # a name that is not UTF-8
    header(200) + b"web1" + b"{}",                   # name length past the end
    header(255),                                     # name length past the end, no bytes at all
    header(5) + b"web1",                             # one byte short
], ids=["garbage", "list", "string", "number", "null", "trailing", "payload-not-utf8", "name-not-utf8",
        "name-past-end", "name-past-empty", "name-one-short"])
def test_malformed(body: bytes) -> None:
    assert reason(signed(body)) == "malformed"


def test_name_exactly_to_the_end_is_fine() -> None:
    msg = decode(signed(header(4) + b"web1"), CLUSTER, KEY)
    assert msg.sender == "web1" and msg.payload == {}


def test_deeply_nested_json_is_malformed() -> None:
    """As deep as fits in one datagram: past the default recursion limit of json's parser."""
    body = header(4) + b"web1" + b"[" * (MAX_SIZE - HEADER.size - 4 - MAC_SIZE)
    assert reason(signed(body)) == "malformed"


# -- cheap checks before the HMAC ----------------------------------------------------------------------------

ADDRESSES = {"dir1": "192.168.50.11", "web1": "192.168.50.21"}


def hmacs_counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The HMACs wire computes from now on, counted (one entry each)."""
    calls: list[int] = []

    def new(key: bytes, body: bytes, digestmod: Any) -> Any:
        calls.append(1)
        return hmac.new(key, body, digestmod)

    monkeypatch.setattr(wire, "hmac", SimpleNamespace(new=new, compare_digest=hmac.compare_digest))
    return calls


@pytest.mark.parametrize(("sender", "kind", "source", "why"), [
    ("web1", KIND_HEARTBEAT, "192.168.50.99", "spoofed-source"),    # the right name from another address
    ("web1", KIND_HEARTBEAT, "192.168.50.11", "spoofed-source"),    # from another node's address
    ("nobody", KIND_HEARTBEAT, "192.168.50.21", "unknown-sender"),  # not a spec node
    ("dir1", KIND_HEARTBEAT, "192.168.50.11", "unknown-sender"),    # the receiver itself
    ("web1", KIND_GRANT, "192.168.50.21", "malformed"),             # a kind this port never takes
])
def test_kind_sender_and_source_are_checked_before_the_hmac(
        monkeypatch: pytest.MonkeyPatch, sender: str, kind: int, source: str, why: str) -> None:
    forged = encode(Message(kind, sender, 1, 1), CLUSTER, b"not the cluster's key")
    calls = hmacs_counted(monkeypatch)
    with pytest.raises(Drop) as info:
        decode(forged, CLUSTER, KEY, admit_peer((KIND_HEARTBEAT, KIND_STALE), ADDRESSES, "dir1", source))
    assert info.value.reason == why and calls == []


def test_a_datagram_that_passes_the_cheap_checks_is_then_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    good = encode(MSG, CLUSTER, KEY)
    forged = encode(MSG, CLUSTER, b"not the cluster's key")
    calls = hmacs_counted(monkeypatch)
    admit = admit_peer((KIND_HEARTBEAT, KIND_STALE), ADDRESSES, "dir1", "192.168.50.21")
    assert decode(good, CLUSTER, KEY, admit) == MSG
    with pytest.raises(Drop, match="bad-mac"):
        decode(forged, CLUSTER, KEY, admit)
    assert len(calls) == 2


@pytest.mark.parametrize("body", [header(2) + b"\xff\xfe", header(200) + b"web1"],
                         ids=["name-not-utf8", "name-past-end"])
def test_an_unreadable_name_is_admitted_as_no_one(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    calls = hmacs_counted(monkeypatch)
    names = []

    def admit(kind: int, sender: str) -> None:
        names.append(sender)
        raise Drop("unknown-sender")

    with pytest.raises(Drop, match="unknown-sender"):
        decode(signed(body), CLUSTER, KEY, admit)
    assert names == [""] and calls == []


@pytest.mark.parametrize(("sender", "kind", "taken"), [
    ("mac:52:54:00:12:34:56", KIND_CLAIM, True),
    ("mac:02:00:00:00:0a:01", KIND_RELEASE, True),
    ("mac:52:54:00:12:34:56", KIND_HEARTBEAT, False),  # not a claim port's kind
    ("web1", KIND_CLAIM, False),                        # a node, not a box
    ("mac:52:54:00:12:34:5G", KIND_CLAIM, False),
    ("mac:52:54:00:12:34:56\n", KIND_CLAIM, False),
    ("mac:52:54:00:12:34", KIND_CLAIM, False),
    ("mac:52:54:00:AB:34:56", KIND_CLAIM, False),       # herdd writes MACs lower-case
    ("mac:01:00:5e:00:00:01", KIND_CLAIM, False),       # multicast
    ("mac:ff:ff:ff:ff:ff:ff", KIND_CLAIM, False),       # broadcast
    ("mac:00:00:00:00:00:00", KIND_CLAIM, False),
])
def test_the_claim_port_admits_boxes_named_by_a_unicast_mac(
        monkeypatch: pytest.MonkeyPatch, sender: str, kind: int, taken: bool) -> None:
    data = encode(Message(kind, sender, 1, 1), CLUSTER, KEY)
    calls = hmacs_counted(monkeypatch)
    admit = admit_box((KIND_CLAIM, KIND_RELEASE))
    if taken:
        assert decode(data, CLUSTER, KEY, admit).sender == sender and len(calls) == 1
    else:
        with pytest.raises(Drop, match="unknown-sender"):
            decode(data, CLUSTER, KEY, admit)
        assert calls == []


# -- fuzz ----------------------------------------------------------------------------------------------------

def test_random_bytes_only_ever_raise_drop() -> None:
    rng = random.Random(694)
    valid = encode(MSG, CLUSTER, KEY)
    seen: set[str] = set()
    for i in range(2000):
        if i % 4 == 0:   # plain noise of any length, including oversized
            data = rng.randbytes(rng.randrange(0, MAX_SIZE + 64))
        elif i % 4 == 1:  # the right magic and cluster, then noise: reaches the MAC check
            data = valid[:13] + rng.randbytes(rng.randrange(0, 200))
        elif i % 4 == 2:  # a valid message with a few random bytes overwritten
            mutated = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            data = bytes(mutated)
            if data == valid:
                continue
        else:  # a valid message cut or extended at random
            cut = rng.randrange(0, len(valid) + 20)
            data = valid[:cut] + rng.randbytes(max(0, cut - len(valid)))
            if data == valid:
                continue
        try:
            decode(data, CLUSTER, KEY)
        except Drop as drop:
            seen.add(drop.reason)
        else:
            pytest.fail(f"random datagram accepted: {data!r}")
    assert {"truncated", "oversized", "bad-magic", "bad-mac"} <= seen


# -- replay guard --------------------------------------------------------------------------------------------

def beat(generation: int, seq: int, sender: str = "web1") -> Message:
    return Message(KIND_HEARTBEAT, sender, generation, seq)


def accepted(guard: ReplayGuard, msg: Message) -> bool:
    try:
        guard.check(msg)
    except Drop as drop:
        assert drop.reason == "replay"
        return False
    guard.accept(msg)
    return True


def test_first_message_from_a_sender_is_accepted() -> None:
    guard = ReplayGuard()
    assert guard.generation_of("web1") is None
    assert accepted(guard, beat(5, 1))
    assert guard.generation_of("web1") == 5


def test_same_message_twice_is_a_replay() -> None:
    guard = ReplayGuard()
    assert accepted(guard, beat(1, 7))
    assert not accepted(guard, beat(1, 7))


def test_check_alone_does_not_remember() -> None:
    guard = ReplayGuard()
    guard.check(beat(1, 7))
    guard.check(beat(1, 7))
    assert guard.generation_of("web1") is None


def test_lower_seq_is_a_replay_higher_is_fine() -> None:
    guard = ReplayGuard()
    assert accepted(guard, beat(1, 10))
    assert not accepted(guard, beat(1, 9))
    assert not accepted(guard, beat(1, 0))
    assert accepted(guard, beat(1, 11))
    assert accepted(guard, beat(1, 1000))  # gaps (lost packets) are fine
    assert not accepted(guard, beat(1, 999))


def test_new_generation_resets_seq() -> None:
    guard = ReplayGuard()
    assert accepted(guard, beat(1, 100))
    assert accepted(guard, beat(2, 1))
    assert guard.generation_of("web1") == 2
    assert not accepted(guard, beat(1, 101))   # the old boot, even with a higher seq
    assert not accepted(guard, beat(1, 10**9))
    assert accepted(guard, beat(2, 2))


def test_senders_are_independent() -> None:
    guard = ReplayGuard()
    assert accepted(guard, beat(9, 50, "web1"))
    assert accepted(guard, beat(1, 1, "web2"))
    assert not accepted(guard, beat(9, 50, "web1"))
    assert accepted(guard, beat(1, 2, "web2"))
    assert guard.generation_of("web1") == 9
    assert guard.generation_of("web2") == 1
    assert guard.generation_of("db1") is None


def test_a_captured_datagram_replayed_is_dropped() -> None:
    guard = ReplayGuard()
    data = encode(MSG, CLUSTER, KEY)
    assert accepted(guard, decode(data, CLUSTER, KEY))
    assert not accepted(guard, decode(data, CLUSTER, KEY))


def test_the_guard_says_which_generation_a_sender_is_behind() -> None:
    guard = ReplayGuard()
    guard.accept(Message(KIND_HEARTBEAT, "web1", 10, 5))
    assert guard.behind(Message(KIND_HEARTBEAT, "web1", 9, 99)) == 10   # restarted below its old self
    assert guard.behind(Message(KIND_HEARTBEAT, "web1", 10, 4)) is None  # an old packet of this life
    assert guard.behind(Message(KIND_HEARTBEAT, "web2", 1, 1)) is None   # never heard


# -- senders that echo `seen` --------------------------------------------------------------------------------

def echoing(sender: str, seen: object = None) -> Message:
    return Message(KIND_HEARTBEAT, sender, 1, 1, {} if seen is None else {"seen": seen})


def test_a_sender_once_heard_echoing_is_dropped_without_the_echo() -> None:
    echoers = Echoers()
    echoers.check(echoing("web1"))  # not known to echo: an older herdd's, taken
    assert echoers.learn(echoing("web1", {})) is True  # an empty echo (it has heard no one) is an echo
    assert echoers.learn(echoing("web1", {"dir1": 5})) is False  # nothing new to save
    echoers.check(echoing("web1", {"dir1": 5}))
    for without in (echoing("web1"), echoing("web1", 5), echoing("web1", [])):
        with pytest.raises(Drop, match="downgrade"):
            echoers.check(without)
    echoers.check(echoing("web2"))
    assert echoers.learn(echoing("web2")) is False and echoers.learn(echoing("web2", "x")) is False


def test_echoers_outlive_a_restart_through_json() -> None:
    echoers = Echoers()
    echoers.learn(echoing("web1", {}))
    echoers.learn(echoing("mac:02:00:00:00:0a:01", {}))
    again = Echoers.from_json(json.loads(json.dumps(echoers.to_json())))
    assert again.to_json() == ["web1", "mac:02:00:00:00:0a:01"]
    with pytest.raises(Drop, match="downgrade"):
        again.check(echoing("mac:02:00:00:00:0a:01"))
    assert Echoers.from_json(None).to_json() == [] and Echoers.from_json({"web1": 1}).to_json() == []
    assert Echoers.from_json(["web1", 3, None]).to_json() == ["web1"]


def test_only_the_latest_boxes_are_remembered_and_every_node() -> None:
    echoers = Echoers()
    echoers.learn(echoing("dir1", {}))
    boxes = [f"mac:02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(wire.BOXES_KEPT + 10)]
    for box in boxes:
        assert echoers.learn(echoing(box, {}))
    assert echoers.to_json() == ["dir1", *boxes[10:]]
    echoers.check(echoing(boxes[0]))  # forgotten: taken as an older herdd's would be
    assert Echoers.from_json(["dir1", *boxes]).to_json() == ["dir1", *boxes[10:]]

"""The Prometheus text exposition: well-formed, one state per node, drops by reason, escaped labels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from herd.daemon.membership import Membership
from herd.daemon.metrics import STATES, render
from herd.daemon.wire import KIND_HEARTBEAT, Message
from herd.spec import load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/cluster.toml"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABELS = rf"\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE}(?:,[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})*)?\}}"
VALUE = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN"
SAMPLE = re.compile(rf"^(?P<name>{NAME})(?P<labels>{LABELS})? (?P<value>{VALUE})$")
HELP = re.compile(rf"^# HELP (?P<name>{NAME}) (?P<text>.*)$")
TYPE = re.compile(rf"^# TYPE (?P<name>{NAME}) (?P<type>counter|gauge|histogram|summary|untyped)$")
PAIR = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)=({LABEL_VALUE})')


def unescape(quoted: str) -> str:
    out, i, inner = [], 0, quoted[1:-1]
    while i < len(inner):
        if inner[i] == "\\":
            out.append({"\\": "\\", '"': '"', "n": "\n"}[inner[i + 1]])
            i += 2
        else:
            out.append(inner[i])
            i += 1
    return "".join(out)


Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> tuple[list[Sample], dict[str, str]]:
    """Check the exposition format strictly; return the samples and each metric's type."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    helped: set[str] = set()
    types: dict[str, str] = {}
    samples: list[Sample] = []
    finished: set[str] = set()  # metrics whose block has ended: their samples must be contiguous
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        if m := HELP.match(line):
            name = m["name"]
            assert name not in helped, f"line {number}: second HELP for {name}"
            helped.add(name)
        elif m := TYPE.match(line):
            name = m["name"]
            assert name in helped, f"line {number}: TYPE before HELP for {name}"
            assert name not in types, f"line {number}: second TYPE for {name}"
            types[name] = m["type"]
        elif m := SAMPLE.match(line):
            name = m["name"]
            assert name in helped and name in types, f"line {number}: sample of {name} before its HELP and TYPE"
            labels = {k: unescape(v) for k, v in PAIR.findall(m["labels"] or "")}
            samples.append((name, labels, float(m["value"])))
        else:
            raise AssertionError(f"line {number} is not valid exposition format: {line!r}")
        if current is not None and name != current:
            finished.add(current)
        assert name not in finished, f"line {number}: {name} continues after another metric began"
        current = name
    series = [(name, tuple(sorted(labels.items()))) for name, labels, _ in samples]
    assert len(series) == len(set(series)), "duplicate series"
    return samples, types


def status(nodes: list[dict[str, Any]], me: str = "dir1") -> dict[str, Any]:
    """Shaped like loop.Daemon.status()."""
    return {
        "cluster": "demo",
        "self": me,
        "role": "director",
        "generation": 1_700_000_000,
        "nodes": nodes,
        "vip": {"address": "192.168.50.10", "holder": None},
        "counters": {"sent": 10, "received": 8},
        "dropped": {"bad-mac": 2},
    }


def example_status() -> dict[str, Any]:
    """A real Membership view: dir1 sees web1 alive, web2 drained, nfs1 dead, the rest unknown."""
    spec = load(EXAMPLE)
    m = Membership(spec, "dir1", 100.0)
    for name in ("web1", "web2", "nfs1"):
        m.heard(Message(KIND_HEARTBEAT, name, 1, 1, {"health": {"load1": 0.1}}), 100.0)
    m.tick(101.5)
    for name in ("web1", "web2"):
        m.heard(Message(KIND_HEARTBEAT, name, 1, 2, {}), 101.6)
    m.set_drained("web2", True)
    nodes = m.view(101.75)
    for row in nodes:
        if row["name"] == "dir1":
            row["health"] = {"load1": 0.42, "mem_pct": 37.5, "disk_pct": 12.0, "temp_c": 48.0}
    return status(nodes)


def values(samples: list[Sample], name: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, value) for n, labels, value in samples if n == name]


def test_example_is_valid_exposition_format() -> None:
    samples, types = parse(render(example_status(), {"sent": 10, "received": 8, "metrics_busy": 3}, {"bad-mac": 2}))
    assert values(samples, "herd_metrics_refused_total") == [({"reason": "busy"}, 3.0), ({"reason": "source"}, 0.0)]
    assert types == {
        "herd_node_state": "gauge",
        "herd_node_last_seen_seconds": "gauge",
        "herd_heartbeats_sent_total": "counter",
        "herd_heartbeats_received_total": "counter",
        "herd_task_errors_total": "counter",
        "herd_packets_dropped_total": "counter",
        "herd_metrics_refused_total": "counter",
        "herd_heartbeat_values_refused_total": "counter",
        "herd_admin_left_out_total": "counter",
        "herd_answers_limited_total": "counter",
        "herd_load1": "gauge",
        "herd_memory_used_percent": "gauge",
        "herd_disk_used_percent": "gauge",
        "herd_temperature_celsius": "gauge",
    }
    for name in types:
        if name.endswith("_total"):
            assert types[name] == "counter"
    assert values(samples, "herd_heartbeats_sent_total") == [({}, 10.0)]
    assert values(samples, "herd_heartbeats_received_total") == [({}, 8.0)]
    assert values(samples, "herd_load1") == [({"node": "dir1"}, 0.42)]
    assert values(samples, "herd_memory_used_percent") == [({"node": "dir1"}, 37.5)]
    assert values(samples, "herd_disk_used_percent") == [({"node": "dir1"}, 12.0)]
    assert values(samples, "herd_temperature_celsius") == [({"node": "dir1"}, 48.0)]


def test_one_state_per_node() -> None:
    st = example_status()
    samples, _ = parse(render(st, {}, {}))
    state = values(samples, "herd_node_state")
    assert len(state) == len(st["nodes"]) * len(STATES)
    ones = {labels["node"]: labels["state"] for labels, value in state if value == 1}
    assert ones == {"dir1": "alive", "dir2": "unknown", "web1": "alive", "web2": "drained", "nfs1": "dead",
                    "db1": "unknown"}
    assert all(value in (0.0, 1.0) for _, value in state)
    for node in st["nodes"]:
        mine = [labels for labels, _ in state if labels["node"] == node["name"]]
        assert {labels["state"] for labels in mine} == set(STATES)
        assert {labels["role"] for labels in mine} == {node["role"]}


def test_last_seen_only_for_nodes_ever_seen() -> None:
    samples, _ = parse(render(example_status(), {}, {}))
    # dir1 (self) counts from its last tick at 101.5; nfs1 from its only heartbeat at 100.0
    seen = {labels["node"]: value for labels, value in values(samples, "herd_node_last_seen_seconds")}
    assert seen == {"dir1": pytest.approx(0.25), "web1": pytest.approx(0.15), "web2": pytest.approx(0.15),
                    "nfs1": pytest.approx(1.75)}


def test_dropped_by_reason() -> None:
    dropped = {"replay": 3, "bad-mac": 7, "spoofed-source": 1}
    samples, _ = parse(render(example_status(), {}, dropped))
    assert values(samples, "herd_packets_dropped_total") == [
        ({"reason": "bad-mac"}, 7.0), ({"reason": "replay"}, 3.0), ({"reason": "spoofed-source"}, 1.0)]


def test_refused_values_registers_left_out_and_answers_held_back() -> None:
    """What herdd counts of what it refused or held back: the heartbeat values out of bounds by field (the
    membership's refused_admin comes in the status's counters), the drain registers its own heartbeats left out,
    the PROVE and STALE answers held back per source, and the claim port's drops by reason."""
    st = example_status()
    st["counters"] = {"sent": 10, "refused_admin": 5}
    counters = {"sent": 10, "refused_storage_term": 2, "refused_drbd.term": 1, "refused_new_field": 7,
                "admin_left_out": 3, "answers_limited_prove": 96, "answers_limited_stale": 16}
    samples, types = parse(render(st, counters, {"hop-limit": 4, "not-link-local": 1}))
    assert values(samples, "herd_heartbeat_values_refused_total") == [
        ({"field": "admin"}, 5.0), ({"field": "drbd.term"}, 1.0), ({"field": "new_field"}, 7.0),
        ({"field": "storage_term"}, 2.0)]
    assert values(samples, "herd_admin_left_out_total") == [({}, 3.0)]
    assert values(samples, "herd_answers_limited_total") == [({"kind": "prove"}, 96.0), ({"kind": "stale"}, 16.0)]
    assert values(samples, "herd_packets_dropped_total") == [({"reason": "hop-limit"}, 4.0),
                                                             ({"reason": "not-link-local"}, 1.0)]
    for name in ("herd_heartbeat_values_refused_total", "herd_admin_left_out_total", "herd_answers_limited_total"):
        assert types[name] == "counter"
    help_lines = [line for line in render(st, counters, {}).splitlines() if line.startswith("# HELP herd_answers")]
    assert len(help_lines) == 1 and "PROVE and STALE" in help_lines[0]


def test_refused_and_held_back_are_shown_at_zero_before_they_happen() -> None:
    samples, _ = parse(render(example_status(), {}, {}))
    assert values(samples, "herd_heartbeat_values_refused_total") == [
        ({"field": "admin"}, 0.0), ({"field": "drbd.term"}, 0.0), ({"field": "storage_term"}, 0.0)]
    assert values(samples, "herd_admin_left_out_total") == [({}, 0.0)]
    assert values(samples, "herd_answers_limited_total") == [({"kind": "prove"}, 0.0), ({"kind": "stale"}, 0.0)]


def test_nothing_dropped_and_no_counters() -> None:
    samples, types = parse(render(example_status(), {}, {}))
    assert "herd_packets_dropped_total" in types
    assert values(samples, "herd_packets_dropped_total") == []
    assert values(samples, "herd_heartbeats_sent_total") == [({}, 0.0)]


def test_no_health_no_health_metrics() -> None:
    nodes = [{"name": "dir1", "role": "director", "address": "192.168.50.11", "state": "alive",
              "last_seen_ms": 0, "health": {}}]
    _, types = parse(render(status(nodes), {}, {}))
    assert not {"herd_load1", "herd_memory_used_percent", "herd_disk_used_percent",
                "herd_temperature_celsius"} & set(types)


def test_label_values_are_escaped() -> None:
    odd = 'we"b\\1'
    nodes = [
        {"name": odd, "role": 'r"o\\le', "address": "192.168.50.21", "state": "alive", "last_seen_ms": 5,
         "health": {"load1": 1.0}},
        {"name": "plain", "role": "web", "address": "192.168.50.22", "state": "dead", "last_seen_ms": None,
         "health": {}},
    ]
    text = render(status(nodes, me=odd), {}, {'re"as\\on': 1})
    assert 'node="we\\"b\\\\1"' in text
    samples, _ = parse(text)
    state = values(samples, "herd_node_state")
    assert {labels["node"] for labels, _ in state} == {odd, "plain"}
    assert {labels["role"] for labels, _ in state if labels["node"] == odd} == {'r"o\\le'}
    assert values(samples, "herd_packets_dropped_total") == [({"reason": 're"as\\on'}, 1.0)]
    assert values(samples, "herd_load1") == [({"node": odd}, 1.0)]


def test_newline_in_label_value_is_escaped() -> None:
    nodes = [{"name": "a\nb", "role": "web", "address": "192.168.50.21", "state": "alive", "last_seen_ms": 1,
              "health": {}}]
    samples, _ = parse(render(status(nodes, me="a\nb"), {}, {}))
    assert {labels["node"] for labels, _ in values(samples, "herd_node_state")} == {"a\nb"}


def test_large_counters_keep_every_digit() -> None:
    samples, _ = parse(render(example_status(), {"sent": 1_234_567, "received": 10**9 + 1},
                              {"bad-mac": 12_345_678}))
    assert values(samples, "herd_heartbeats_sent_total") == [({}, 1_234_567.0)]
    assert values(samples, "herd_heartbeats_received_total") == [({}, 10**9 + 1.0)]
    assert values(samples, "herd_packets_dropped_total") == [({"reason": "bad-mac"}, 12_345_678.0)]


def test_parser_rejects_what_it_should() -> None:
    """The checker above is what the other tests lean on: make sure it is not a pushover."""
    good = "# HELP x help\n# TYPE x gauge\nx 1\n"
    parse(good)
    for bad in (
        "x 1\n",                                               # no HELP/TYPE
        "# TYPE x gauge\n# HELP x help\nx 1\n",                # TYPE before HELP
        "# HELP x help\n# TYPE x gauge\nx{a=\"b\nc\"} 1\n",    # raw newline in a label
        "# HELP x help\n# TYPE x gauge\nx{a=\"b\"c\"} 1\n",    # unescaped quote
        "# HELP x help\n# TYPE x gauge\nx one\n",              # not a number
        "# HELP x help\n# TYPE x gauge\nx 1\nx 2\n",           # duplicate series
        "# HELP x h\n# TYPE x gauge\n# HELP y h\n# TYPE y gauge\ny 1\nx 1\n",  # x's samples after y began
    ):
        with pytest.raises(AssertionError):
            parse(bad)


def test_replicated_storage() -> None:
    from herd.daemon.drbd import Report

    st = status([])
    st["storage"] = {"address": "192.168.50.30", "server": "nfs1", "nodes": {
        "nfs1": Report("Primary", "SyncSource", "UpToDate", "Inconsistent", "Secondary", sync=42.5,
                       serving=True).to_json(),
        "nfs2": Report("Secondary", "SyncTarget", "Inconsistent", "UpToDate", "Primary", sync=42.5).to_json(),
        "nfs3": None,  # never heard from: no DRBD figures, but it does not serve either
    }}
    samples, types = parse(render(st, {}, {}))
    assert values(samples, "herd_storage_serving") == [({"node": "nfs1"}, 1.0), ({"node": "nfs2"}, 0.0),
                                                       ({"node": "nfs3"}, 0.0)]
    assert values(samples, "herd_drbd_in_sync") == [({"node": "nfs1"}, 0.0), ({"node": "nfs2"}, 0.0)]
    assert values(samples, "herd_drbd_sync_percent") == [({"node": "nfs1"}, 42.5), ({"node": "nfs2"}, 42.5)]
    assert types["herd_drbd_in_sync"] == "gauge"

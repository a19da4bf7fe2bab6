"""The Prometheus text exposition of herdd's view. Pure: a status dict and counters in, text out."""

from __future__ import annotations

from typing import Any

STATES = ("alive", "dead", "drained", "unknown")
# Values of authentic heartbeats left out as out of bounds (herd.daemon.bounds), by field: drain registers
# (Membership.merge_admin) and storage terms (bounds.heartbeat). Shown at 0 until they happen.
REFUSED_FIELDS = ("admin", "drbd.term", "storage_term")
ANSWER_KINDS = ("prove", "stale")  # answers held back per source address (herd.daemon.ratelimit)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    # Every digit of a counter matters to rate(); %g would round 1234567 to 1.23457e+06.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(status: dict[str, Any], counters: dict[str, int], dropped: dict[str, int]) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{_labels(**labels) if labels else ''} {_number(value)}")

    me = status["self"]
    # The status's counters add what other parts count (refused_admin: the membership's) to the daemon's own.
    counts: dict[str, int] = {**status.get("counters", {}), **counters}
    metric("herd_node_state", "gauge", "1 for the node's current state as this node sees it.",
           [({"node": n["name"], "role": n["role"], "state": s}, 1.0 if n["state"] == s else 0.0)
            for n in status["nodes"] for s in STATES])
    metric("herd_node_last_seen_seconds", "gauge", "Seconds since the node's last valid heartbeat.",
           [({"node": n["name"]}, n["last_seen_ms"] / 1000) for n in status["nodes"] if n["last_seen_ms"] is not None])
    metric("herd_heartbeats_sent_total", "counter", "Heartbeats sent.", [({}, counters.get("sent", 0))])
    metric("herd_heartbeats_received_total", "counter", "Valid heartbeats received.",
           [({}, counters.get("received", 0))])
    metric("herd_task_errors_total", "counter", "Periodic work (heartbeat, tick, health...) that raised; logged.",
           [({}, float(counters.get("task_errors", 0)))])
    metric("herd_packets_dropped_total", "counter", "Packets dropped, by reason.",
           [({"reason": r}, float(c)) for r, c in sorted(dropped.items())])
    metric("herd_metrics_refused_total", "counter",
           "Connections to this endpoint closed unanswered: too many at once (busy) or from outside the allowed "
           "networks (source).",
           [({"reason": r}, float(counters.get(f"metrics_{r}", 0))) for r in ("busy", "source")])
    refused = sorted({*REFUSED_FIELDS, *(k.removeprefix("refused_") for k in counts if k.startswith("refused_"))})
    metric("herd_heartbeat_values_refused_total", "counter",
           "Values in authentic heartbeats left out as out of bounds (a drain register, a storage term), by field; "
           "the rest of each heartbeat is taken.",
           [({"field": f}, float(counts.get(f"refused_{f}", 0))) for f in refused])
    metric("herd_admin_left_out_total", "counter",
           "Drain registers left out of heartbeats this node sent, which would not have fit the wire (logged).",
           [({}, float(counts.get("admin_left_out", 0)))])
    metric("herd_answers_limited_total", "counter",
           "PROVE and STALE answers not sent, their destination (the source of a message not taken) having had "
           "its share for now, by kind.",
           [({"kind": k}, float(counts.get(f"answers_limited_{k}", 0))) for k in ANSWER_KINDS])
    health: dict[str, Any] = next((n["health"] for n in status["nodes"] if n["name"] == me), {})
    for key, name, help_text in (("load1", "herd_load1", "1-minute load average."),
                                 ("mem_pct", "herd_memory_used_percent", "Memory in use, percent."),
                                 ("disk_pct", "herd_disk_used_percent", "Root file system in use, percent."),
                                 ("temp_c", "herd_temperature_celsius", "Hottest sensor, Celsius.")):
        if key in health:
            metric(name, "gauge", help_text, [({"node": me}, float(health[key]))])
    storage = status.get("storage") or {}
    if storage:  # two nfs nodes: the replicated docroot, as this node last heard of it
        reports = {name: r for name, r in storage["nodes"].items() if r is not None}
        metric("herd_storage_serving", "gauge", "1 for the nfs node that serves the replicated docroot.",
               [({"node": n}, 1.0 if storage.get("server") == n else 0.0) for n in storage["nodes"]])
        metric("herd_drbd_in_sync", "gauge", "1 while the node's DRBD disk is connected and both disks are UpToDate.",
               [({"node": n}, 1.0 if r["connection"] == "Connected" and r["disk"] == r["peer_disk"] == "UpToDate"
                 else 0.0) for n, r in reports.items()])
        metric("herd_drbd_sync_percent", "gauge", "How far a running resync is.",
               [({"node": n}, float(r["sync"])) for n, r in reports.items() if r.get("sync") is not None])
    site = status.get("site") or {}
    if site.get("active"):  # the backup site's VIP holder: the one that watches and moves the names
        if site["main"] != "unknown":
            metric("herd_site_main_up", "gauge", "1 while the main site passes its probes.",
                   [({"site": site["name"]}, 1.0 if site["main"] == "up" else 0.0)])
        metric("herd_site_dns_points", "gauge", "1 for the site the public names point at.",
               [({"target": t}, 1.0 if site["dns"] == t else 0.0) for t in ("main", "backup", "other", "unknown")])
        metric("herd_site_dns_updates_total", "counter", "DNS updates sent and verified by this node.",
               [({}, float(site["updates"]))])
        metric("herd_site_dns_failures", "gauge", "DNS lookups or updates failed in a row (0: the last one worked).",
               [({}, float(site["failures"]))])
    return "\n".join(out) + "\n"

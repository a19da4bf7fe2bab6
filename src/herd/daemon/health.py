"""This node's health from psutil, small enough to ride on every heartbeat."""

from __future__ import annotations

import os
from typing import Any

import psutil


def sample(root: str = "/") -> dict[str, Any]:
    load1, _, _ = os.getloadavg()
    memory = psutil.virtual_memory()
    health: dict[str, Any] = {
        "load1": round(load1, 2),
        "cpus": psutil.cpu_count() or 1,
        "mem_pct": round(memory.percent, 1),
        "disk_pct": round(psutil.disk_usage(root).percent, 1),
    }
    temps = getattr(psutil, "sensors_temperatures", None)
    if temps is not None:
        try:
            readings = [t.current for group in temps().values() for t in group if t.current]
        except (OSError, RuntimeError):
            readings = []
        if readings:
            health["temp_c"] = round(max(readings), 1)
    return health

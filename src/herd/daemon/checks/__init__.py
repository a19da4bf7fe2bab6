"""Health checks of the real servers (ldirectord's job): one coroutine per kind, and the rise/fall state
that turns their results into up or down. The state is pure; the checks only do I/O."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from herd.daemon.checks.http import http_check
from herd.daemon.checks.tcp import tcp_check
from herd.spec import Check, CheckKind

Probe = Callable[[str, int, Check], Awaitable[str | None]]  # None when healthy, else why not

PROBES: dict[CheckKind, Probe] = {CheckKind.HTTP: http_check, CheckKind.TCP: tcp_check}


@dataclass
class CheckState:
    """Up after `rise` successes in a row, down after `fall` failures in a row. Starts down: a real server
    gets traffic only once it has shown it can take it."""

    rise: int
    fall: int
    up: bool = False
    streak: int = 0  # consecutive results that disagree with `up`
    last_error: str | None = "not checked yet"

    def record(self, error: str | None) -> bool:
        """Feed one result; returns True when up/down changed."""
        self.last_error = error
        healthy = error is None
        if healthy == self.up:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak >= (self.rise if healthy else self.fall):
            self.up = healthy
            self.streak = 0
            return True
        return False

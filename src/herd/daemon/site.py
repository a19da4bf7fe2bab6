"""Off-site failover through DNS: when to point the public names at the backup site and when back. Pure: probe
verdicts, DNS results and the clock in, effects (Lookup, Publish) out; no sockets, no asyncio, no time.

It runs on the backup site's VIP holder only. On becoming the holder it first looks up where the names point
(the previous holder may have moved them) and takes that as where it stands. Then:
- the names point at the main site and it has failed every probe for `down_seconds` without a break: point
  them at the backup;
- they point at the backup and the main site has passed every probe for `up_seconds` without a break: point
  them back, if the policy says `failback = "auto"`; with "manual" only `herdctl site failback` does.
Any passed probe restarts the down timer and any failed one the up timer, so a flapping main site moves
nothing. One DNS request at a time; a failed one is retried with exponential backoff, never in a storm.
`herdctl site failover` pins the names on the backup until `herdctl site failback`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Target(enum.StrEnum):
    MAIN = "main"
    BACKUP = "backup"
    OTHER = "other"  # the names point at neither site (only ever a lookup's answer)


@dataclass(frozen=True)
class Lookup:
    """Ask the authoritative server where the names point now."""


@dataclass(frozen=True)
class Publish:
    """Point the names at target's addresses (an RFC 2136 update), then check the server answers so."""

    target: Target
    reason: str


Effect = Lookup | Publish


@dataclass(frozen=True)
class Policy:
    down_seconds: float
    up_seconds: float
    auto_failback: bool
    retry_first: float = 1.0
    retry_max: float = 30.0


class SiteMachine:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.active = False  # this node holds the VIP and so speaks for the site
        self.term = 0  # one per activation: a DNS result from an earlier term is not this term's answer
        self.main_up: bool | None = None  # None: not probed yet since becoming active
        self.main_since: float | None = None  # start of the first probe of the current up/down run
        self.main_error: str | None = None
        self.points: Target | None = None  # where the names point, by the last lookup or verified update
        self.want: Target | None = None
        self.reason = ""
        self.pinned = False  # `herdctl site failover`: stay on the backup until `failback`
        self.failed_back_at: float | None = None  # `herdctl site failback`: the down timer restarts here
        self.busy = False  # a Lookup or Publish is out
        self.failures = 0
        self.retry_at: float | None = None
        self.updates = 0
        self.last: dict[str, Any] | None = None  # the last DNS result, for the status

    # -- inputs -------------------------------------------------------------------------------------------
    def activate(self, now: float) -> list[Effect]:
        """This node has become the VIP holder: forget what the last term knew and look up where things are."""
        self.active, self.busy = True, False
        self.term += 1
        self.main_up = self.main_since = self.main_error = self.points = self.want = None
        self.pinned, self.failed_back_at, self.failures, self.retry_at = False, None, 0, None
        return self.tick(now)

    def deactivate(self) -> None:
        # A DNS request still out finishes; its result is dropped (see _current).
        self.active = False

    def observe(self, healthy: bool, started: float, error: str | None = None) -> list[Effect]:
        """One probe round of the main site, `started` when it began (the site was already in that state)."""
        if not self.active:
            return []
        if healthy != self.main_up:
            self.main_up, self.main_since = healthy, started
        self.main_error = error
        return self.tick(started)

    def looked_up(self, term: int, points: Target | None, now: float, error: str | None = None) -> list[Effect]:
        if not self._current(term):
            return []
        self.busy = False
        self._record("lookup", points, now, error)
        if error is not None or points is None:
            self._backoff(now)
            return self.tick(now)
        self.points, self.failures, self.retry_at = points, 0, None
        if self.want is None:
            # Where the last holder left things is where we stand; OTHER means nobody set them: main.
            self.want = Target.MAIN if points == Target.OTHER else points
            self.reason = "the names pointed at neither site" if points == Target.OTHER else ""
        return self.tick(now)

    def published(self, term: int, target: Target, now: float, error: str | None = None) -> list[Effect]:
        if not self._current(term):
            return []
        self.busy = False
        self._record("update", target, now, error)
        if error is not None:
            self._backoff(now)
        else:
            self.points, self.failures, self.retry_at = target, 0, None
            self.updates += 1
        return self.tick(now)

    def failover(self, now: float) -> list[Effect]:
        self.pinned, self.failed_back_at = True, None
        self._set(Target.BACKUP, "herdctl site failover")
        self.retry_at = None  # by hand: now, not at the end of a backoff
        return self.tick(now)

    def failback(self, now: float) -> list[Effect]:
        self.pinned, self.failed_back_at = False, now
        self._set(Target.MAIN, "herdctl site failback")
        self.retry_at = None
        return self.tick(now)

    # -- decisions ----------------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Effect]:
        if not self.active or self.busy:
            return []
        if self.retry_at is not None and now < self.retry_at:
            return []
        if self.points is None:
            self.busy = True
            return [Lookup()]
        self._apply_policy(now)
        if self.want is None or self.want == self.points:
            return []
        if self.points == Target.OTHER and self.want == Target.MAIN and not self.main_up:
            return []  # names of neither site: claim them for the main site only once it is seen up
        self.busy = True
        return [Publish(self.want, self.reason)]

    def _apply_policy(self, now: float) -> None:
        if self.pinned or self.main_up is None or self.main_since is None:
            return
        run = now - self.main_since
        if self.want == Target.MAIN and not self.main_up:
            if self.failed_back_at is not None:
                run = min(run, now - self.failed_back_at)
            if run >= self.policy.down_seconds:
                self._set(Target.BACKUP, f"main site down for {run:.1f} s ({self.main_error or 'checks fail'})")
        elif (self.want == Target.BACKUP and self.main_up and self.policy.auto_failback
              and run >= self.policy.up_seconds):
            self._set(Target.MAIN, f"main site healthy again for {run:.1f} s")

    def _set(self, target: Target, reason: str) -> None:
        if self.want != target:
            self.want, self.reason = target, reason

    def _current(self, term: int) -> bool:
        return self.active and self.busy and term == self.term

    def _backoff(self, now: float) -> None:
        self.failures += 1
        delay = min(self.policy.retry_max, self.policy.retry_first * 2 ** (self.failures - 1))
        self.retry_at = now + delay

    def _record(self, kind: str, target: Target | None, now: float, error: str | None) -> None:
        self.last = {"kind": kind, "target": target.value if target else None, "at": now,
                     "result": "ok" if error is None else error}

    # -- status ---------------------------------------------------------------------------------------------
    def status(self, now: float) -> dict[str, Any]:
        def ago(t: float | None) -> float | None:
            return None if t is None else round(now - t, 1)

        main = "unknown" if self.main_up is None else ("up" if self.main_up else "down")
        last = None if self.last is None else {**self.last, "at": None, "ago_s": ago(self.last["at"])}
        return {
            "active": self.active,
            "main": main, "main_for_s": ago(self.main_since), "main_error": self.main_error,
            "dns": self.points.value if self.points else "unknown",
            "want": self.want.value if self.want else None,
            "pinned": self.pinned,
            "updates": self.updates,
            "failures": self.failures,
            "retry_in_s": None if self.retry_at is None else round(max(0.0, self.retry_at - now), 1),
            "last": last,
        }

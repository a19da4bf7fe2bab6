"""The rollout itself: stage the release everywhere, then each step of the order, each with a deadline; the first
step that fails stops it, and no further node is touched.

A node's reboot is done when the node runs the release and passes its role check after a boot it did not have
before (its boot id changed). A node that comes back on its old release rolled itself back (its new slot failed
to boot or to pass its check, and GRUB's boot counting or herdd returned it to the old one): the rollout stops
and says so. A web node taken out of rotation is put back whenever the rollout stops, so a failed or aborted
rollout leaves no drain behind."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from herd.rollout.order import Kind, Step, order, preflight
from herd.rollout.view import Action, ClusterView, HandVip, Reboot, SetWeight, Stage, SwitchNfs


class Status(enum.StrEnum):
    STAGING = "staging"
    ROLLING = "rolling"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Timing:
    """Seconds each phase may take before the rollout stops."""
    stage: float = 1800  # every node writing its inactive slot (a stick writes ~20 MiB/s)
    drain: float = 60  # a drained web node's connections; past it the reboot cuts what is left
    reboot: float = 600  # boot, rejoin, role check (the node's own deadline before it rolls back is shorter)
    soak: float = 120  # the canary serving on the new release before any other node is touched
    switch: float = 300  # a planned NFS switchover, DRBD UpToDate again
    vip: float = 60  # the VIP handed over
    weight: float = 60  # the VIP holder applying a weight


class PreflightError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Rollout:
    release: str
    steps: tuple[Step, ...]
    timing: Timing = field(default_factory=Timing)
    status: Status = Status.STAGING
    index: int = 0  # the step under way (ROLLING)
    entered: float = 0.0  # when the current phase or step began
    asked: bool = False  # the current step's action was handed out
    boot_before: str = ""  # the node's boot id when its reboot was asked
    reason: str = ""  # why it stopped

    @classmethod
    def start(cls, view: ClusterView, release: str, now: float, timing: Timing | None = None) -> Rollout:
        """A rollout of `release`, or PreflightError naming everything that is missing."""
        problems = preflight(view)
        if problems:
            raise PreflightError(problems)
        return cls(release, order(view), timing or Timing(), entered=now)

    def where(self) -> str:
        if self.status == Status.STAGING:
            return "staging the release on every node"
        if self.index < len(self.steps):
            return f"step {self.index + 1} of {len(self.steps)}: {self.steps[self.index]}"
        return "every step done"

    def advance(self, now: float, view: ClusterView) -> list[Action]:
        """What to do now, given the cluster as it is; call it again and again (every second or two)."""
        if self.status == Status.STAGING:
            return self._stage(now, view)
        if self.status != Status.ROLLING:
            return []
        if self.index >= len(self.steps):
            self.status = Status.DONE
            return []
        step = self.steps[self.index]
        node = view.node(step.node)
        elapsed = now - self.entered
        actions: list[Action] = []
        if not self.asked:
            self.asked = True
            # A node that already runs the release (a rollout resumed, or run again) is not rebooted again.
            already = step.kind == Kind.REBOOT and node.release == self.release and node.check
            self.boot_before = "" if already else node.boot
            action = self._action(step)
            if action is not None and not already and not self._done(step, view, elapsed):
                actions.append(action)
        failure = self._failure(step, view, elapsed)
        if failure:
            return actions + self._stop(Status.FAILED, failure, view)
        if self._done(step, view, elapsed):
            self.index += 1
            self.entered, self.asked, self.boot_before = now, False, ""
            return actions + self.advance(now, view)
        return actions

    def abort(self, view: ClusterView) -> list[Action]:
        """The operator's stop: nothing further is touched, a drained web node goes back in rotation."""
        if self.status in (Status.STAGING, Status.ROLLING):
            return self._stop(Status.ABORTED, "aborted by the operator", view)
        return []

    def _stage(self, now: float, view: ClusterView) -> list[Action]:
        gone = [n.name for n in view.nodes if not n.alive]
        if gone:
            return self._stop(Status.FAILED, f"{', '.join(gone)} went away while the release was staged", view)
        todo = [n.name for n in view.nodes if self.release not in (n.release, n.staged)]
        if not todo:
            self.status, self.entered, self.asked = Status.ROLLING, now, False
            return self.advance(now, view)
        if now - self.entered > self.timing.stage:
            return self._stop(Status.FAILED, f"{', '.join(todo)} did not stage {self.release} within "
                                             f"{self.timing.stage:.0f} s", view)
        if self.asked:
            return []
        self.asked = True
        return [Stage(name, self.release) for name in todo]

    @staticmethod
    def _action(step: Step) -> Action | None:
        actions: dict[Kind, Action] = {
            Kind.DRAIN: SetWeight(step.node, 0), Kind.UNDRAIN: SetWeight(step.node, 1), Kind.REBOOT: Reboot(step.node),
            Kind.SWITCH_NFS: SwitchNfs(step.node), Kind.HAND_VIP: HandVip(step.node)}
        return actions.get(step.kind)

    def _done(self, step: Step, view: ClusterView, elapsed: float) -> bool:
        node = view.node(step.node)
        match step.kind:
            case Kind.DRAIN:
                return node.weight == 0 and (node.connections == 0 or elapsed >= self.timing.drain)
            case Kind.UNDRAIN:
                return node.weight == 1
            case Kind.REBOOT:
                rebooted = node.boot != self.boot_before or not self.boot_before
                return node.alive and node.release == self.release and node.check and rebooted
            case Kind.SOAK:
                return elapsed >= self.timing.soak
            case Kind.SWITCH_NFS:
                return view.nfs_primary == step.node and view.drbd_uptodate
            case Kind.HAND_VIP:
                return view.vip_holder == step.node
        return False

    def _failure(self, step: Step, view: ClusterView, elapsed: float) -> str:
        node = view.node(step.node)
        if step.kind == Kind.REBOOT and node.alive and node.boot != self.boot_before and self.boot_before \
                and node.release != self.release:
            return (f"{node.name} came back on {node.release}: {self.release} failed there (it did not boot or "
                    "did not pass its role check) and the node returned to its old slot")
        if step.kind == Kind.SOAK and not node.check:
            return f"{node.name} failed its role check on {self.release} during the soak"
        limit = {Kind.DRAIN: self.timing.weight + self.timing.drain, Kind.UNDRAIN: self.timing.weight,
                 Kind.REBOOT: self.timing.reboot, Kind.SOAK: self.timing.soak + self.timing.reboot,
                 Kind.SWITCH_NFS: self.timing.switch, Kind.HAND_VIP: self.timing.vip}[step.kind]
        if elapsed > limit:
            return f"{step} did not finish within {limit:.0f} s"
        return ""

    def _stop(self, status: Status, reason: str, view: ClusterView) -> list[Action]:
        self.status, self.reason = status, f"{reason} ({self.where()})"
        return [SetWeight(n.name, 1) for n in view.nodes if n.weight == 0 and n.alive]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [[s.kind.value, s.node] for s in self.steps]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rollout:
        return cls(release=data["release"], steps=tuple(Step(Kind(k), n) for k, n in data["steps"]),
                   timing=Timing(**data["timing"]), status=Status(data["status"]), index=data["index"],
                   entered=data["entered"], asked=data["asked"], boot_before=data["boot_before"],
                   reason=data["reason"])

"""Runs a list of steps: every `check()` first, then each `run()` with its `undo()` registered *before* it
starts, so a failed or interrupted build unwinds what was started, in reverse order."""

from __future__ import annotations

import logging
from contextlib import ExitStack

from herd.build.context import BuildContext
from herd.build.steps import Step
from herd.build.steps.artifacts import Artifacts
from herd.build.steps.bundle import Bundle
from herd.build.steps.debootstrap import Debootstrap
from herd.build.steps.disk import Disk
from herd.build.steps.packages import Packages
from herd.build.steps.tree import Tree
from herd.build.steps.zipapp import Zipapp

log = logging.getLogger("herd.build")


def steps_for(ctx: BuildContext) -> list[Step]:
    steps: list[Step] = [Zipapp(), Debootstrap()]
    steps += [Packages(r) for r in ctx.plan.roles]
    for r in ctx.plan.roles:
        steps += [Tree(r), Disk(r), Bundle(r.role)]
    steps.append(Artifacts())
    return steps


def execute(ctx: BuildContext, steps: list[Step]) -> None:
    for step in steps:
        step.check(ctx)
    with ExitStack() as stack:
        for step in steps:
            stack.callback(_undo, step, ctx)
            step.run(ctx)
        # Success: the undos still run, removing scratch trees; images are already renamed into place.


def _undo(step: Step, ctx: BuildContext) -> None:
    try:
        step.undo(ctx)
    except Exception:
        # Logged, never swallowed silently, and never hiding the error that started the unwinding.
        log.exception("cleaning up after %s failed", step.name)

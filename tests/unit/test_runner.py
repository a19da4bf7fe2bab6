"""The builder's runner (herd.build.runner), its safety net: every check before any side effect, each undo
registered before its step runs, undos in reverse order after success, failure or Ctrl-C, an undo's own error
logged without hiding the one that started the unwinding."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import cast

import pytest

from herd.build.context import BuildContext
from herd.build.runner import execute, steps_for
from herd.build.steps import BuildError, Step
from herd.spec import Role

CTX = cast(BuildContext, SimpleNamespace())


class Recorded(Step):
    def __init__(self, name: str, calls: list[str], fail: dict[str, BaseException] | None = None) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail or {}

    def _do(self, what: str) -> None:
        self.calls.append(f"{what} {self.name}")
        if what in self.fail:
            raise self.fail[what]

    def check(self, ctx: BuildContext) -> None:
        self._do("check")

    def run(self, ctx: BuildContext) -> None:
        self._do("run")

    def undo(self, ctx: BuildContext) -> None:
        self._do("undo")


def test_checks_first_then_runs_then_undos_in_reverse() -> None:
    calls: list[str] = []
    execute(CTX, [Recorded(n, calls) for n in "abc"])
    assert calls == ["check a", "check b", "check c", "run a", "run b", "run c", "undo c", "undo b", "undo a"]


def test_a_failed_check_stops_everything_before_any_side_effect() -> None:
    calls: list[str] = []
    steps = [Recorded("a", calls), Recorded("b", calls, {"check": BuildError("bad input")}), Recorded("c", calls)]
    with pytest.raises(BuildError, match="bad input"):
        execute(CTX, steps)
    assert calls == ["check a", "check b"]


@pytest.mark.parametrize("error", [BuildError("step failed"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_step_unwinds_what_was_started_in_reverse(error: BaseException) -> None:
    calls: list[str] = []
    steps = [Recorded("a", calls), Recorded("b", calls), Recorded("c", calls, {"run": error}), Recorded("d", calls)]
    with pytest.raises(type(error)):
        execute(CTX, steps)
    # c's undo was registered before c ran: a half-run step is cleaned up too; d never ran, so nothing to undo.
    assert calls[4:] == ["run a", "run b", "run c", "undo c", "undo b", "undo a"]


def test_an_undo_that_fails_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    steps = [Recorded("a", calls), Recorded("b", calls, {"undo": OSError("busy")}),
             Recorded("c", calls, {"run": BuildError("the real problem")})]
    with caplog.at_level(logging.ERROR, logger="herd.build"), pytest.raises(BuildError, match="the real problem"):
        execute(CTX, steps)
    assert calls[3:] == ["run a", "run b", "run c", "undo c", "undo b", "undo a"]
    assert any("cleaning up after b failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_the_steps_of_a_build_in_order() -> None:
    roles = [SimpleNamespace(role=Role.DIRECTOR), SimpleNamespace(role=Role.WEB)]
    ctx = cast(BuildContext, SimpleNamespace(plan=SimpleNamespace(roles=roles)))
    names = [type(s).__name__ for s in steps_for(ctx)]
    assert names == ["Zipapp", "Debootstrap", "Packages", "Packages", "Tree", "Disk", "Bundle", "Tree", "Disk",
                     "Bundle", "Artifacts"]

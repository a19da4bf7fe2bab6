"""Build steps. Each has a name, `check()` (runs for every step before anything touches disk), `run()`, and
`undo()` (runs in reverse order after a failure or Ctrl-C, and must cope with a half-run step)."""

from __future__ import annotations

from herd.build.context import BuildContext


class BuildError(Exception):
    pass


class Step:
    name = "step"

    def label(self) -> str:
        return self.name

    def check(self, ctx: BuildContext) -> None:
        """Raise BuildError for a problem found without side effects."""

    def run(self, ctx: BuildContext) -> None:
        raise NotImplementedError

    def undo(self, ctx: BuildContext) -> None:
        """Remove what run() made that must not outlive a failed build."""

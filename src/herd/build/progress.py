"""Showing a long build: one line per step, a spinner (or a bar when the step knows its fraction) while it
runs, and the last line of the tool's output so a slow download never looks like a hang."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class StepProgress:
    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def line(self, text: str) -> None:
        if self._progress is not None and self._task is not None and text.strip():
            self._progress.update(self._task, detail=escape(text.strip()[:70]))

    def fraction(self, value: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=100, completed=max(0.0, min(100.0, value * 100)))


class Reporter:
    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        # Into a log or a pipe every line stays one line (an error's file:line with its message, a step with
        # its time), however long: rich would wrap it at 80 columns.
        self.console.soft_wrap = not self.console.is_terminal
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet

    def warn(self, text: str) -> None:
        """Shown even when quiet: something the user should change, though the build goes on."""
        self.console.print(f"[yellow]warning:[/] {escape(text)}")

    def info(self, text: str) -> None:
        if not self.quiet:
            # Into a log or a pipe, a step's line stays one line (with its time at the end), whatever its length.
            self.console.print(text)

    @contextmanager
    def step(self, label: str, cached: bool = False) -> Iterator[StepProgress]:
        start = time.monotonic()
        label = escape(label)
        if cached:
            self.info(f"[green]✓[/] {label} [dim](cached)[/]")
            yield StepProgress(None, None)
            return
        if not self.live:
            self.info(f"… {label}")
            try:
                yield StepProgress(None, None)
            except BaseException:
                self.info(f"[red]✗[/] {label} failed after {time.monotonic() - start:.1f} s")
                raise
            self.info(f"[green]✓[/] {label} [dim]{time.monotonic() - start:.1f} s[/]")
            return
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                            TimeElapsedColumn(), TextColumn("[dim]{task.fields[detail]}"),
                            console=self.console, transient=True)
        with progress:
            task = progress.add_task(label, total=None, detail="")
            try:
                yield StepProgress(progress, task)
            except BaseException:
                progress.stop()
                self.info(f"[red]✗[/] {label} failed after {time.monotonic() - start:.1f} s")
                raise
        self.info(f"[green]✓[/] {label} [dim]{time.monotonic() - start:.1f} s[/]")


def plain_console() -> Console:
    return Console(file=sys.stdout, highlight=False)

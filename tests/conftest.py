"""What every tier shares: a time limit per test (pyproject's `timeout`, 20 minutes, is for the QEMU tests, whose
first test on a lab pays for its boots); the fast tiers get a tighter one, so a hang there fails within minutes
with the test's name. One rule for tests that need root: they are marked `root` (every netns and image test is),
and without root they fail, saying so; never a skip that would pass a run that tested nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TIMEOUTS = {"unit": 180, "netns": 300}  # seconds, a test with its fixtures' set-up (a namespace cluster's start)
ROOT_TIERS = {"netns": "network namespaces", "image": "builds, loop devices and QEMU"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        limit = TIMEOUTS.get(Path(str(item.fspath)).parent.name)
        if limit is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))
        if Path(str(item.fspath)).parent.name in ROOT_TIERS:
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        why = ROOT_TIERS.get(Path(str(item.fspath)).parent.name, "mounts, loop devices or another user's files")
        pytest.fail(f"needs root ({why}): run the tests as root, as tests/run does", pytrace=False)


_PARTS: dict[str, float] = {}  # test file -> seconds spent in its tests and their fixtures
_SPANS: dict[str, tuple[float, float]] = {}  # test file -> (first start, last stop), epoch seconds


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    part = report.nodeid.split("::", 1)[0]
    _PARTS[part] = _PARTS.get(part, 0.0) + report.duration
    first, _ = _SPANS.get(part, (report.start, report.stop))
    _SPANS[part] = (min(first, report.start), report.stop)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the run's time went, per test file (a lab's boots count in the file whose test first used it), and
    per tier: the figures the README's Development section reports."""
    if not _PARTS:
        return
    tiers: dict[str, float] = {}
    for part, seconds in _PARTS.items():
        tier = part.split("/")[1] if part.count("/") >= 2 else part
        tiers[tier] = tiers.get(tier, 0.0) + seconds
    write = terminalreporter.write_line
    terminalreporter.section("time per part")
    begin = min(start for start, _ in _SPANS.values())
    for part, seconds in sorted(_PARTS.items(), key=lambda kv: -kv[1]):
        if seconds >= 1:
            start, stop = _SPANS[part]
            write(f"{seconds:8.0f} s  {part}  (from {start - begin:.0f} s to {stop - begin:.0f} s)")
    write("  tiers: " + ", ".join(f"{tier} {seconds:.0f} s" for tier, seconds in sorted(tiers.items())))

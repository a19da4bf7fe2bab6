"""What every tier shares: a time limit per test (pyproject's `timeout`, 20 minutes, is for the QEMU tests, whose
first test on a lab pays for its boots); the fast tiers get a tighter one, so a hang there fails within minutes
with the test's name."""

from __future__ import annotations

from pathlib import Path

import pytest

TIMEOUTS = {"unit": 180, "netns": 300}  # seconds, a test with its fixtures' set-up (a namespace cluster's start)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        limit = TIMEOUTS.get(Path(str(item.fspath)).parent.name)
        if limit is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))

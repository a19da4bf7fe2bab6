from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from herd.spec import load

from .harness import PROJECT, Cluster, new_key


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    key = new_key(work)
    spec_path = PROJECT / "examples/cluster.toml"
    c = Cluster(load(spec_path), spec_path, key, work, f"h{os.getpid() % 100000}")
    try:
        c.start()
        yield c
    finally:
        c.close()

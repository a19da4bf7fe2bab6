"""herd.slots is used by both the builder and herdd: it needs nothing of herd outside it (herd.build, herd.daemon)
and nothing outside the standard library, and each of its modules imports first and alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .test_spec_package import SRC, imported, module_files

SLOTS = "herd.slots"


def slots_modules() -> list[str]:
    return [name for name in module_files(SRC) if name == SLOTS or name.startswith(SLOTS + ".")]


def test_the_slots_need_nothing_but_themselves_and_the_standard_library() -> None:
    files = module_files(SRC)
    assert set(slots_modules()) == {SLOTS, f"{SLOTS}.grubenv", f"{SLOTS}.bootcount", f"{SLOTS}.grubcfg",
                                    f"{SLOTS}.blockwrite", f"{SLOTS}.verdict"}
    outside: dict[str, set[str]] = {}
    for name in slots_modules():
        for module, _ in imported(name, files[name]):
            top = module.partition(".")[0]
            if not (module.startswith(SLOTS) or (top != "herd" and top in sys.stdlib_module_names)):
                outside.setdefault(name, set()).add(module)
    assert not outside, outside


@pytest.mark.parametrize("name", slots_modules())
def test_each_slots_module_imports_first_and_alone(name: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(SRC)})
    assert r.returncode == 0, r.stderr

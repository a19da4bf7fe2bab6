"""herdd.pyz: shiv packs herd and its dependencies into one file for the *target*: Debian bookworm's
CPython 3.11 on x86-64. psutil is a C extension, so pip is told the target's platform and takes wheels
built for it, never whatever the build host happens to run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from herd.build.context import BuildContext
from herd.build.plan import tree_digest
from herd.build.run import run
from herd.build.steps import Step

TARGET_PIP = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
              "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:"]


def zipapp_key(project: Path) -> str:
    src = tree_digest(project / "src", ("**/*.py", "**/*.typed"))
    return tree_digest(project, ("pyproject.toml",)) + src


class Zipapp(Step):
    name = "zipapp"

    def label(self) -> str:
        return "herdd zipapp (shiv, CPython 3.11 x86-64)"

    def run(self, ctx: BuildContext) -> None:
        key = ctx.plan.zipapp_key
        cached = ctx.cache.lookup("zipapp", key, ".pyz")
        with ctx.reporter.step(self.label(), cached=cached is not None) as progress:
            if cached is not None:
                ctx.zipapp = cached
                return
            wheels = ctx.work / "wheels"
            wheels.mkdir(parents=True, exist_ok=True)
            env = {"PIP_CACHE_DIR": str(ctx.cache.root / "pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            # herd itself is pure Python: build its wheel here, then let pip resolve the rest for the target.
            run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ctx.project],
                on_line=progress.line, env=env)
            (herd_wheel,) = wheels.glob("herd-*.whl")
            shiv = Path(sys.executable).with_name("shiv")
            with ctx.cache.store("zipapp", key, ".pyz") as tmp:
                run([shiv if shiv.exists() else "shiv", "-o", tmp, "-e", "herd.entry:main",
                     "-p", "/usr/bin/python3", "--compressed", "--reproducible",
                     "--", *TARGET_PIP, "--find-links", wheels, str(herd_wheel)],
                    on_line=progress.line, env={**env, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH",
                                                                                          "1700000000")})
            ctx.zipapp = ctx.cache.path("zipapp", key, ".pyz")

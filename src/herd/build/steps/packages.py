"""A role's root tree: the base plus the role's packages (image/<role>.toml), installed in a chroot with
daemons kept from starting. Cached as a tarball keyed by the base and the package list."""

from __future__ import annotations

import shlex
from pathlib import Path

from herd.build.chroot import DROP_APT_CACHES, AptProgress, in_chroot
from herd.build.context import BuildContext
from herd.build.fs import pack, remove_tree, unpack
from herd.build.plan import RolePlan
from herd.build.steps import BuildError, Step


class Packages(Step):
    name = "packages"

    def __init__(self, role_plan: RolePlan) -> None:
        self.role_plan = role_plan

    def label(self) -> str:
        pkgs = ", ".join(self.role_plan.recipe.packages) or "no extra packages"
        return f"[{self.role_plan.role}] packages: {pkgs}"

    def tree(self, ctx: BuildContext) -> Path:
        return ctx.work / self.role_plan.role.value / "root"

    def run(self, ctx: BuildContext) -> None:
        role = self.role_plan.role
        key = f"{role.value}-{self.role_plan.cache_key}"
        cached = ctx.cache.lookup("rootfs", key, ".tar.zst")
        with ctx.reporter.step(self.label(), cached=cached is not None) as progress:
            if cached is not None:
                ctx.role_tarballs[role] = cached
                return
            if ctx.base_tarball is None:
                raise BuildError("internal: the base tree was not built before the role's packages")
            tree = self.tree(ctx)
            remove_tree(tree)
            progress.line("unpacking the base")
            unpack(ctx.base_tarball, tree)
            if self.role_plan.recipe.packages:
                apt = AptProgress()

                def apt_line(line: str) -> None:
                    shown = apt.feed(line)
                    progress.fraction(apt.fraction)
                    if shown:
                        progress.line(shown)

                pkgs = " ".join(shlex.quote(p) for p in self.role_plan.recipe.packages)
                in_chroot(tree, ctx.debs, "apt-get install -y -q --no-install-recommends -o APT::Status-Fd=1 "
                          f"{pkgs} && {DROP_APT_CACHES}", on_line=apt_line)
            progress.line("packing the role tree")
            with ctx.cache.store("rootfs", key, ".tar.zst") as tmp:
                pack(tree, tmp)
            ctx.role_tarballs[role] = ctx.cache.path("rootfs", key, ".tar.zst")
            ctx.trees[role] = tree  # already unpacked: the tree step uses it as is

    def undo(self, ctx: BuildContext) -> None:
        remove_tree(self.tree(ctx))

"""The base root tree every role shares: debootstrap (minbase + the recipe's packages), then the kernel with
compressed modules and one initramfs. Cached as a tarball keyed by suite, arch, mirror and recipe."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path

from herd.build.chroot import DROP_APT_CACHES, REPRODUCIBLE_ENV, AptProgress, in_chroot
from herd.build.context import BuildContext
from herd.build.fs import pack, remove_tree
from herd.build.run import in_private_namespace, run
from herd.build.steps import Step
from herd.spec import Debian

# Images carry no docs, man pages or translations: they are never read on a headless node.
NODOC = """\
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
"""


def debootstrap_command(debian: Debian, packages: Iterable[str], debs: Path, tree: Path) -> list[str | Path]:
    """--force-check-gpg: the Release file must be signed by a key of the suite's keyring (Debian's archive
    keyring, a host requirement). Without it debootstrap, given a mirror, only warns when the keyring is missing
    and installs whatever the mirror or the network between serves."""
    return ["debootstrap", "--force-check-gpg", "--variant=minbase", "--components=main", f"--arch={debian.arch}",
            f"--include={','.join(packages)}", f"--cache-dir={debs.resolve()}", debian.suite, tree, debian.mirror]


class Debootstrap(Step):
    name = "base"

    def label(self) -> str:
        d = self.spec_debian
        return f"base system (debootstrap {d.suite}/{d.arch}, kernel, initramfs)"

    def check(self, ctx: BuildContext) -> None:
        self.spec_debian = ctx.plan.spec.debian

    def tree(self, ctx: BuildContext) -> Path:
        return ctx.work / "base"

    def run(self, ctx: BuildContext) -> None:
        plan = ctx.plan
        self.spec_debian = plan.spec.debian
        cached = ctx.cache.lookup("rootfs", f"base-{plan.base_key}", ".tar.zst")
        # Only needed when some role must be (re)installed from it.
        needed = any(ctx.cache.lookup("rootfs", f"{r.role.value}-{r.cache_key}", ".tar.zst") is None
                     for r in plan.roles)
        with ctx.reporter.step(self.label(), cached=cached is not None or not needed) as progress:
            if cached is not None or not needed:
                ctx.base_tarball = cached
                return
            tree = self.tree(ctx)
            remove_tree(tree)
            tree.mkdir(parents=True)
            ctx.debs.mkdir(parents=True, exist_ok=True)
            debian = plan.spec.debian
            run(in_private_namespace(debootstrap_command(debian, plan.base.packages, ctx.debs, tree)),
                on_line=progress.line, env=REPRODUCIBLE_ENV)
            (tree / "etc/dpkg/dpkg.cfg.d/herd-nodoc").write_text(NODOC)
            (tree / "etc/initramfs-tools/modules").write_text(
                "# herd: the root may be on a USB stick, SATA, NVMe or virtio disk\n"
                + "".join(f"{m}\n" for m in plan.base.initramfs_modules))
            apt = AptProgress()

            def apt_line(line: str) -> None:
                shown = apt.feed(line)
                progress.fraction(apt.fraction)
                if shown:
                    progress.line(shown)

            # INITRD=No: the kernel's hook skips the initramfs; it is built once, after compressing modules.
            in_chroot(tree, ctx.debs, f"INITRD=No apt-get install -y -q --no-install-recommends "
                      f"-o APT::Status-Fd=1 {shlex.quote(plan.base.kernel)}", on_line=apt_line)
            (version,) = os.listdir(tree / "usr/lib/modules")
            progress.line("compressing kernel modules")
            run(["sh", "-c", "find \"$1\" -name '*.ko' -print0 | xargs -0 -r -P\"$(nproc)\" -n 64 "
                 "xz --check=crc32 -1", "-", tree / "usr/lib/modules" / version], on_line=progress.line)
            in_chroot(tree, ctx.debs, f"depmod -a {shlex.quote(version)} && "
                      f"update-initramfs -c -k {shlex.quote(version)} && {DROP_APT_CACHES}",
                      on_line=progress.line)
            progress.line("packing the base tree")
            with ctx.cache.store("rootfs", f"base-{plan.base_key}", ".tar.zst") as tmp:
                pack(tree, tmp, on_line=progress.line)
            ctx.base_tarball = ctx.cache.path("rootfs", f"base-{plan.base_key}", ".tar.zst")

    def undo(self, ctx: BuildContext) -> None:
        remove_tree(self.tree(ctx))

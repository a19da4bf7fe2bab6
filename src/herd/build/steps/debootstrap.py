"""The base root tree every role shares: debootstrap (minbase + the recipe's packages), upgraded from the
suite's updates and security archives, then the kernel with compressed modules and one initramfs. Cached as a
tarball keyed by suite, arch, the archives (their URLs and their state: archive.py) and recipe."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from herd.build.archive import SOURCES_FILE, sources_file
from herd.build.chroot import DROP_APT_CACHES, REPRODUCIBLE_ENV, AptProgress, in_chroot
from herd.build.context import BuildContext
from herd.build.dpkg import stale_compressed_modules, stale_kernels
from herd.build.fs import pack, remove_tree, unpack
from herd.build.intree import remove, write_file
from herd.build.run import OnLine, in_private_namespace, run
from herd.build.steps import BuildError, Step
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
        cached = ctx.cache.lookup("rootfs", plan.base_cache_name, ".tar.zst")
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
            apt = AptProgress()

            def apt_line(line: str) -> None:
                shown = apt.feed(line)
                progress.fraction(apt.fraction)
                if shown:
                    progress.line(shown)

            # The same recipe made against older archives: upgrading it costs a fraction of a cold build.
            older = ctx.cache.newest("rootfs", f"base-{plan.base_recipe_key}.", ".tar.zst")
            if older is not None:
                ctx.reporter.info("[dim]base: the archives have moved since the cached base tree was made: "
                                  "upgrading it rather than building it again[/]")
                unpack(older, tree)
            else:
                self._bootstrap(ctx, tree, progress.line)
            # debootstrap knows one archive: the suite's point release. The updates and security archives come
            # in before the kernel and every role's packages are installed from the same lists.
            remove(tree, PurePosixPath("etc/apt/sources.list"))
            write_file(tree, PurePosixPath(SOURCES_FILE), sources_file(plan.spec.debian).encode(), 0o644)
            # INITRD=No: the kernel's hook skips the initramfs; it is built once, after compressing modules.
            in_chroot(tree, ctx.debs, "apt-get update -q && INITRD=No apt-get full-upgrade -y -q "
                      "--no-install-recommends -o APT::Status-Fd=1", on_line=apt_line)
            in_chroot(tree, ctx.debs, f"INITRD=No apt-get install -y -q --no-install-recommends "
                      f"-o APT::Status-Fd=1 {shlex.quote(plan.base.kernel)}", on_line=apt_line)
            version = self._one_kernel(ctx, tree, progress.line)
            progress.line("compressing kernel modules")
            run(["sh", "-c", "find \"$1\" -name '*.ko' -print0 | xargs -0 -r -P\"$(nproc)\" -n 64 "
                 "xz --force --check=crc32 -1", "-", tree / "usr/lib/modules" / version], on_line=progress.line)
            # One initramfs, made after the modules were compressed (an upgraded tree's is made again: the
            # packages it holds may have changed).
            v = shlex.quote(version)
            in_chroot(tree, ctx.debs, f"depmod -a {v}\n"
                      f"if [ -e /boot/initrd.img-{v} ]; then update-initramfs -d -k {v}; fi\n"
                      f"update-initramfs -c -k {v}\n{DROP_APT_CACHES}", on_line=progress.line)
            progress.line("packing the base tree")
            with ctx.cache.store("rootfs", plan.base_cache_name, ".tar.zst") as tmp:
                pack(tree, tmp, on_line=progress.line)
            ctx.base_tarball = ctx.cache.path("rootfs", plan.base_cache_name, ".tar.zst")

    def _bootstrap(self, ctx: BuildContext, tree: Path, on_line: OnLine) -> None:
        plan = ctx.plan
        run(in_private_namespace(debootstrap_command(plan.spec.debian, plan.base.packages, ctx.debs, tree)),
            on_line=on_line, env=REPRODUCIBLE_ENV)
        (tree / "etc/dpkg/dpkg.cfg.d/herd-nodoc").write_text(NODOC)
        (tree / "etc/initramfs-tools/modules").write_text(
            "# herd: the root may be on a USB stick, SATA, NVMe or virtio disk\n"
            + "".join(f"{m}\n" for m in plan.base.initramfs_modules))

    def _one_kernel(self, ctx: BuildContext, tree: Path, on_line: OnLine) -> str:
        """The kernel the recipe's metapackage depends on now, with every other one gone: an upgrade to a new
        kernel ABI leaves the old package, and its modules, which herd compressed (dpkg does not know those
        files), behind."""
        status = (tree / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
        try:
            keep, stale = stale_kernels(status, ctx.plan.base.kernel)
        except ValueError as exc:
            raise BuildError(f"image/base.toml: kernel: {exc}") from None
        if stale:
            on_line(f"removing the kernels the upgrade replaced: {', '.join(stale)}")
            in_chroot(tree, ctx.debs, "apt-get purge -y -q " + " ".join(map(shlex.quote, stale)), on_line=on_line)
        version = keep.removeprefix("linux-image-")
        for left in os.listdir(tree / "usr/lib/modules"):
            if left != version:
                remove(tree, PurePosixPath("usr/lib/modules") / left)
        modules = tree / "usr/lib/modules" / version
        if not modules.is_dir():
            raise BuildError(f"{keep} is installed but usr/lib/modules/{version} is missing")
        # The same kernel package upgraded in place: its new modules (.ko) beside the old ones herd compressed,
        # which dpkg did not know to remove.
        listed = (tree / f"var/lib/dpkg/info/{keep}.list").read_text().splitlines()
        for path in stale_compressed_modules(modules, version, listed):
            path.unlink()
        return version

    def undo(self, ctx: BuildContext) -> None:
        remove_tree(self.tree(ctx))

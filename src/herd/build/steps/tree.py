"""A role's final root tree: its cached packages tree, the overlay rendered for this cluster, herdd and the
cluster's spec and key installed, GRUB's modules in /boot, and everything node-specific or useless removed
(SSH host keys, machine-id, apt lists, docs, logs): every node must make its own identity at first boot."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from herd.build.archive import fixes, tree_lists
from herd.build.checkout import read, walk
from herd.build.chroot import in_chroot
from herd.build.context import BuildContext
from herd.build.debversion import newer_offered
from herd.build.dpkg import tree_packages
from herd.build.fs import pack, remove_tree, unpack
from herd.build.intree import make_dirs, real_dir, remove, safe_path, write_file
from herd.build.overlay import OverlayFile, disable_unit, enable_unit, install, mask_unit, render, template_context
from herd.build.plan import RolePlan
from herd.build.reproducible import clamp_tree
from herd.build.run import CommandError
from herd.build.steps import BuildError, Step
from herd.build.steps.zipapp import SHIV_ROOT
from herd.spec import Role, Spec

GRUB_MODULES = Path("/usr/lib/grub")
UNITS = ("herdd.service", "herd-growroot.service", "nftables.service")
# Units a node never needs, each of which costs its boot seconds on a thin client (a minute under QEMU's TCG):
# e2scrub for LVM snapshots (no LVM here), binfmt_misc registrations (none), the DRM module (no screen).
MASKED = ("e2scrub_reap.service", "e2scrub_all.timer", "systemd-binfmt.service", "modprobe@drm.service")
UNPACK_FORMAT = 2  # bump when unpack_zipapp changes what it makes: cached unpackings are then made again. 2: umask 022
NOT_DIGESTED = ("etc/herd/cluster.key", "usr/lib/herd/herdd.pyz")
NOT_IN_BUNDLE = ("etc/herd/cluster.key",)
SITE = PurePosixPath("usr/share/herd/site")

# Globs (relative to the root) deleted from every image.
DROP = (
    "etc/ssh/ssh_host_*", "var/lib/dbus/machine-id", "var/lib/systemd/random-seed",
    "var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/log/*.log", "var/log/apt/*", "var/log/journal/*",
    "usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*", "tmp/*", "var/tmp/*",
    "root/.bash_history", "usr/sbin/policy-rc.d", "initrd.img.old", "vmlinuz.old", "boot/*.dpkg-bak",
    "boot/*.new", "debootstrap",
    "var/cache/ldconfig/aux-cache",  # ldconfig's notes of inode numbers and ctimes: differs every build
)


def kernel_version(tree: Path) -> str:
    versions = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
    if len(versions) != 1:
        raise BuildError(f"expected one kernel in {tree}/boot, found {versions or 'none'}")
    version = versions[0]
    if not (tree / "boot" / f"initrd.img-{version}").is_file():
        raise BuildError(f"no initramfs for kernel {version} in the tree")
    return version


def clean(tree: Path) -> None:
    """Delete DROP, docs and translations; through intree, so a folder on the way that is a link out of the tree
    (one to /etc, say: ssh_host_*) stops the build instead of deleting the host's files."""
    for pattern in DROP:
        for path in tree.glob(pattern):
            remove(tree, PurePosixPath(path.relative_to(tree).as_posix()))
    docs = real_dir(tree, PurePosixPath("usr/share/doc"))
    # Symlinks too, whatever they point to: testing a link with is_file() depends on whether its target was
    # deleted yet, that is on the directory order, which differs between file systems (tmpfs, ext4).
    for path in sorted(docs.rglob("*")) if docs.is_dir() else ():
        if path.name != "copyright" and (path.is_symlink() or path.is_file()):
            path.unlink()
    locale = real_dir(tree, PurePosixPath("usr/share/locale"))
    for path in locale.iterdir() if locale.is_dir() else ():
        if path.name != "locale.alias":
            remove_tree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    make_dirs(tree, PurePosixPath("var/lib/apt/lists/partial"))
    # Empty, not missing: systemd then treats the next boot as the first and makes a machine-id.
    write_file(tree, PurePosixPath("etc/machine-id"), b"", 0o444)


def overlay_digests(files: list[OverlayFile]) -> dict[str, str]:
    """sha256 of each rendered config file, for the manifest (`build.py diff` lists the ones that changed).
    Not the cluster key (a secret: its hash proves nothing useful) nor herdd (the manifest has its own)."""
    return {f"/{f.path}": hashlib.sha256(f.data).hexdigest() for f in sorted(files, key=lambda f: str(f.path))
            if str(f.path) not in NOT_DIGESTED}


def config_tree(files: list[OverlayFile]) -> list[OverlayFile]:
    """The update bundle's config tree, by path: every file installed from the overlay and into /etc/herd but the
    cluster key (a node keeps its own, and the bundle must not carry it) and what is under /usr (the squashfs
    has it: herdd, growroot, the example site). [site]'s TSIG secret is never among `files`. What it still holds
    that is derived from the cluster key (DRBD's shared secret in /etc/drbd.d/herd.res) keeps bundles 0600."""
    return sorted((f for f in files if str(f.path) not in NOT_IN_BUNDLE and f.path.parts[0] != "usr"),
                  key=lambda f: str(f.path))


def unpack_zipapp(tree: Path, on_line: Callable[[str], None]) -> None:
    """herdd.pyz unpacks its packages on its first run (into SHIV_ROOT, fixed in the zipapp): do that here, and
    compile them, so a node never writes them. Unpacked at first boot, a power cut in the first minutes could
    leave empty files behind (ext4 writes new files' data late) and herdd or herdctl broken for good. Hash-based
    .pyc files are never rewritten, whatever the files' time stamps become."""
    # PYTHONDONTWRITEBYTECODE and -f: the unpacking run would leave timestamp .pyc files of the modules it
    # imports (stamped with the moment of unpacking), and compileall would keep them: every build different.
    in_chroot(tree, None, f"rm -rf {SHIV_ROOT}; PYTHONDONTWRITEBYTECODE=1 /usr/lib/herd/herdd.pyz --version "
              f">/dev/null; python3 -m compileall -q -f --invalidation-mode unchecked-hash {SHIV_ROOT}; "
              f"rm -f {SHIV_ROOT}/.*_lock", on_line=on_line)


def herdd_packages(ctx: BuildContext, tree: Path, herdd: bytes, on_line: Callable[[str], None]) -> None:
    """herdd's unpacked, compiled packages in the tree: made once per herdd.pyz and base system (every role
    gets the same bytes), then taken from the cache; unpacking and compiling is seconds per role."""
    key = f"{hashlib.sha256(herdd).hexdigest()[:20]}-{ctx.plan.base_key}-{UNPACK_FORMAT}"
    cached = ctx.cache.lookup("zipapp", key, ".unpacked.tar.zst")
    remove(tree, PurePosixPath(SHIV_ROOT.lstrip("/")))
    if cached is not None:
        unpack(cached, tree)
        return
    unpack_zipapp(tree, on_line)
    with ctx.cache.store("zipapp", key, ".unpacked.tar.zst") as tmp:
        pack(tree, tmp, SHIV_ROOT.lstrip("/"))


def secret_files(spec: Spec, role: Role, site_key: Path | None, tree: Path | None = None,
                 taken: Iterable[OverlayFile] = ()) -> list[OverlayFile]:
    """[site]'s TSIG secret, on the directors only (the backup site's VIP holder signs DNS updates with it).
    Never in place of a file the image has (in `tree`, or among the `taken` overlay files): a key_file of
    /etc/shadow must not replace it with the secret."""
    if spec.site is None or role != Role.DIRECTOR or site_key is None:
        return []
    path = PurePosixPath(spec.site.key_file.lstrip("/"))
    if any(f.path == path for f in taken) or (tree is not None and os.path.lexists(tree / path)):
        raise BuildError(f"site.key_file = {spec.site.key_file!r}: the {role} image already has that file, which "
                         "the TSIG secret would replace; choose a new path, like /etc/herd/site.tsig")
    return [OverlayFile(path, site_key.read_bytes(), 0o600)]


def site_files(project: Path) -> list[OverlayFile]:
    """The example site (examples/site) for the nfs image: herdd copies it into the export at first boot if the
    export is empty. Read as the overlay is: never through a symlink out of the checkout."""
    site = project / "examples/site"
    if not site.is_dir():
        return []
    return [OverlayFile(SITE / f.rel, read(project, f.path), f.mode) for f in walk(project, site)]


class Tree(Step):
    name = "tree"

    def __init__(self, role_plan: RolePlan) -> None:
        self.role_plan = role_plan

    def label(self) -> str:
        return f"[{self.role_plan.role}] root tree: overlay, herdd, cluster key"

    def tree(self, ctx: BuildContext) -> Path:
        return ctx.work / self.role_plan.role.value / "root"

    def check(self, ctx: BuildContext) -> None:
        # Render every template now, before any slow step, so a template error costs seconds, not minutes.
        context = template_context(ctx.plan, self.role_plan, "0.0.0-check")
        render(ctx.overlay_dir, self.role_plan.role.value, context)
        if self.role_plan.role == Role.NFS:
            site_files(ctx.project)  # the checkout's links checked now, before anything is written
        for arch in ("i386-pc", "x86_64-efi"):
            if not (GRUB_MODULES / arch).is_dir():
                raise BuildError(f"{GRUB_MODULES / arch} is missing: install grub-pc-bin and grub-efi-amd64-bin")

    def run(self, ctx: BuildContext) -> None:
        role = self.role_plan.role
        with ctx.reporter.step(self.label()) as progress:
            tree = ctx.trees.get(role)
            if tree is None:
                tree = self.tree(ctx)
                remove_tree(tree)
                progress.line("unpacking the role tree")
                unpack(ctx.role_tarballs[role], tree)
                ctx.trees[role] = tree
            version = kernel_version(tree)
            ctx.kernel_versions[role] = version
            ctx.images[role].packages = tree_packages(tree)
            lists = tree_lists(tree, ctx.plan.spec.debian)
            ctx.images[role].fixes = fixes(ctx.images[role].packages, lists)
            if missed := newer_offered(ctx.images[role].packages, lists):
                ctx.reporter.warn(f"[{role.value}] {len(missed)} packages are older than the archives offer (a fix "
                                  "not installed: held back, or pinned?): " + ", ".join(
                                      f"{name} {old} < {new}" for name, (old, new) in list(missed.items())[:10]))
            progress.line("cleaning")
            clean(tree)
            progress.line("overlay")
            if ctx.zipapp is None or not ctx.release_public:
                raise BuildError("internal: the zipapp or the release key is missing before the tree")
            files = render(ctx.overlay_dir, role.value,
                           template_context(ctx.plan, self.role_plan, version, ctx.key_file.read_bytes(),
                                            ctx.release_public))
            files += [
                OverlayFile(PurePosixPath("etc/herd/cluster.toml"), ctx.plan.spec.source.encode(), 0o644),
                OverlayFile(PurePosixPath("etc/herd/cluster.key"), ctx.key_file.read_bytes(), 0o600),
                OverlayFile(PurePosixPath("usr/lib/herd/herdd.pyz"), ctx.zipapp.read_bytes(), 0o755),
            ]
            ctx.images[role].overlay = overlay_digests(files)
            ctx.images[role].config = config_tree(files)
            files += secret_files(ctx.plan.spec, role, ctx.site_key_file, tree, files)  # never in the digests
            install(tree, files)  # every folder it makes 0755, root/.ssh 0700
            for unit in UNITS:
                enable_unit(tree, unit)
            for unit in self.role_plan.herdd_starts:
                disable_unit(tree, unit)
            for unit in MASKED:
                mask_unit(tree, unit)
            if self.role_plan.herdd_starts:
                # The first boot (empty machine-id) applies systemd's presets, and Debian's enable everything:
                # without these lines the units above would be enabled again before herdd runs.
                preset = "".join(f"disable {unit}\n" for unit in self.role_plan.herdd_starts)
                write_file(tree, PurePosixPath("etc/systemd/system-preset/10-herd.preset"),
                           f"# herdd starts these when the cluster is ready for them.\n{preset}".encode(), 0o644)
            # One zipapp, two commands: it looks at the name it was run as.
            for command in ("herdd", "herdctl"):
                link = safe_path(tree, PurePosixPath("usr/local/bin", command))
                link.unlink(missing_ok=True)
                link.symlink_to("/usr/lib/herd/herdd.pyz")
            progress.line("unpacking herdd's packages")
            herdd_packages(ctx, tree, ctx.zipapp.read_bytes(), progress.line)
            if role == Role.NFS:
                remove(tree, SITE)
                install(tree, site_files(ctx.project))
            for command in self.role_plan.recipe.validate:
                progress.line(f"checking: {command}")
                try:
                    in_chroot(tree, None, command, on_line=progress.line)
                except CommandError as exc:
                    raise BuildError(f"the {role} image's configuration does not pass `{command}`:\n    "
                                     + "\n    ".join(exc.tail)) from None
            for arch in ("i386-pc", "x86_64-efi"):
                remove(tree, PurePosixPath("boot/grub", arch))
                dest = safe_path(tree, PurePosixPath("boot/grub", arch))
                shutil.copytree(GRUB_MODULES / arch, dest,
                                ignore=shutil.ignore_patterns("*.image", "*.exec", "*.module", "*.img", "*.efi"))
            progress.line("time stamps clamped to SOURCE_DATE_EPOCH")
            clamp_tree(tree, ctx.plan.source_date_epoch)

    def undo(self, ctx: BuildContext) -> None:
        remove_tree(self.tree(ctx))

"""A role's update bundle (herd.bundle): the slot's squashfs /usr, kernel and initramfs (kept by the disk step),
the config tree (kept by the tree step), and the manifest naming each with its sha256, written beside the image
under a temporary name with the manifest's signature by the release key; the build then checks both as a node
will. The artifacts step renames them into place with the images."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path, PurePosixPath

from herd import __version__, bundle
from herd.build.context import BuildContext, ImageResult
from herd.build.fs import remove_tree
from herd.build.intree import safe_path
from herd.build.private import create_private, private_dir
from herd.build.release_key import check_signature, sign
from herd.build.steps import BuildError, Step
from herd.release import version_of
from herd.spec import Role

PART_MODE = 0o644  # the squashfs, kernel and initramfs in the bundle (Debian's /boot files are 0644)


def parts_dir(ctx: BuildContext, role: Role) -> Path:
    """Where the disk step leaves the slot's parts for this step, in the scratch space."""
    return ctx.work / f"{role.value}-bundle"


def bundle_path(image: Path) -> Path:
    return image.with_name(image.name.removesuffix(".img") + ".bundle")


def sig_path(bundle_file: Path) -> Path:
    return bundle_file.with_name(bundle_file.name + ".sig")


def tmp_bundle(result: ImageResult) -> Path:
    final = bundle_path(result.final_path)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def tmp_sig(result: ImageResult) -> Path:
    return sig_path(tmp_bundle(result))


def keep_parts(ctx: BuildContext, role: Role, squashfs: Path, tree: Path, kernel: str) -> None:
    """For the bundle step: the squashfs moved (same scratch filesystem: no copy), the kernel and initramfs
    copied out of the tree before the disk step removes it. A link in their place is refused, never followed."""
    boot = {}
    for name, rel in (("vmlinuz", f"boot/vmlinuz-{kernel}"), ("initrd.img", f"boot/initrd.img-{kernel}")):
        source = safe_path(tree, PurePosixPath(rel))
        if source.is_symlink() or not source.is_file():
            raise BuildError(f"/{rel} is not a file in the {role} tree")
        boot[name] = source
    parts = parts_dir(ctx, role)
    remove_tree(parts)
    parts.mkdir()
    os.replace(squashfs, parts / "usr.squashfs")
    for name, source in boot.items():
        shutil.copyfile(source, parts / name)


class Bundle(Step):
    name = "bundle"

    def __init__(self, role: Role) -> None:
        self.role = role

    def label(self) -> str:
        return f"[{self.role}] update bundle: squashfs, kernel, initramfs, config; signed with the release key"

    def check(self, ctx: BuildContext) -> None:
        if ctx.release_key is None or not ctx.release_public:
            raise BuildError("internal: no release key to sign the update bundles with")

    def run(self, ctx: BuildContext) -> None:
        assert ctx.release_key is not None
        result = ctx.images[self.role]
        parts = parts_dir(ctx, self.role)
        plan = ctx.plan
        with ctx.reporter.step(self.label()) as progress:
            progress.line("sha256 of every part")
            sources: list[bundle.Source] = [parts / name for name in bundle.SLOT_PARTS]
            entries = [bundle.part_of(name, source, PART_MODE) for name, source in zip(bundle.SLOT_PARTS, sources,
                                                                                         strict=True)]
            for config in result.config:
                sources.append(config.data)
                entries.append(bundle.part_of(bundle.config_name(config.path), config.data, config.mode))
            manifest = bundle.Manifest(
                cluster=plan.spec.name, role=self.role.value, release=plan.release, version=version_of(plan.release),
                kernel=ctx.kernel_versions.get(self.role, ""), herd_version=__version__,
                source_date_epoch=plan.source_date_epoch, parts=tuple(entries))
            message = parts / bundle.MANIFEST
            message.write_bytes(manifest.to_json())
            progress.line("signing the manifest (ssh-keygen -Y sign)")
            signature = sign(ctx.release_key, message)
            private_dir(plan.out_dir)  # the release folder: the bundles hold secrets derived from the cluster key
            with os.fdopen(create_private(tmp_sig(result)), "wb") as out:
                out.write(signature)
            progress.line(f"writing {bundle_path(result.final_path).name}")
            with os.fdopen(create_private(tmp_bundle(result)), "wb") as out:
                bundle.write(out, manifest, sources)
            progress.line("checking it as a node will")
            signers = parts / "release-signers"
            signers.write_text(bundle.signer_line(ctx.release_public) + "\n")
            try:
                bundle.verify(tmp_bundle(result), tmp_sig(result), signers, plan.spec.name, self.role.value, (),
                              check_signature=check_signature)
            except bundle.BundleError as exc:
                raise BuildError(f"the {self.role} update bundle does not pass a node's checks: {exc}") from None
            whole = bundle.part_of(tmp_bundle(result).name, tmp_bundle(result), 0o600)
            result.bundle_size, result.bundle_sha256 = whole.size, whole.sha256
            result.sig_sha256 = hashlib.sha256(signature).hexdigest()
            remove_tree(parts)

    def undo(self, ctx: BuildContext) -> None:
        result = ctx.images[self.role]
        tmp_bundle(result).unlink(missing_ok=True)
        tmp_sig(result).unlink(missing_ok=True)
        remove_tree(parts_dir(ctx, self.role))

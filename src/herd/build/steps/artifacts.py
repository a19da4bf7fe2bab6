"""The release directory: images renamed from their temporary names, each with its block map (`X.img.bmap`,
bmaptool's format: which blocks hold data, so a stick is written with those only), a zstd-compressed copy
(`X.img.zst`, to download or archive) and its role's signed update bundle (`X.bundle`, `X.bundle.sig`, made by
the bundle step), SHA256SUMS (images, compressed images, bundles and signatures) and manifest.json. This is the
commit point of a build; nothing before it is visible under out/<release>/."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from herd import __version__
from herd.build import bmap
from herd.build.context import BuildContext, ImageResult
from herd.build.private import FILE_MODE, create_private, private_dir
from herd.build.run import OnLine, run
from herd.build.steps import Step
from herd.build.steps.bundle import bundle_path, sig_path, tmp_bundle, tmp_sig
from herd.build.steps.disk import sha256_file
from herd.release import build_date, version_of


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def bmap_path(image: Path) -> Path:
    return image.with_name(image.name + ".bmap")


def tmp_bmap(result: ImageResult) -> Path:
    return bmap_path(result.tmp_path)


def zst_path(image: Path) -> Path:
    return image.with_name(image.name + ".zst")


def tmp_zst(result: ImageResult) -> Path:
    return zst_path(result.tmp_path)


def compress(image: Path, dest: Path, on_line: OnLine | None = None) -> None:
    """image -> dest with zstd on every core (level 3: about as fast as the disk, a third of the mapped bytes)."""
    run(["zstd", "-T0", "-q", "-f", "-o", dest, image], on_line=on_line)


def overlay_sha256(files: dict[str, str]) -> str:
    """One digest of a role's rendered config (path -> sha256), like a SHA256SUMS of it."""
    return hashlib.sha256("".join(f"{h}  {p}\n" for p, h in sorted(files.items())).encode()).hexdigest()


def manifest(ctx: BuildContext, previous: dict[str, Any] | None) -> dict[str, Any]:
    plan = ctx.plan
    images: dict[str, Any] = {}
    herdd = sha256_file(ctx.zipapp) if ctx.zipapp is not None else ""
    # A build of some roles keeps the entries of the others if their images are still there.
    if previous and previous.get("spec_sha256") == plan.spec.digest and isinstance(previous.get("images"), dict):
        for role, entry in previous["images"].items():
            if isinstance(entry, dict) and isinstance(entry.get("file"), str) \
                    and (plan.out_dir / entry["file"]).is_file():
                images[role] = entry
    for role, result in ctx.images.items():
        images[role.value] = {
            "file": result.final_path.name,
            "size": result.size,
            "allocated": result.allocated,
            "sha256": result.sha256,
            "bmap": bmap_path(result.final_path).name,
            "zst": zst_path(result.final_path).name,
            "zst_size": result.zst_size,
            "zst_sha256": result.zst_sha256,
            "kernel": ctx.kernel_versions.get(role, ""),
            "herdd_sha256": herdd,
            "overlay_sha256": overlay_sha256(result.overlay),
            "overlay": dict(sorted(result.overlay.items())),
            "packages": result.packages,
            "fixes": result.fixes,  # the packages newer than the point release: from -updates or -security
        }
        if result.bundle_sha256:
            bundle = bundle_path(result.final_path)
            images[role.value].update({
                "bundle": bundle.name,
                "bundle_size": result.bundle_size,
                "bundle_sha256": result.bundle_sha256,
                "bundle_sig": sig_path(bundle).name,
                "bundle_sig_sha256": result.sig_sha256,
            })
    data: dict[str, Any] = {
        "cluster": plan.spec.name,
        "release": plan.release,
        "version": list(version_of(plan.release)),
        "herd_version": __version__,
        "spec_sha256": plan.spec.digest,
        "source_date_epoch": plan.source_date_epoch,
        "build_date": build_date(plan.source_date_epoch),
        "debian": {"suite": plan.spec.debian.suite, "arch": plan.spec.debian.arch,
                   # What each archive was when the build began: the packages are the newest it offered then.
                   "archives": [{"uri": r.archive.uri, "suite": r.archive.suite, "date": r.date,
                                 "inrelease_sha256": r.sha256, "packages_sha256": dict(r.packages)}
                                for r in plan.archives]},
        "images": dict(sorted(images.items())),
    }
    if ctx.release_public:
        data["release_key"] = ctx.release_public  # the public half; the bundles' signatures check with it
    return data


def sha256sums(data: dict[str, Any]) -> str:
    """`sha256sum -c` input for the images, their compressed copies, bundles and signatures (not the bmaps: they
    name their own)."""
    lines = []
    for entry in data["images"].values():
        lines.append(f"{entry['sha256']}  {entry['file']}\n")
        if entry.get("zst"):
            lines.append(f"{entry['zst_sha256']}  {entry['zst']}\n")
        if entry.get("bundle"):
            lines.append(f"{entry['bundle_sha256']}  {entry['bundle']}\n")
            lines.append(f"{entry['bundle_sig_sha256']}  {entry['bundle_sig']}\n")
    return "".join(lines)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C or SIGTERM while the release is renamed into place would leave a new image beside an old bmap
    or manifest: they wait until it is whole, a few renames later, and then take effect.

    The handlers are swapped, not only the signals blocked: a signal for the process goes to any thread that
    does not block it (rich's refresh thread, a worker), and Python then runs the handler in the main thread
    anyway. (Build steps run in the main thread, the only one signal.signal may be called from.)"""
    held = (signal.SIGINT, signal.SIGTERM)
    arrived: list[int] = []

    def record(signum: int, frame: object) -> None:
        arrived.append(signum)

    old = {signum: signal.signal(signum, record) for signum in held}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if arrived:
            signal.raise_signal(arrived[0])


class Artifacts(Step):
    name = "artifacts"

    def label(self) -> str:
        return f"release {self.out}: block maps, zstd copies, bundles, SHA256SUMS, manifest"

    def run(self, ctx: BuildContext) -> None:
        out = ctx.plan.out_dir
        self.out = out
        with ctx.reporter.step(self.label()) as progress:
            path = out / "manifest.json"
            previous = None
            if path.is_file():
                try:
                    previous = json.loads(path.read_text())
                except json.JSONDecodeError:
                    previous = None
            if not isinstance(previous, dict):  # not a herd manifest: nothing of it is kept
                previous = None
            results = list(ctx.images.values())
            for done, result in enumerate(results):
                progress.line(f"block map of {result.final_path.name}")
                with os.fdopen(create_private(tmp_bmap(result)), "w") as f:  # renamed below
                    f.write(bmap.to_xml(bmap.create(result.tmp_path)))
                progress.line(f"compressing {result.final_path.name} (zstd)")
                compress(result.tmp_path, tmp_zst(result), on_line=progress.line)
                os.chmod(tmp_zst(result), FILE_MODE)  # zstd copies the image's mode; made sure, as it holds the key
                result.zst_size = tmp_zst(result).stat().st_size
                result.zst_sha256 = sha256_file(tmp_zst(result))
                progress.fraction((done + 1) / len(results))
            data = manifest(ctx, previous)
            private_dir(out)  # every image holds the cluster key: only its owner may read the release
            for result in results:
                os.chmod(result.tmp_path, FILE_MODE)
            with signals_held():
                for result in results:
                    os.replace(result.tmp_path, result.final_path)
                    os.replace(tmp_bmap(result), bmap_path(result.final_path))
                    os.replace(tmp_zst(result), zst_path(result.final_path))
                    if result.bundle_sha256:
                        os.replace(tmp_bundle(result), bundle_path(result.final_path))
                        os.replace(tmp_sig(result), sig_path(bundle_path(result.final_path)))
                write_atomic(out / "SHA256SUMS", sha256sums(data))
                write_atomic(path, json.dumps(data, indent=2) + "\n")

    def undo(self, ctx: BuildContext) -> None:
        for result in ctx.images.values():
            tmp_bmap(result).unlink(missing_ok=True)
            tmp_zst(result).unlink(missing_ok=True)

"""What changes during a build, kept apart from the frozen spec and plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from herd.build.cache import Cache
from herd.build.overlay import OverlayFile
from herd.build.plan import BuildPlan
from herd.build.progress import Reporter
from herd.spec import Role


@dataclass
class ImageResult:
    role: Role
    tmp_path: Path          # written here, renamed to final_path at the very end
    final_path: Path
    size: int = 0
    allocated: int = 0
    sha256: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    fixes: dict[str, str] = field(default_factory=dict)  # package -> the updates or security suite it is from
    overlay: dict[str, str] = field(default_factory=dict)  # rendered config file (root-relative) -> sha256
    zst_size: int = 0       # X.img.zst beside the image
    zst_sha256: str = ""
    config: list[OverlayFile] = field(default_factory=list)  # the update bundle's config tree (no secret)
    bundle_size: int = 0    # X.bundle beside the image, and its signature X.bundle.sig; 0: none was made
    bundle_sha256: str = ""
    sig_sha256: str = ""


@dataclass
class BuildContext:
    plan: BuildPlan
    project: Path           # the checkout: image/, overlay/, src/
    cache: Cache
    work: Path              # scratch space, removed at the end
    key_file: Path          # the cluster secret
    reporter: Reporter
    site_key_file: Path | None = None  # [site]'s TSIG secret, for the directors
    release_key: Path | None = None  # signs the update bundles; stays on the build host
    release_public: str = ""  # its public half, `ssh-ed25519 BASE64`, in every image
    zipapp: Path | None = None
    base_tarball: Path | None = None
    role_tarballs: dict[Role, Path] = field(default_factory=dict)
    trees: dict[Role, Path] = field(default_factory=dict)
    kernel_versions: dict[Role, str] = field(default_factory=dict)
    images: dict[Role, ImageResult] = field(default_factory=dict)

    @property
    def image_dir(self) -> Path:
        return self.project / "image"

    @property
    def overlay_dir(self) -> Path:
        return self.project / "overlay"

    @property
    def debs(self) -> Path:
        """.deb files shared by debootstrap and apt, outside every image."""
        return self.cache.root / "debs"

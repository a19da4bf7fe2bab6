"""spec + recipes -> a build plan: what to build, where it goes, and the cache keys. Pure, no I/O but hashing
files handed in by the caller."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from herd.build.archive import Release
from herd.build.recipes import BaseRecipe, RoleRecipe
from herd.spec import Role, Spec

# Bump when the way a cached tree is made changes (not what goes in it: that is in the key already).
BASE_FORMAT = 3  # 2: PYTHONHASHSEED=0 and SOURCE_DATE_EPOCH for debootstrap too; 3: -updates and -security
ROLE_FORMAT = 2  # 2: PYTHONHASHSEED=0 in the chroot

ROOT_LABEL = "herd-root"
# SOURCE_DATE_EPOCH when nothing better is known (2023-11-14T22:13:20Z): every time stamp in an image.
DEFAULT_EPOCH = 1700000000
_NAMESPACE = uuid.UUID("5f0c7b3e-2a4d-4c41-9d6e-6865726421aa")


def digest(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass(frozen=True)
class DiskIds:
    """Fixed per cluster/role/release, so the same inputs give the same bytes and GRUB and the kernel can
    find the root by identity instead of by bus (the stick may be sda today and sdb tomorrow)."""

    disk_guid: str
    bios_guid: str
    esp_guid: str
    root_partuuid: str
    root_fs_uuid: str
    esp_serial: str  # FAT volume id, 8 hex digits
    usr_partuuid: str


def disk_ids(cluster: str, role: Role, release: str) -> DiskIds:
    def make(what: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{cluster}/{role.value}/{release}/{what}"))

    return DiskIds(make("disk"), make("bios"), make("esp"), make("root"), make("rootfs"), make("esp-id")[:8],
                   make("usr"))


@dataclass(frozen=True)
class RolePlan:
    role: Role
    recipe: RoleRecipe
    cache_key: str
    image_name: str
    ids: DiskIds
    herdd_starts: tuple[str, ...] = ()  # units disabled at boot: herdd starts them when it decides


def units_herdd_starts(spec: Spec, role: Role) -> tuple[str, ...]:
    """With 2+ db nodes MariaDB is a Galera node, and starting it is a cluster decision (who bootstraps);
    garbd (directors) can only join a running cluster; with two nfs nodes only the DRBD primary serves."""
    if role == Role.DB and len(spec.nodes_of(Role.DB)) > 1:
        # The socket too: systemd would start MariaDB on the first connection to it, and it holds port 3306,
        # which the recovery run (mariadbd --wsrep-recover) must bind.
        return ("mariadb.service", "mariadb.socket")
    if role == Role.DIRECTOR:
        return ("garb.service",)
    if role == Role.NFS and spec.replicated_storage:
        # The docroot is on DRBD: herdd brings the resource up, and serves (mounts, exports) only on the node it
        # makes primary.
        return ("drbd.service", "nfs-server.service")
    return ()


@dataclass(frozen=True)
class BuildPlan:
    spec: Spec
    release: str
    base: BaseRecipe
    base_key: str
    zipapp_key: str
    roles: tuple[RolePlan, ...]
    out_dir: Path  # out/<release>
    source_date_epoch: int = DEFAULT_EPOCH  # every time stamp in the images: files, filesystems, build date
    archives: tuple[Release, ...] = ()  # what the Debian archives were when the build began (archive.py)
    base_recipe_key: str = ""  # base_key without the archives' state: the trees an upgrade can start from

    @property
    def base_cache_name(self) -> str:
        """The base tarball's cache entry: found by its recipe when the archives have moved (to upgrade it)."""
        return f"base-{self.base_recipe_key}.{self.base_key}"

    @property
    def kernel_cmdline(self) -> str:
        return "console=tty0 console=ttyS0,115200n8"


def make_plan(spec: Spec, release: str, roles: list[Role], base: BaseRecipe, role_recipes: dict[Role, RoleRecipe],
              zipapp_key: str, out: Path, source_date_epoch: int = DEFAULT_EPOCH,
              archives: tuple[Release, ...] = ()) -> BuildPlan:
    base_recipe_key = digest("base", BASE_FORMAT, spec.debian.suite, spec.debian.arch, spec.debian.mirror,
                             spec.debian.security, base.packages, base.kernel, base.initramfs_modules)
    # The archives' state is in the key: a cached tree made before a security fix was published is not reused
    # as it is (the base step upgrades it).
    base_key = digest(base_recipe_key, [r.sha256 for r in archives])
    plans = []
    for role in roles:
        recipe = role_recipes[role]
        plans.append(RolePlan(
            role=role,
            recipe=recipe,
            cache_key=digest("role", ROLE_FORMAT, base_key, role.value, recipe.packages),
            image_name=f"{spec.name}-{role.value}-{release}.img",
            ids=disk_ids(spec.name, role, release),
            herdd_starts=units_herdd_starts(spec, role),
        ))
    return BuildPlan(spec=spec, release=release, base=base, base_key=base_key, zipapp_key=zipapp_key,
                     roles=tuple(plans), out_dir=out / release, source_date_epoch=source_date_epoch,
                     archives=archives, base_recipe_key=base_recipe_key)


def tree_digest(root: Path, patterns: tuple[str, ...] = ("**/*",)) -> str:
    """A content hash of the files under root (names and bytes), for cache keys."""
    h = hashlib.sha256()
    files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file() and "__pycache__" not in p.parts})
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:20]

"""The build plan (cache keys, names, disk identities) and the disk layout, from the real recipes in image/."""

from __future__ import annotations

import dataclasses
import itertools
import re
import uuid
from pathlib import Path

import pytest

from herd.build import disk
from herd.build.archive import Release, archives
from herd.build.disk import (
    BIOS_BOOT,
    ESP,
    ROOT_X86_64,
    SECTOR,
    USR_X86_64,
    MiB,
    layout,
    oversize_warning,
    root_size,
    usr_size,
)
from herd.build.plan import BuildPlan, DiskIds, disk_ids, make_plan, tree_digest
from herd.build.recipes import BaseRecipe, RoleRecipe, load_base, load_role
from herd.spec import Role, Spec, parse

PROJECT = Path(__file__).resolve().parents[2]
IMAGE = PROJECT / "image"
TEXT = (PROJECT / "examples" / "cluster.toml").read_text(encoding="utf-8")
GPT_BACKUP = 33 * SECTOR  # backup GPT: 32 sectors of partition entries and the header


def spec_from(text: str = TEXT) -> Spec:
    return parse(text, "cluster.toml")


def recipes() -> dict[Role, RoleRecipe]:
    return {role: load_role(IMAGE, role) for role in Role}


def plan_for(spec: Spec | None = None, release: str = "2026.11.0", roles: list[Role] | None = None,
             base: BaseRecipe | None = None, role_recipes: dict[Role, RoleRecipe] | None = None,
             out: Path = Path("out")) -> BuildPlan:
    spec = spec or spec_from()
    return make_plan(spec, release, roles if roles is not None else list(spec.roles), base or load_base(IMAGE),
                     role_recipes or recipes(), "zipapp-key", out)


def role_keys(plan: BuildPlan) -> dict[Role, str]:
    return {rp.role: rp.cache_key for rp in plan.roles}


# ---------------------------------------------------------------------------------------------------------
# Recipes and cache keys


def test_real_recipes_load() -> None:
    base = load_base(IMAGE)
    assert base.kernel and base.packages and base.initramfs_modules
    assert all(recipe.role == role and recipe.packages for role, recipe in recipes().items())


def test_cache_keys_are_stable_for_equal_inputs() -> None:
    first, second = plan_for(), plan_for()  # everything re-read and re-parsed
    assert first.base_key == second.base_key
    assert role_keys(first) == role_keys(second)
    assert len(set(role_keys(first).values())) == len(first.roles)  # and each role has its own
    assert first.base_key not in role_keys(first).values()


def test_role_key_changes_with_its_package_list_only() -> None:
    before = plan_for()
    changed = recipes()
    web = changed[Role.WEB]
    changed[Role.WEB] = dataclasses.replace(web, packages=(*web.packages, "curl"))
    after = plan_for(role_recipes=changed)
    assert after.base_key == before.base_key
    for role in Role:
        same = role_keys(after)[role] == role_keys(before)[role]
        assert same is (role != Role.WEB), role
    reordered = recipes()
    reordered[Role.WEB] = dataclasses.replace(web, packages=tuple(reversed(web.packages)))
    assert role_keys(plan_for(role_recipes=reordered))[Role.WEB] != role_keys(before)[Role.WEB]


@pytest.mark.parametrize("change", ["packages", "kernel", "initramfs_modules"])
def test_base_change_changes_base_key_and_every_role_key(change: str) -> None:
    base = load_base(IMAGE)
    value = {"packages": (*base.packages, "vim-tiny"), "kernel": "linux-image-rt-amd64",
             "initramfs_modules": (*base.initramfs_modules, "mmc_block")}[change]
    before, after = plan_for(base=base), plan_for(base=dataclasses.replace(base, **{change: value}))
    assert after.base_key != before.base_key
    for role in Role:
        assert role_keys(after)[role] != role_keys(before)[role], role


@pytest.mark.parametrize(("old", "new"), [
    ('suite = "bookworm"', 'suite = "trixie"'),
    ('mirror = "http://deb.debian.org/debian"', 'mirror = "http://mirror.example/debian"'),
    ('security = "http://security.debian.org/debian-security"', 'security = "http://mirror.example/security"'),
    ('security = "http://security.debian.org/debian-security"', 'security = false'),
])
def test_debian_source_is_part_of_the_base_key(old: str, new: str) -> None:
    assert TEXT.count(old) == 1
    assert plan_for(spec_from(TEXT.replace(old, new))).base_key != plan_for().base_key


def test_cache_keys_do_not_depend_on_cluster_name_release_or_nodes() -> None:
    assert TEXT.count('name = "demo"') == 1 and TEXT.count('address = "192.168.50.22"') == 1
    other = spec_from(TEXT.replace('name = "demo"', 'name = "acme"')
                      .replace('address = "192.168.50.22"', 'address = "192.168.50.23"'))
    before, after = plan_for(), plan_for(other, release="2027.1.0")
    assert other.name == "acme"
    assert after.base_key == before.base_key
    assert role_keys(after) == role_keys(before)  # trees are shared between clusters and releases


# ---------------------------------------------------------------------------------------------------------
# Names and directories


@pytest.mark.parametrize(("cluster", "release"), [("demo", "2026.11.0"), ("acme-2", "7.0+rc1")])
def test_image_names_and_out_dir(tmp_path: Path, cluster: str, release: str) -> None:
    spec = spec_from(TEXT.replace('name = "demo"', f'name = "{cluster}"'))
    plan = plan_for(spec, release=release, out=tmp_path / "out")
    assert plan.release == release
    assert plan.out_dir == tmp_path / "out" / release
    assert [rp.role for rp in plan.roles] == list(spec.roles)
    for rp in plan.roles:
        assert rp.image_name == f"{cluster}-{rp.role.value}-{release}.img"
        assert rp.recipe.role == rp.role
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_plan_for_some_roles_only() -> None:
    plan = plan_for(roles=[Role.WEB, Role.DB])
    assert [rp.role for rp in plan.roles] == [Role.WEB, Role.DB]
    assert role_keys(plan)[Role.WEB] == role_keys(plan_for())[Role.WEB]


def test_kernel_cmdline_has_both_consoles() -> None:
    cmdline = plan_for().kernel_cmdline.split()
    assert "console=tty0" in cmdline
    assert any(arg.startswith("console=ttyS0") for arg in cmdline)


# ---------------------------------------------------------------------------------------------------------
# Disk identities


UUID_FIELDS = ("disk_guid", "bios_guid", "esp_guid", "root_partuuid", "root_fs_uuid")


def test_disk_ids_are_deterministic_valid_and_distinct() -> None:
    ids = disk_ids("demo", Role.WEB, "2026.11.0")
    assert ids == disk_ids("demo", Role.WEB, "2026.11.0")
    values = [getattr(ids, f) for f in UUID_FIELDS]
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 5
    assert len(set(values)) == len(values)
    assert re.fullmatch(r"[0-9a-f]{8}", ids.esp_serial)


def test_disk_ids_differ_per_role_release_and_cluster() -> None:
    variants = [disk_ids(cluster, role, release) for cluster in ("demo", "acme") for role in Role
                for release in ("2026.11.0", "2026.11.1")]
    for field in (*UUID_FIELDS, "esp_serial"):
        values = [getattr(ids, field) for ids in variants]
        assert len(set(values)) == len(values), field


def test_plan_uses_the_disk_ids_of_its_role_and_release() -> None:
    plan = plan_for(release="3.0")
    for rp in plan.roles:
        assert rp.ids == disk_ids("demo", rp.role, "3.0")


# ---------------------------------------------------------------------------------------------------------
# Layout


def all_ids() -> list[DiskIds]:
    return [disk_ids("demo", role, "2026.11.0") for role in Role]


@pytest.mark.parametrize("tree_bytes", [0, 300 * MiB, 1234567891, 7 * 1024 * MiB + 12345])
def test_layout_partitions_are_aligned_ordered_and_fit(tree_bytes: int) -> None:
    ids = disk_ids("demo", Role.DB, "2026.11.0")
    root_bytes = root_size(tree_bytes, tree_bytes // 4096)
    usr_bytes = usr_size(tree_bytes // 3)
    lay = layout(ids, usr_bytes, root_bytes)
    parts = list(lay.partitions())
    assert parts == [lay.bios, lay.esp, lay.usr, lay.root]
    assert parts[0].start >= 1 * MiB  # room for the protective MBR and the primary GPT
    for p in parts:
        assert p.start % MiB == 0 and p.size % MiB == 0, p
        assert p.size > 0
    for a, b in itertools.pairwise(parts):
        assert a.start + a.size <= b.start, (a, b)
    assert max(parts, key=lambda p: p.start) is lay.root  # last, so it can grow
    assert lay.root.size == root_bytes and lay.usr.size == usr_bytes
    assert lay.size >= lay.root.start + lay.root.size + GPT_BACKUP
    assert lay.size % MiB == 0
    assert [p.type_guid for p in parts] == [BIOS_BOOT, ESP, USR_X86_64, ROOT_X86_64]
    assert (lay.disk_guid, lay.bios.uuid, lay.esp.uuid, lay.usr.uuid, lay.root.uuid) == (
        ids.disk_guid, ids.bios_guid, ids.esp_guid, ids.usr_partuuid, ids.root_partuuid)
    assert lay.esp.size >= 32 * MiB  # FAT32 needs at least ~32 MiB


@pytest.mark.parametrize("tree_bytes", [0, 300 * MiB, 1034567891])
def test_layout_pads_the_root_to_the_minimum_image_size(tree_bytes: int) -> None:
    ids = disk_ids("demo", Role.WEB, "2026.11.0")
    root_bytes = root_size(tree_bytes, tree_bytes // 4096)
    lay = layout(ids, 200 * MiB, root_bytes, 1800 * MiB)
    assert lay.size == 1800 * MiB  # exactly: sticks of that size take it
    assert lay.root.size > root_bytes and lay.root.size % MiB == 0
    assert lay.root.start + lay.root.size + GPT_BACKUP <= lay.size
    unpadded = layout(ids, 200 * MiB, root_bytes)
    assert (lay.bios, lay.esp, lay.usr, lay.root.start) == (unpadded.bios, unpadded.esp, unpadded.usr,
                                                            unpadded.root.start)


def test_layout_is_never_smaller_than_the_tree_needs() -> None:
    ids = disk_ids("demo", Role.DB, "2026.11.0")
    root_bytes = root_size(3 * 1024 * MiB, 100_000)
    assert layout(ids, 300 * MiB, root_bytes, 1800 * MiB) == layout(ids, 300 * MiB, root_bytes)
    assert layout(ids, 300 * MiB, root_bytes, 1800 * MiB).root.size == root_bytes
    # /usr counts too: a root that alone would fit, but not with this /usr
    small_root = root_size(300 * MiB, 10_000)
    assert layout(ids, 1700 * MiB, small_root, 1800 * MiB).size > 1800 * MiB


def test_an_image_over_its_minimum_size_is_warned_of() -> None:
    ids = disk_ids("demo", Role.DB, "2026.11.0")
    big = layout(ids, 200 * MiB, root_size(3 * 1024 * MiB, 100_000), 1800 * MiB)
    warning = oversize_warning(Role.DB, big, 1800 * MiB)
    assert warning is not None
    assert warning.startswith(f"the db image is {big.size // MiB} MiB, over image.min_size (1800 MiB)")
    suggested = int(re.search(r"raise image.min_size to (\d+)MiB", warning).group(1))  # type: ignore[union-attr]
    assert big.size <= suggested * MiB < big.size + 100 * MiB
    fits = layout(ids, 200 * MiB, root_size(300 * MiB, 10_000), 1800 * MiB)
    assert oversize_warning(Role.DB, fits, 1800 * MiB) is None
    assert oversize_warning(Role.DB, big, 0) is None  # no minimum asked for


_PART_LINE = re.compile(r'^start=(\d+), size=(\d+), type=([0-9A-F-]{36}), uuid=([0-9a-f-]{36}), name="(\w+)"$')


@pytest.mark.parametrize("ids", all_ids(), ids=[r.value for r in Role])
def test_sfdisk_script(ids: DiskIds) -> None:
    lay = layout(ids, 250 * MiB, root_size(900 * MiB, 40000))
    script = lay.sfdisk_script()
    lines = script.splitlines()
    assert script.endswith("\n")
    assert "label: gpt" in lines
    assert f"label-id: {ids.disk_guid}" in lines
    assert "unit: sectors" in lines
    first_lba = next(int(line.split(":")[1]) for line in lines if line.startswith("first-lba:"))
    parts = [m.groups() for m in map(_PART_LINE.match, lines) if m]
    assert len(parts) == 4, script
    expected = [lay.bios, lay.esp, lay.usr, lay.root]
    for (start, size, type_guid, part_uuid, name), p in zip(parts, expected, strict=True):
        assert (int(start) * SECTOR, int(size) * SECTOR) == (p.start, p.size)
        assert (type_guid, part_uuid, name) == (p.type_guid, p.uuid, p.name)
    assert int(parts[0][0]) >= first_lba
    assert [t for _, _, t, _, _ in parts] == [BIOS_BOOT, ESP, USR_X86_64, ROOT_X86_64]


def test_usr_size_is_the_squashfs_in_whole_mib() -> None:
    assert usr_size(0) == MiB
    assert usr_size(1) == MiB
    assert usr_size(MiB) == MiB
    assert usr_size(MiB + 1) == 2 * MiB
    assert usr_size(200 * MiB - 4096) == 200 * MiB


def test_root_size_grows_with_the_tree_in_4_mib_steps() -> None:
    sizes = [root_size(tree, inodes) for tree in range(0, 4096 * MiB, 97 * MiB + 12345)
             for inodes in (0, 1000, 100000)]
    for size in sizes:
        assert size % (4 * disk.MiB) == 0
    small, big = root_size(500 * MiB, 20000), root_size(1500 * MiB, 20000)
    assert big - small >= 1000 * MiB  # the tree itself at least
    for tree in (0, 1, 100 * MiB, 2048 * MiB + 1):
        assert root_size(tree, 0) >= tree + 16 * MiB  # the tree and a journal fit
        assert root_size(tree + 64 * MiB, 0) > root_size(tree, 0)
        assert root_size(tree, 500000) >= root_size(tree, 0)
    previous = 0
    for tree in range(0, 512 * MiB, 3 * MiB + 1):
        size = root_size(tree, 1000)
        assert size >= previous
        previous = size


# ---------------------------------------------------------------------------------------------------------
# tree_digest (what the zipapp key is made of)


def test_tree_digest_follows_names_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    first = tree_digest(tmp_path)
    assert tree_digest(tmp_path) == first
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0junk")
    assert tree_digest(tmp_path) == first
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    changed = tree_digest(tmp_path)
    assert changed != first
    (tmp_path / "pkg" / "a.py").rename(tmp_path / "pkg" / "b.py")
    assert tree_digest(tmp_path) not in (first, changed)
    only_py = tree_digest(tmp_path, ("**/*.py",))
    (tmp_path / "notes.txt").write_text("not matched by the pattern")
    assert tree_digest(tmp_path, ("**/*.py",)) == only_py
    assert tree_digest(tmp_path) != only_py


def test_the_archives_state_is_part_of_the_base_key() -> None:
    """A security fix published (the security archive's InRelease changed): no cached tree is reused."""
    spec = spec_from()
    (main, updates, security) = archives(spec.debian)
    before = (Release(main, "Sat, 11 Jul 2026 10:16:37 UTC", "a" * 64),
              Release(updates, "Sun, 06 Dec 2026 02:14:57 UTC", "b" * 64),
              Release(security, "Sun, 06 Dec 2026 02:54:29 UTC", "c" * 64))
    moved = (*before[:2], Release(security, "Mon, 07 Dec 2026 02:54:29 UTC", "d" * 64))

    def plan(state: tuple[Release, ...]) -> BuildPlan:
        return make_plan(spec, "2026.11.0", list(spec.roles), load_base(IMAGE), recipes(), "zipapp-key",
                         Path("out"), archives=state)

    assert plan(before).base_key == plan(before).base_key
    assert plan(moved).base_key != plan(before).base_key
    assert not set(role_keys(plan(moved)).values()) & set(role_keys(plan(before)).values())

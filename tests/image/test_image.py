"""The built images, inspected without booting: partition table, boot loaders, files present and absent."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from herd import bundle
from herd.build.disk import BIOS_BOOT, ESP, ROOT_X86_64, USR_X86_64
from herd.build.plan import disk_ids
from herd.release import parse as parse_release
from herd.release import version_of
from herd.spec import Role

from .conftest import Build, run_build
from .diskimage import RootFs, Squashfs, cpio_names, esp_listing, partitions

ROLES = list(Role)
IDS = [r.value for r in Role]
ROLE_PACKAGES = {Role.DIRECTOR: ["ipvsadm", "galera-arbitrator-4"], Role.WEB: ["apache2", "nfs-common"],
                 Role.NFS: ["nfs-kernel-server"], Role.DB: ["mariadb-server", "galera-4", "rsync"]}


def root_fs(build: Build, role: Role) -> RootFs:
    return RootFs(build.images[role])


def bundle_of(image: Path) -> Path:
    return image.with_name(image.name.removesuffix(".img") + ".bundle")


def test_release_directory(build: Build) -> None:
    files = sorted(os.listdir(build.out))
    expected = sorted([p.name + suffix for p in build.images.values() for suffix in ("", ".bmap", ".zst")]
                      + [bundle_of(p).name + suffix for p in build.images.values() for suffix in ("", ".sig")]
                      + ["SHA256SUMS", "manifest.json"])
    assert files == expected, "only finished artifacts, no temporary files, in the release directory"
    # The images hold the cluster key, the bundles secrets derived from it: the folder and all that holds an
    # image or a bundle are the owner's alone.
    assert stat.S_IMODE(build.out.stat().st_mode) == 0o700
    for name in files:
        if ".img" in name or ".bundle" in name:
            assert stat.S_IMODE((build.out / name).stat().st_mode) == 0o600, name
    sums = dict(reversed(line.split("  ")) for line in (build.out / "SHA256SUMS").read_text().splitlines())
    for image in build.images.values():
        for path in (image, bundle_of(image), bundle_of(image).with_suffix(".bundle.sig")):
            h = hashlib.sha256(path.read_bytes()).hexdigest()
            assert sums[path.name] == h, path.name


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_the_bundle_passes_a_nodes_checks_and_holds_the_images_slot(build: Build, role: Role,
                                                                    tmp_path: Path) -> None:
    """Checked with the release-signers file of the role's own image, as herdd will; its squashfs is the
    image's /usr byte for byte, its kernel and initramfs the image's /boot ones, its config tree the image's
    files, and the cluster key is not in it."""
    image = build.images[role]
    fs = root_fs(build, role)
    signers = tmp_path / "release-signers"
    signers.write_bytes(fs.read("/etc/herd/release-signers"))
    path = bundle_of(image)
    manifest = bundle.verify(path, path.with_suffix(".bundle.sig"), signers, build.spec.name, role.value,
                             version_of(build.spec.release))
    kernel = build.manifest["images"][role.value]["kernel"]
    assert manifest.kernel == kernel
    parts = {p.name: p for p in manifest.parts}
    _, table = partitions(image)
    (usr,) = [p for p in table if p.type == USR_X86_64]
    with open(image, "rb") as f:
        f.seek(usr.start)
        assert hashlib.sha256(f.read(parts["usr.squashfs"].size)).hexdigest() == parts["usr.squashfs"].sha256
    assert hashlib.sha256(fs.read(f"/boot/vmlinuz-{kernel}")).hexdigest() == parts["vmlinuz"].sha256
    assert hashlib.sha256(fs.read(f"/boot/initrd.img-{kernel}")).hexdigest() == parts["initrd.img"].sha256
    for name in ("etc/herd/cluster.toml", "etc/herd/release-signers", "etc/hosts", "root/.ssh/authorized_keys"):
        assert hashlib.sha256(fs.read(f"/{name}")).hexdigest() == parts[f"config/{name}"].sha256, name
    assert "config/etc/herd/cluster.key" not in parts
    assert build.key.read_bytes() not in path.read_bytes()


def test_manifest(build: Build) -> None:
    m = build.manifest
    assert m["release"] == build.spec.release and m["cluster"] == build.spec.name
    assert m["spec_sha256"] == hashlib.sha256(build.spec.source.encode()).hexdigest()
    assert m["herd_version"]
    for role, image in build.images.items():
        entry = m["images"][role.value]
        assert entry["file"] == image.name
        assert entry["size"] == image.stat().st_size
        assert entry["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert entry["bmap"] == image.name + ".bmap"
        for pkg in ["linux-image-amd64", "systemd-sysv", "python3", "openssh-server", *ROLE_PACKAGES[role]]:
            assert pkg in entry["packages"], f"{pkg} missing from the {role} manifest"
        # Each role's first package is its own (nfs-common is shared: nfs-kernel-server depends on it).
        others = {ps[0] for r, ps in ROLE_PACKAGES.items() if r != role}
        assert not others & set(entry["packages"]), "another role's packages leaked into this image"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_partition_table(build: Build, role: Role) -> None:
    image = build.images[role]
    ids = disk_ids(build.spec.name, role, build.spec.release)
    label, parts = partitions(image)
    assert label == "gpt"
    assert [p.type for p in parts] == [BIOS_BOOT, ESP, USR_X86_64, ROOT_X86_64]
    assert (parts[2].uuid, parts[3].uuid) == (ids.usr_partuuid.upper(), ids.root_partuuid.upper())
    assert all(p.start % (1024 * 1024) == 0 for p in parts)
    assert parts[3].start + parts[3].size <= image.stat().st_size - 33 * 512
    # Sparse: far fewer bytes on disk than the file's size.
    assert os.stat(image).st_blocks * 512 < image.stat().st_size
    # Every role of the example fits its image.min_size, so every image is that size, the root padded to it.
    assert image.stat().st_size == build.spec.image.min_size > 0
    assert parts[3].start + parts[3].size == image.stat().st_size - 1024 * 1024


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_boot_loaders(build: Build, role: Role) -> None:
    image = build.images[role]
    ids = disk_ids(build.spec.name, role, build.spec.release)
    _, parts = partitions(image)
    with open(image, "rb") as f:
        data = f.read(parts[0].start + parts[0].size)
    assert data[510:512] == b"\x55\xaa", "no boot sector: grub-bios-setup did not run"
    assert b"GRUB" in data[:512]
    core = data[parts[0].start: parts[0].start + parts[0].size]
    assert core.strip(b"\0"), "BIOS boot partition is empty: no core.img"
    listing = esp_listing(image, parts[1].start, "/EFI/BOOT")
    assert "BOOTX64.EFI" in listing.upper()
    fs = root_fs(build, role)
    assert fs.root.label_and_uuid() == ("herd-root", ids.root_fs_uuid)
    grub = fs.text("/boot/grub/grub.cfg")
    kernel = build.manifest["images"][role.value]["kernel"]
    assert f"root=PARTUUID={ids.root_partuuid}" in grub
    assert "console=tty0" in grub and "console=ttyS0" in grub
    assert f"search --no-floppy --fs-uuid --set=root {ids.root_fs_uuid}" in grub
    assert fs.exists(f"/boot/vmlinuz-{kernel}") and fs.exists(f"/boot/initrd.img-{kernel}")
    assert fs.exists("/boot/grub/i386-pc/normal.mod") and fs.exists("/boot/grub/x86_64-efi/normal.mod")
    assert f"PARTUUID={ids.root_partuuid}" in fs.text("/etc/fstab")
    assert f"PARTUUID={ids.usr_partuuid}\t/usr\tsquashfs\tro" in fs.text("/etc/fstab")


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_usr_is_a_read_only_squashfs_and_the_root_has_only_its_mount_point(build: Build, role: Role) -> None:
    """Everything the packages installed is in the squashfs: the ext4 root keeps an empty /usr (where the
    initramfs mounts it) and what a node writes (/etc, /var)."""
    image = build.images[role]
    _, parts = partitions(image)
    with open(image, "rb") as f:
        f.seek(parts[2].start)
        head = f.read(96)
    assert head[:4] == b"hsqs", "no squashfs at the start of the usr partition"
    assert int.from_bytes(head[20:22], "little") == 6, "not zstd-compressed"  # squashfs compression id 6
    used = int.from_bytes(head[40:48], "little")
    assert used <= parts[2].size
    fs = root_fs(build, role)
    assert fs.root.listdir("/usr") == []
    assert fs.root.stat("/usr")["mode"] == 0o755  # type: ignore[index]
    assert fs.root.readlink("/lib") == "usr/lib" and fs.root.readlink("/bin") == "usr/bin"
    usr = Squashfs(image, parts[2].start)
    assert usr.stat("/bin/python3.11")["type"] == "regular"  # type: ignore[index]
    assert "systemd" in usr.listdir("/lib")
    kernel = build.manifest["images"][role.value]["kernel"]
    assert usr.exists(f"/lib/modules/{kernel}/modules.dep")


@pytest.mark.parametrize("role", [Role.WEB], ids=["web"])
def test_initramfs_boots_from_usb(build: Build, role: Role) -> None:
    fs = root_fs(build, role)
    kernel = build.manifest["images"][role.value]["kernel"]
    names = cpio_names(fs.read(f"/boot/initrd.img-{kernel}"))
    for module in ("usb-storage", "uas", "xhci-pci", "ehci-pci", "sd_mod", "ext4", "virtio_blk", "squashfs"):
        assert any(re.search(rf"/{module}\.ko(\.xz)?$", n) for n in names), f"{module} not in the initramfs"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_files(build: Build, role: Role) -> None:
    fs = root_fs(build, role)
    # herdd: the zipapp, its unit, enabled.
    assert fs.stat("/usr/lib/herd/herdd.pyz")["mode"] & 0o111  # type: ignore[index,operator]
    assert "Type=notify" in fs.text("/etc/systemd/system/herdd.service")
    assert fs.readlink("/etc/systemd/system/multi-user.target.wants/herdd.service") == \
        "/etc/systemd/system/herdd.service"
    assert fs.readlink("/etc/systemd/system/local-fs.target.wants/herd-growroot.service")
    # The host firewall, loaded before the network comes up.
    assert fs.readlink("/etc/systemd/system/sysinit.target.wants/nftables.service")
    assert "table inet herd" in fs.text("/etc/nftables.conf")
    # /etc/herd: the spec verbatim, the role, the key (root-only).
    assert fs.text("/etc/herd/cluster.toml") == build.spec.source
    assert fs.text("/etc/herd/role").strip() == role.value
    fields = parse_release(fs.text("/etc/herd/release"))
    assert (fields["RELEASE"], fields["CLUSTER"], fields["ROLE"]) == (build.spec.release, build.spec.name, role.value)
    assert fields["SOURCE_DATE_EPOCH"].isdigit()
    key = fs.stat("/etc/herd/cluster.key")
    assert key is not None and key["mode"] & 0o777 == 0o600 and key["uid"] == 0 and key["gid"] == 0
    assert fs.read("/etc/herd/cluster.key") == build.key.read_bytes()
    # Nothing that must be unique per node.
    assert not [n for n in fs.listdir("/etc/ssh") if n.startswith("ssh_host_")]
    assert fs.stat("/etc/machine-id")["size"] == 0  # type: ignore[index]
    assert not fs.exists("/var/lib/dbus/machine-id") or fs.readlink("/var/lib/dbus/machine-id")
    # Access: keys only.
    assert fs.text("/root/.ssh/authorized_keys").splitlines() == list(build.spec.ssh_keys)
    assert fs.stat("/root/.ssh")["mode"] & 0o777 == 0o700  # type: ignore[index,operator]
    sshd = fs.text("/etc/ssh/sshd_config.d/herd.conf")
    assert "PermitRootLogin prohibit-password" in sshd and "PasswordAuthentication no" in sshd
    assert "HostKey /etc/ssh/ssh_host_ed25519_key" in sshd  # the only key a node makes (no minute-long RSA keygen)
    # Units no node needs, each seconds of every boot: masked.
    for unit in ("e2scrub_reap.service", "e2scrub_all.timer", "systemd-binfmt.service", "modprobe@drm.service"):
        assert fs.readlink(f"/etc/systemd/system/{unit}") == "/dev/null", unit
    root_hash = fs.text("/etc/shadow").splitlines()[0].split(":")[1]
    assert root_hash in ("*", "!", "!*") or root_hash.startswith("!"), "root has a usable password"
    # No build leftovers.
    assert not fs.exists("/usr/sbin/policy-rc.d")
    assert not [n for n in fs.listdir("/var/cache/apt/archives") if n.endswith(".deb")]
    assert fs.listdir("/var/lib/apt/lists") in ([], ["partial"], ["lock", "partial"], ["partial", "lock"])
    assert f"{build.spec.network.vip}" in fs.text("/etc/hosts")


def test_role_specific_files(build: Build) -> None:
    assert "ip_vs" in root_fs(build, Role.DIRECTOR).text("/etc/modules-load.d/herd-ipvs.conf")
    web = root_fs(build, Role.WEB).text("/etc/sysctl.d/60-herd-lvs-dr.conf")
    assert "arp_ignore = 1" in web and "arp_announce = 2" in web
    assert str(build.spec.network.subnet) in root_fs(build, Role.NFS).text("/etc/exports")
    assert "bind-address" in root_fs(build, Role.DB).text("/etc/mysql/mariadb.conf.d/60-herd.cnf")
    assert not root_fs(build, Role.DIRECTOR).exists("/etc/exports")


def test_a_bad_export_option_fails_the_build_at_exportfs(build: Build, tmp_path: Path) -> None:
    """The spec accepts any word as an option; exportfs, run on the finished nfs tree, knows which exist."""
    text = build.spec_path.read_text()
    good = f'options = "{build.spec.nfs.options}"'
    assert text.count(good) == 1
    spec = tmp_path / "cluster.toml"
    spec.write_text(text.replace(good, 'options = "rw,sync,no_subtree_check,bogus_squash"'))
    r = run_build(["--spec", str(spec), "--out", str(tmp_path / "out"), "--key", str(build.key), "--role", "nfs"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "does not pass `awk" in r.stderr and 'unknown keyword "bogus_squash"' in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.img"))


def test_units_herdd_starts_are_not_started_by_systemd(build: Build) -> None:
    director = root_fs(build, Role.DIRECTOR)
    assert director.exists("/lib/systemd/system/garb.service")
    assert not director.exists("/etc/systemd/system/multi-user.target.wants/garb.service")
    # and the first boot's systemd presets do not enable it again
    assert "disable garb.service" in director.text("/etc/systemd/system-preset/10-herd.preset")
    # one db node in the example: plain MariaDB, started at boot by systemd
    assert root_fs(build, Role.DB).exists("/etc/systemd/system/multi-user.target.wants/mariadb.service")


def test_a_flashed_copy_equals_the_image_and_bmaptool_agrees(build: Build, tmp_path: Path) -> None:
    """The real image through `build.py flash` to a file (as for a VM disk), and through `bmaptool copy` with
    our .bmap: both byte-identical to the image."""
    image = build.images[Role.WEB]
    ours, theirs = tmp_path / "flashed.img", tmp_path / "bmaptool.img"
    r = run_build(["flash", str(image), str(ours), "--yes"])
    assert r.returncode == 0, r.stdout + r.stderr
    r2 = subprocess.run(["bmaptool", "copy", "--bmap", f"{image}.bmap", str(image), str(theirs)],
                        capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert hashlib.sha256(ours.read_bytes()).hexdigest() == digest
    assert hashlib.sha256(theirs.read_bytes()).hexdigest() == digest
    assert ours.stat().st_blocks * 512 < image.stat().st_size  # holes stayed holes


def test_the_compressed_image_unpacks_to_the_image(build: Build) -> None:
    image = build.images[Role.DIRECTOR]
    unpacked = subprocess.run(f"zstd -dc '{image}.zst' | sha256sum", shell=True, capture_output=True, text=True,
                              check=True).stdout.split()[0]
    assert unpacked == hashlib.sha256(image.read_bytes()).hexdigest()
    assert (image.parent / f"{image.name}.zst").stat().st_size < image.stat().st_size / 2


def test_herdd_is_unpacked_and_compiled_at_build_time(build: Build) -> None:
    """So a node never writes its own packages (a power cut then could break herdd for good)."""
    fs = root_fs(build, Role.WEB)
    (unpacked,) = [n for n in fs.listdir("/usr/lib/herd/shiv") if n.startswith("herdd.pyz_")]
    site = f"/usr/lib/herd/shiv/{unpacked}/site-packages"
    assert fs.exists(f"{site}/herd/entry.py")
    assert [n for n in fs.listdir(f"{site}/herd/__pycache__") if n.startswith("entry.")]
    assert not [n for n in fs.listdir("/usr/lib/herd/shiv") if n.endswith("_lock")]

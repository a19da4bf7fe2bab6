"""The raw disk image, built without mounting anything: a sparse file partitioned by sfdisk, /usr made by
mksquashfs and copied to its partition, the root (the rest of the tree, /usr an empty mount point) by
`mkfs.ext4 -d` straight into its partition's offset, the ESP by `mkfs.fat --offset` + mtools, GRUB's BIOS
core.img written by grub-bios-setup and its EFI image copied to the removable path."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from herd.build.context import BuildContext
from herd.build.disk import Layout, layout, oversize_warning, root_size, usr_size
from herd.build.fs import remove_tree, tree_bytes
from herd.build.plan import ROOT_LABEL, RolePlan
from herd.build.private import create_private, private_dir
from herd.build.reproducible import set_inode_times
from herd.build.run import in_private_namespace, run
from herd.build.steps import Step
from herd.build.steps.bundle import keep_parts, parts_dir

GRUB_COMMON = ["part_gpt", "part_msdos", "ext2", "fat", "search", "search_fs_uuid", "search_label", "normal",
               "configfile", "linux", "gzio", "echo", "test", "serial", "terminal", "boot", "ls", "cat"]
GRUB_BIOS = ["biosdisk", *GRUB_COMMON]
GRUB_EFI = [*GRUB_COMMON, "efi_gop", "efi_uga", "all_video"]
ESP_LABEL = "HERD-ESP"
# zstd's default level: db's /usr in 40 % of its bytes in about a second; level 15 saves 7 % more in 15 s.
SQUASHFS_OPTIONS = ["-comp", "zstd", "-Xcompression-level", "3", "-reproducible", "-noappend", "-no-progress",
                    "-quiet"]


def early_config(fs_uuid: str) -> str:
    # Find the root by its filesystem UUID (fixed per image) whatever disk number the firmware gives it.
    return f"search --no-floppy --fs-uuid --set=root {fs_uuid}\nset prefix=($root)/boot/grub\n"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def copy_into(source: Path, image: Path, offset: int) -> None:
    """source's bytes into image at offset, every one of them: unlike a file in ext4, a run of zeros in a
    squashfs is read from the disk, so it must be written to it (and be in the bmap) too."""
    with open(source, "rb") as src, open(image, "r+b") as dst:
        dst.seek(offset)
        shutil.copyfileobj(src, dst, 4 * 1024 * 1024)


class Disk(Step):
    name = "disk"

    def __init__(self, role_plan: RolePlan) -> None:
        self.role_plan = role_plan

    def label(self) -> str:
        return f"[{self.role_plan.role}] disk image: GPT, squashfs /usr, ext4 root, ESP, GRUB (BIOS + UEFI)"

    def run(self, ctx: BuildContext) -> None:
        role = self.role_plan.role
        result = ctx.images[role]
        tree = ctx.trees[role]
        ids = self.role_plan.ids
        epoch = ctx.plan.source_date_epoch
        with ctx.reporter.step(self.label()) as progress:
            progress.line("squashfs /usr (zstd)")
            squashfs = self._squash_usr(ctx, tree, epoch, progress.line)
            used, inodes = tree_bytes(tree)
            min_size = ctx.plan.spec.image.min_size
            disk = layout(ids, usr_size(squashfs.stat().st_size), root_size(used, inodes), min_size)
            if warning := oversize_warning(role, disk, min_size):
                ctx.reporter.warn(warning)
            image = result.tmp_path
            private_dir(image.parent)  # the release folder: the images hold the cluster key
            image.unlink(missing_ok=True)
            with os.fdopen(create_private(image), "wb") as f:
                f.truncate(disk.size)
            progress.line("partitioning")
            run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", image], input=disk.sfdisk_script())
            progress.line(f"/usr ({disk.usr.size // 2**20} MiB)")
            copy_into(squashfs, image, disk.usr.start)
            progress.line(f"ext4 root ({disk.root.size // 2**20} MiB)")
            run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-U", ids.root_fs_uuid, "-J", "size=16",
                 "-E", f"offset={disk.root.start},nodiscard,lazy_itable_init=1,lazy_journal_init=1,"
                       f"root_owner=0:0,hash_seed={ids.root_fs_uuid}",
                 "-d", tree, image, f"{disk.root.size // 1024}k"],
                on_line=progress.line, env={"E2FSPROGS_FAKE_TIME": str(epoch)})
            progress.line("ext4 root: inode change and access times set to SOURCE_DATE_EPOCH")
            self._inode_times(ctx, f"{image}?offset={disk.root.start}", epoch)
            progress.line("EFI system partition")
            self._esp(ctx, disk, image)
            progress.line("GRUB for BIOS")
            self._bios(ctx, disk, image)
            result.size = disk.size
            progress.line("sha256")
            result.sha256 = sha256_file(image)
            result.allocated = os.stat(image).st_blocks * 512
            keep_parts(ctx, role, squashfs, tree, ctx.kernel_versions[role])  # for the update bundle
            # The tree is in the image now; free its space before the next role.
            remove_tree(ctx.work / role.value)
            ctx.trees.pop(role, None)

    def _squash_usr(self, ctx: BuildContext, tree: Path, epoch: int, on_line: Callable[[str], None]) -> Path:
        """/usr as a squashfs; the tree's /usr is then moved out of the tree, leaving an empty directory with the
        same mode and times for the root filesystem (the mount point)."""
        work = ctx.work / self.role_plan.role.value
        usr, moved, squashfs = tree / "usr", work / "usr", work / "usr.squashfs"
        squashfs.unlink(missing_ok=True)
        run(["mksquashfs", usr, squashfs, *SQUASHFS_OPTIONS, "-mkfs-time", str(epoch)], on_line=on_line)
        st = usr.stat()
        remove_tree(moved)
        usr.rename(moved)
        usr.mkdir()
        os.chown(usr, st.st_uid, st.st_gid)
        os.chmod(usr, st.st_mode & 0o7777)
        os.utime(usr, ns=(st.st_atime_ns, st.st_mtime_ns))
        return squashfs

    def _grub_dir(self, ctx: BuildContext) -> Path:
        path = ctx.work / self.role_plan.role.value / "grub"
        path.mkdir(parents=True, exist_ok=True)
        (path / "early.cfg").write_text(early_config(self.role_plan.ids.root_fs_uuid))
        return path

    def _esp(self, ctx: BuildContext, disk: Layout, image: Path) -> None:
        grub = self._grub_dir(ctx)
        efi = grub / "BOOTX64.EFI"
        run(["grub-mkimage", "-O", "x86_64-efi", "-o", efi, "-c", grub / "early.cfg", "-p", "/boot/grub",
             *GRUB_EFI])
        epoch = ctx.plan.source_date_epoch
        env = {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}
        # No -n: mkfs.fat stamps the label's directory entry with the real time; mlabel honours the epoch.
        run(["mkfs.fat", "-F", "32", "-s", "1", "-i", self.role_plan.ids.esp_serial,
             f"--offset={disk.esp.start // 512}", image, str(disk.esp.size // 1024)], env=env)
        target = f"{image}@@{disk.esp.start}"
        run(["mlabel", "-i", target, f"::{ESP_LABEL}"], env=env)
        run(["mmd", "-i", target, "::/EFI", "::/EFI/BOOT"], env=env)
        os.utime(efi, (epoch, epoch))
        run(["mcopy", "-m", "-i", target, efi, "::/EFI/BOOT/BOOTX64.EFI"], env=env)

    def _inode_times(self, ctx: BuildContext, fs: str, epoch: int) -> None:
        """mkfs.ext4 -d copies each file's ctime and atime, which the kernel stamps: set them to the epoch."""
        set_inode_times(fs, epoch, ctx.work / self.role_plan.role.value / "inode-times.debugfs")

    def _bios(self, ctx: BuildContext, disk: Layout, image: Path) -> None:
        grub = self._grub_dir(ctx)
        setup = grub / "bios"
        setup.mkdir(exist_ok=True)
        run(["grub-mkimage", "-O", "i386-pc", "-o", setup / "core.img", "-c", grub / "early.cfg",
             "-p", "/boot/grub", *GRUB_BIOS])
        (setup / "boot.img").write_bytes(Path("/usr/lib/grub/i386-pc/boot.img").read_bytes())
        (setup / "device.map").write_text(f"(hd0) {image.resolve()}\n")
        # grub-bios-setup insists that the directory it reads core.img from lives on the disk it writes to:
        # make it so, in a mount namespace of our own, by mounting a tmpfs "from" the image over it.
        script = ('set -e; mount -t tmpfs "$1" "$2"; cp "$3"/boot.img "$3"/core.img "$2"/; '
                  '/usr/lib/grub/i386-pc/grub-bios-setup --skip-fs-probe -d "$2" -m "$3/device.map" "$1"')
        mnt = grub / "mnt"
        mnt.mkdir(exist_ok=True)
        run(in_private_namespace(["sh", "-c", script, "-", image.resolve(), mnt, setup]))

    def undo(self, ctx: BuildContext) -> None:
        ctx.images[self.role_plan.role].tmp_path.unlink(missing_ok=True)
        remove_tree(ctx.work / self.role_plan.role.value)
        remove_tree(parts_dir(ctx, self.role_plan.role))

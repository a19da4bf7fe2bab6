"""Disk layout of an image, pure: partition offsets and sizes, and the sfdisk script for them.

GPT with a BIOS-boot partition (GRUB's core.img for SeaBIOS/legacy boot), an EFI system partition (GRUB as
EFI/BOOT/BOOTX64.EFI, the removable path every UEFI firmware looks at), /usr as a read-only squashfs (what the
packages installed, compressed: a stick is flashed and verified in about half the time an ext4 /usr took) and
the ext4 root (/etc, /var, /boot: what a node writes), which is last so it can grow to fill the stick at first
boot."""

from __future__ import annotations

from dataclasses import dataclass

from herd.build.plan import DiskIds
from herd.spec import Role

MiB = 1024 * 1024
SECTOR = 512

BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # discoverable-partitions type for an x86-64 root
USR_X86_64 = "8484680C-9521-48C6-9C11-B0720656F69E"   # and for its /usr


@dataclass(frozen=True)
class Partition:
    name: str
    type_guid: str
    uuid: str
    start: int  # bytes
    size: int   # bytes


@dataclass(frozen=True)
class Layout:
    disk_guid: str
    bios: Partition
    esp: Partition
    usr: Partition
    root: Partition
    size: int  # whole image, bytes

    def partitions(self) -> tuple[Partition, ...]:
        return (self.bios, self.esp, self.usr, self.root)

    def sfdisk_script(self) -> str:
        lines = ["label: gpt", f"label-id: {self.disk_guid}", "unit: sectors", "first-lba: 2048", ""]
        for p in self.partitions():
            lines.append(f"start={p.start // SECTOR}, size={p.size // SECTOR}, type={p.type_guid}, "
                         f'uuid={p.uuid}, name="{p.name}"')
        return "\n".join(lines) + "\n"


def root_size(tree_bytes: int, inodes: int) -> int:
    """Room for the tree, ext4's own metadata (inode tables, a 16 MiB journal) and some slack for the
    first boot; the stick's remaining space is added at first boot anyway."""
    needed = tree_bytes * 11 // 10 + inodes * 256 + 16 * MiB + 192 * MiB
    return -(-needed // (4 * MiB)) * 4 * MiB


USR_START = 66 * MiB
TAIL = 1 * MiB  # after the root: the backup GPT


def usr_size(squashfs_bytes: int) -> int:
    """The squashfs as it is, in whole MiB: it never grows (a new release is a new image)."""
    return max(1, -(-squashfs_bytes // MiB)) * MiB


def layout(ids: DiskIds, usr_bytes: int, root_bytes: int, min_size: int = 0) -> Layout:
    """The image's partitions, /usr usr_bytes long (whole MiB), the root root_bytes long, or longer if the
    image must be at least min_size (spec image.min_size, whole MiB): the root then ends where the image of
    exactly min_size needs it to."""
    bios = Partition("bios", BIOS_BOOT, ids.bios_guid, 1 * MiB, 1 * MiB)
    esp = Partition("esp", ESP, ids.esp_guid, 2 * MiB, 64 * MiB)
    usr = Partition("usr", USR_X86_64, ids.usr_partuuid, USR_START, usr_bytes)
    root_start = usr.start + usr.size
    root = Partition("root", ROOT_X86_64, ids.root_partuuid, root_start,
                     max(root_bytes, min_size - root_start - TAIL))
    return Layout(ids.disk_guid, bios, esp, usr, root, root.start + root.size + TAIL)


def oversize_warning(role: Role, disk: Layout, min_size: int) -> str | None:
    """An image larger than the spec's image.min_size is still built (its root grows at first boot anyway), but
    sticks of that size no longer take it: say so."""
    if not min_size or disk.size <= min_size:
        return None
    return (f"the {role} image is {disk.size // MiB} MiB, over image.min_size ({min_size // MiB} MiB): its files "
            f"need that much, and a stick of {min_size // MiB} MiB is too small for it; raise image.min_size to "
            f"{-(-disk.size // (100 * MiB)) * 100}MiB or more to keep every image one size")

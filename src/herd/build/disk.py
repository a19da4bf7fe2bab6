"""Disk layout of an image, pure: partition offsets and sizes, and the sfdisk script for them.

GPT with a BIOS-boot partition (GRUB's core.img for SeaBIOS/legacy boot), an EFI system partition (GRUB as
EFI/BOOT/BOOTX64.EFI, the removable path every UEFI firmware looks at) and the ext4 root, which is last so it
can grow to fill the stick at first boot."""

from __future__ import annotations

from dataclasses import dataclass

from herd.build.plan import DiskIds

MiB = 1024 * 1024
SECTOR = 512

BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # discoverable-partitions type for an x86-64 root


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
    root: Partition
    size: int  # whole image, bytes

    def sfdisk_script(self) -> str:
        lines = ["label: gpt", f"label-id: {self.disk_guid}", "unit: sectors", "first-lba: 2048", ""]
        for p in (self.bios, self.esp, self.root):
            lines.append(f"start={p.start // SECTOR}, size={p.size // SECTOR}, type={p.type_guid}, "
                         f'uuid={p.uuid}, name="{p.name}"')
        return "\n".join(lines) + "\n"


def root_size(tree_bytes: int, inodes: int) -> int:
    """Room for the tree, ext4's own metadata (inode tables, a 16 MiB journal) and some slack for the
    first boot; the stick's remaining space is added at first boot anyway."""
    needed = tree_bytes * 11 // 10 + inodes * 256 + 16 * MiB + 192 * MiB
    return -(-needed // (4 * MiB)) * 4 * MiB


def layout(ids: DiskIds, root_bytes: int) -> Layout:
    bios = Partition("bios", BIOS_BOOT, ids.bios_guid, 1 * MiB, 1 * MiB)
    esp = Partition("esp", ESP, ids.esp_guid, 2 * MiB, 64 * MiB)
    root = Partition("root", ROOT_X86_64, ids.root_partuuid, 66 * MiB, root_bytes)
    return Layout(ids.disk_guid, bios, esp, root, root.start + root.size + 1 * MiB)

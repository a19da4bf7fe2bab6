"""The GRUB script that boots a slot: bootcount.grub() written in the little GRUB script it needs (`set`, `if`/
`elif`/`else` on `[ "${var}" = "x" ]` or on a command's success, `load_env`, `save_env`, `linux`, `initrd`), no
arithmetic. render() returns the body of a menu entry; the slot's kernel and initramfs are read from
`<files>/<slot>/vmlinuz` and `initrd.img` on the filesystem GRUB's `root` names (or the one `fs_uuid` finds),
beside the environment block, and the kernel is told the slot (`herd.slot=A`) and its /usr partition
(`mount.usr=PARTLABEL=usr-a`, systemd's name for it, with `mount.usrfstype=squashfs`).

What it relies on in GRUB 2.06 (Debian 12), each checked in GRUB's source or manual:
- `load_env --skip-sig --file F names…` sets only the variables named (the "whitelist"), so nothing else in the
  block (`root`, `prefix`, `check_signatures`) can change how GRUB boots; --skip-sig skips signature checking of
  the block should check_signatures ever be enforced (the manual, "load_env": use it only with a whitelist;
  grub-core/commands/loadenv.c, grub_cmd_load_env). A variable the block does not hold is left as it was, so
  the script first sets each one empty.
- A missing or unreadable block makes load_env (and save_env) fail, and GRUB prints the error and goes on with
  the next command (grub-core/script/execute.c: grub_script_execute_cmdline prints and clears the error, and a
  command list runs every command): with no block, the variables stay empty and slot A (bootcount.FALLBACK)
  boots. A printed error costs time, not the boot: after the entry GRUB shows "Press any key to continue..."
  for up to 10 s, then boots what was loaded (grub-core/normal/menu.c: grub_menu_execute_entry,
  grub_wait_after_message).
- `save_env --file F name` reads the file, rewrites the variable (a set one; an unset one is deleted) in a copy
  of the block and writes that copy back through the disk blocks it was read from, so the file must exist, be
  1024 bytes on a plain disk and filesystem, not sparse (grub_cmd_save_env, check_blocklists: "sparse file not
  allowed"; the manual, "Environment block": no LVM or RAID, no ZFS, through BIOS or EFI disk calls — GRUB's own
  ATA or USB drivers cannot write it). It returns non-zero when any of that fails, and `if` tests that status
  (grub_script_execute_cmdif reads `$?`): so a try is booted only once its count is on disk.
- `[ a = b ]` compares strings (the `test` command); GRUB script has no arithmetic, so tries count down through
  "3", "2", "1", "0", one branch each.
- The fragment sets every variable it reads itself, so nothing grub.cfg set before it changes what it does (a
  menu entry shares GRUB's variables: grub_menu_execute_entry opens a context of its own only for a submenu).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from herd.slots.bootcount import COUNTDOWN, DEFAULT, FALLBACK, TRIES_LEFT, TRY, Slot

USR_LABELS = {Slot.A: "usr-a", Slot.B: "usr-b"}  # the /usr partitions' GPT names
SLOT_ARG = "herd.slot"
USR_ARG = "mount.usr"
MODULES = ("loadenv", "test")  # beside those the image's GRUB loads already (search for fs_uuid)

_PATH = re.compile(r"/(?:[A-Za-z0-9._-]+/)*[A-Za-z0-9._-]+")
_UUID = re.compile(r"[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}|[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
_WORD = re.compile(r"[A-Za-z0-9_.,:=/+@-]+")  # a kernel argument GRUB reads as one word, with nothing to expand
_DEVICE = re.compile(r"(?:PARTLABEL|PARTUUID|LABEL|UUID)=[A-Za-z0-9._-]+|/dev/[A-Za-z0-9._/-]+")


def usr_by_partlabel() -> dict[Slot, str]:
    """Each slot's /usr by its GPT partition name (PARTLABEL=usr-a): the same on every stick, so a second herd
    stick plugged into the node could be taken for it."""
    return {slot: f"PARTLABEL={label}" for slot, label in USR_LABELS.items()}


def usr_by_partuuid(a: str, b: str) -> dict[Slot, str]:
    """Each slot's /usr by its GPT partition UUID: unique per image, as the root's is."""
    return {Slot.A: f"PARTUUID={a}", Slot.B: f"PARTUUID={b}"}


@dataclass(frozen=True)
class SlotBoot:
    usr: Mapping[Slot, str]            # each slot's /usr device for the kernel: usr_by_partlabel() or _by_partuuid()
    cmdline: str                       # the rest of the kernel command line (root=…, ro, consoles)
    env_file: str = "/herd/grubenv"    # the environment block, on the same filesystem as the slots' files
    files: str = "/herd"               # <files>/<slot>/vmlinuz and initrd.img
    fs_uuid: str | None = None         # that filesystem's UUID (searched for); None: GRUB's root as it is
    modules: tuple[str, ...] = field(default=MODULES)

    def __post_init__(self) -> None:
        if set(self.usr) != set(Slot):
            raise ValueError(f"usr names {sorted(self.usr)}: one device for each of A and B")
        for slot, device in self.usr.items():
            if not _DEVICE.fullmatch(device):
                raise ValueError(f"slot {slot}'s /usr {device!r}: PARTLABEL=, PARTUUID=, LABEL=, UUID= or /dev/…")
        for name, path in (("env_file", self.env_file), ("files", self.files)):
            if not _PATH.fullmatch(path):
                raise ValueError(f"{name} {path!r}: an absolute path of letters, digits, '.', '_' and '-'")
        if self.fs_uuid is not None and not _UUID.fullmatch(self.fs_uuid):
            raise ValueError(f"fs_uuid {self.fs_uuid!r}: a FAT volume ID (ABCD-1234) or a UUID")
        for word in self.cmdline.split():
            if not _WORD.fullmatch(word):
                raise ValueError(f"kernel argument {word!r}: letters, digits and _ . , : = / + @ - only")
            if word.partition("=")[0] in (SLOT_ARG, USR_ARG, "mount.usrfstype"):
                raise ValueError(f"kernel argument {word!r}: the slot's own arguments are added per slot")
        for module in self.modules:
            if not re.fullmatch(r"[a-z0-9_]+", module):
                raise ValueError(f"GRUB module {module!r}")

    def kernel_args(self, slot: Slot) -> list[str]:
        """The kernel command line GRUB gives the slot's kernel."""
        return [*self.cmdline.split(), f"{USR_ARG}={self.usr[slot]}", "mount.usrfstype=squashfs",
                f"{SLOT_ARG}={slot.value}"]

    def kernel(self, slot: Slot) -> str:
        return f"{self.files}/{slot.value}/vmlinuz"

    def initrd(self, slot: Slot) -> str:
        return f"{self.files}/{slot.value}/initrd.img"


def render(boot: SlotBoot) -> str:
    """The menu entry's body, one command a line, indented for reading."""
    env = boot.env_file
    lines = ["# herd A/B slots (herd.slots.grubcfg renders herd.slots.bootcount.grub()): no arithmetic, strings only."]
    lines += [f"insmod {module}" for module in boot.modules]
    if boot.fs_uuid is not None:
        lines.append(f"search --no-floppy --fs-uuid --set=root {boot.fs_uuid}")
    lines += [f"set {name}=" for name in (DEFAULT, TRY, TRIES_LEFT)]
    lines.append(f"load_env --skip-sig --file {env} {DEFAULT} {TRY} {TRIES_LEFT}")
    lines += [
        f"set herd_slot={FALLBACK}",
        f"set herd_other={FALLBACK.other}",
        f'if [ "${{{DEFAULT}}}" = "{FALLBACK.other}" ]; then',
        f"    set herd_slot={FALLBACK.other}",
        f"    set herd_other={FALLBACK}",
        "fi",
        f'if [ "${{{TRY}}}" = "${{herd_other}}" ]; then',
    ]
    # A try is counted down one string at a time; it is booted only if save_env wrote the new count.
    for i, (left, after) in enumerate(COUNTDOWN):
        lines += [
            f'    {"if" if i == 0 else "elif"} [ "${{{TRIES_LEFT}}}" = "{left}" ]; then',
            f"        set {TRIES_LEFT}={after}",
            f"        if save_env --file {env} {TRIES_LEFT}; then",
            '            set herd_slot="${herd_other}"',
            "        fi",
        ]
    lines += ["    fi", "fi"]
    for i, slot in enumerate((FALLBACK.other, FALLBACK)):
        lines += [f'if [ "${{herd_slot}}" = "{slot}" ]; then' if i == 0 else "else",
                  f"    linux {' '.join([boot.kernel(slot), *boot.kernel_args(slot)])}",
                  f"    initrd {boot.initrd(slot)}"]
    lines.append("fi")
    return "\n".join(lines) + "\n"


def menuentry(title: str, boot: SlotBoot) -> str:
    """A whole menu entry around render()'s body."""
    if not re.fullmatch(r"[A-Za-z0-9 ._+-]+", title):
        raise ValueError(f"menu entry title {title!r}")
    body = "".join(f"    {line}\n" if line else "\n" for line in render(boot).splitlines())
    return f'menuentry "{title}" {{\n{body}}}\n'


def booted_slot(cmdline: str) -> Slot | None:
    """The slot this kernel was booted from, by the herd.slot= GRUB put on its command line (/proc/cmdline);
    None without one (an image from before the slots)."""
    found = None
    for word in cmdline.split():
        name, sep, value = word.partition("=")
        if sep and name == SLOT_ARG:
            found = value  # the last one counts, as the kernel's own parameters do
    if found is None:
        return None
    try:
        return Slot(found)
    except ValueError:
        return None

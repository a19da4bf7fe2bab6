"""herd.slots.grubcfg: the GRUB script is run by a tiny interpreter of the GRUB script it uses (set, if/elif/else/
fi on `[ a = b ]` or a command's status, load_env/save_env on real environment blocks, linux/initrd recorded),
and for every block (herd's states, garbage, none at all, one GRUB cannot write) it boots what
bootcount.grub() says and writes what it says; grub-script-check (GRUB's own parser) accepts it."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from herd.slots import bootcount, grubcfg, grubenv
from herd.slots.bootcount import GRUB_READS, GRUB_WRITES, MAX_TRIES, Slot, from_env, grub
from herd.slots.grubcfg import SlotBoot

from .test_slots_bootcount import STATES, block, changed

ENV = "/herd/grubenv"
CONFIG = SlotBoot(usr=grubcfg.usr_by_partlabel(),
                  cmdline="root=PARTUUID=0b1a2c3d-01 ro rootwait console=ttyS0,115200n8")


# --- the interpreter -----------------------------------------------------------------------------------------

class Unsupported(Exception):
    """Script outside the subset: the interpreter refuses rather than guess what GRUB would do."""


@dataclass(frozen=True)
class Part:
    text: str
    var: bool      # ${text}
    quoted: bool   # inside "…"


Word = tuple[Part, ...]
SEMI: Word = (Part(";", False, False),)


def tokenize(line: str) -> list[Word]:
    words: list[Word] = []
    parts: list[Part] = []
    i = 0

    def variable(start: int, quoted: bool) -> int:
        if line[start:start + 2] != "${":
            raise Unsupported(f"'$' without '{{' in {line!r}")
        end = line.index("}", start)
        parts.append(Part(line[start + 2:end], True, quoted))
        return end + 1

    while i < len(line):
        c = line[i]
        if c in " \t":
            if parts:
                words.append(tuple(parts))
                parts = []
            i += 1
        elif c == ";":
            if parts:
                words.append(tuple(parts))
                parts = []
            words.append(SEMI)
            i += 1
        elif c == '"':
            i += 1
            parts.append(Part("", False, True))  # "" is a word even when empty
            while line[i] != '"':
                if line[i] == "$":
                    i = variable(i, True)
                elif line[i] in "\\`":
                    raise Unsupported(f"{line[i]!r} in quotes: {line!r}")
                else:
                    parts.append(Part(line[i], False, True))
                    i += 1
            i += 1
        elif c == "$":
            i = variable(i, False)
        elif c in "'\\#|&<>(){}`":
            raise Unsupported(f"{c!r} in {line!r}")
        else:
            parts.append(Part(c, False, False))
            i += 1
    if parts:
        words.append(tuple(parts))
    return words


@dataclass
class If:
    branches: list[tuple[list[Word], list[Node]]]
    otherwise: list[Node] = field(default_factory=list)


Node = list[Word] | If


def parse_script(text: str) -> list[Node]:
    lines = [tokenize(line.strip()) for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    pos = 0

    def literal(word: Word) -> str | None:
        return "".join(p.text for p in word) if all(not p.var and not p.quoted for p in word) else None

    def block(ends: tuple[str, ...]) -> tuple[list[Node], str]:
        nonlocal pos
        body: list[Node] = []
        while pos < len(lines):
            words = lines[pos]
            head = literal(words[0])
            if head in ends:
                return body, head
            pos += 1
            if head == "if":
                body.append(conditional(words))
            elif head in ("elif", "else", "fi", "then"):
                raise Unsupported(f"{head} out of place")
            else:
                if SEMI in words:
                    raise Unsupported("one command a line")
                body.append(words)
        if ends:
            raise Unsupported(f"missing {ends}")
        return body, ""

    def condition(words: list[Word]) -> list[Word]:
        if len(words) < 4 or words[-2] != SEMI or literal(words[-1]) != "then":
            raise Unsupported("if/elif COMMAND; then")
        return words[1:-2]

    def conditional(words: list[Word]) -> If:
        nonlocal pos
        node = If([])
        cond = condition(words)
        while True:
            body, end = block(("elif", "else", "fi"))
            node.branches.append((cond, body))
            words = lines[pos]
            pos += 1
            if end == "elif":
                cond = condition(words)
                continue
            if end == "else":
                if len(words) != 1:
                    raise Unsupported("else alone on its line")
                node.otherwise, _ = block(("fi",))
                pos += 1
            return node

    body, _ = block(())
    return body


@dataclass
class Grub:
    """GRUB at boot, for this subset: its variables, the files it can read (and write, unless read_only)."""
    files: dict[str, bytes]
    read_only: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, ...]] = field(default_factory=list)

    def expand(self, word: Word) -> str | None:
        text = "".join(self.vars.get(p.text, "") if p.var else p.text for p in word)
        return text if text or any(p.quoted for p in word) else None

    def run(self, nodes: list[Node]) -> None:
        for node in nodes:
            if isinstance(node, If):
                for cond, body in node.branches:
                    if self.command(cond) == 0:
                        self.run(body)
                        break
                else:
                    self.run(node.otherwise)
            else:
                self.command(node)

    def command(self, words: list[Word]) -> int:
        argv = [text for text in map(self.expand, words) if text is not None]
        name, args = argv[0], argv[1:]
        if name == "set" and len(args) == 1 and "=" in args[0]:
            var, _, value = args[0].partition("=")
            self.vars[var] = value
            return 0
        if name == "[" and len(args) == 4 and args[1] == "=" and args[3] == "]":
            return 0 if args[0] == args[2] else 1
        if name == "insmod" and len(args) == 1:
            self.events.append(("insmod", args[0]))
            return 0
        if name == "search" and args[:3] == ["--no-floppy", "--fs-uuid", "--set=root"] and len(args) == 4:
            self.vars["root"] = args[3]
            self.events.append(("search", args[3]))
            return 0
        if name in ("load_env", "save_env"):
            return self.env_command(name, args)
        if name in ("linux", "initrd"):
            self.events.append((name, *args))
            return 0
        raise Unsupported(f"command {argv}")

    def env_command(self, name: str, args: list[str]) -> int:
        skip_sig = args[:1] == ["--skip-sig"]
        args = args[1:] if skip_sig else args
        if args[:1] != ["--file"] or len(args) < 3:
            raise Unsupported(f"{name} without --file and variable names: {args}")
        path, names = args[1], args[2:]
        self.events.append((name, path, *names))
        if path not in self.files:
            return 1  # "file not found": GRUB prints it and goes on (grub-core/script/execute.c)
        if name == "load_env":
            if not skip_sig:
                raise Unsupported("load_env without --skip-sig")
            for var, value in grubenv.pairs(self.files[path]):  # set in turn, whitelisted only (loadenv.c)
                if var in names:
                    self.vars[var] = value
            return 0
        if self.read_only:
            return 1  # a disk GRUB cannot write, a sparse file, a changed blocklist: save_env fails
        # Each named variable: set -> written, unset -> deleted (grub_cmd_save_env).
        self.files[path] = grubenv.update(self.files[path], [(var, self.vars.get(var)) for var in names])
        return 0

    def booted(self) -> tuple[str, list[str], str]:
        kernels = [e for e in self.events if e[0] == "linux"]
        initrds = [e for e in self.events if e[0] == "initrd"]
        assert len(kernels) == 1 and len(initrds) == 1
        return kernels[0][1], list(kernels[0][2:]), initrds[0][1]


SCRIPT = parse_script(grubcfg.render(CONFIG))


def run_grub(files: dict[str, bytes], *, read_only: bool = False, script: list[Node] = SCRIPT) -> Grub:
    machine = Grub(dict(files), read_only=read_only)
    machine.run(script)
    return machine


def assert_boots(machine: Grub, slot: Slot, config: SlotBoot = CONFIG) -> None:
    assert machine.booted() == (config.kernel(slot), config.kernel_args(slot), config.initrd(slot))
    assert grubcfg.booted_slot(" ".join(machine.booted()[1])) is slot
    names = [e[0] for e in machine.events]
    assert "save_env" not in names[names.index("linux"):]  # the count is saved before linux


# --- the tests -----------------------------------------------------------------------------------------------

def test_the_interpreter_refuses_what_it_does_not_know() -> None:
    for text in ["echo hi", "set a", "if [ a = b ]\nfi", "if [ a = b ]; then\n", "x=1", "set a='b'",
                 "set a=$b", "load_env --file /f", "load_env --file /f a"]:
        with pytest.raises(Unsupported):
            run_grub({"/f": grubenv.blank()}, script=parse_script(text))


VALUES = (None, "", "A", "B", "b", "AB")
TRIES = (None, "", *bootcount.TRIES, "4", "03", "x")


@pytest.mark.parametrize("block_state", ["writable", "read-only", "missing"])
def test_the_script_does_what_bootcount_grub_says_for_any_block(block_state: str) -> None:
    for default, tried, tries in itertools.product(VALUES, VALUES, TRIES):
        env = {name: value for name, value in zip(GRUB_READS, (default, tried, tries), strict=True)
               if value is not None}
        before = grubenv.render({"other": "kept", **env})
        files = {} if block_state == "missing" else {ENV: before}
        machine = run_grub(files, read_only=block_state == "read-only")
        want = grub(env if files else {}, saved=block_state == "writable")
        assert_boots(machine, want.slot)
        if files:
            assert machine.files[ENV] == grubenv.update(before, want.saves), env
            assert len(changed(before, machine.files[ENV])) == (1 if want.saves else 0)
        assert machine.files.keys() == files.keys()


def test_the_script_boots_every_herd_state_as_bootcount_says() -> None:
    for state in STATES:
        machine = run_grub({ENV: block(state)})
        boot = state.boot()
        assert_boots(machine, boot.slot)
        assert from_env(grubenv.parse(machine.files[ENV])) == boot.after
        assert machine.files[ENV] == block(boot.after)


def test_boot_after_boot_the_script_counts_down_and_falls_back() -> None:
    files = {ENV: block(bootcount.initial().mark_good(Slot.A).stage(Slot.B, "2026.12.0"))}
    slots = []
    for _ in range(MAX_TRIES + 2):
        machine = run_grub(files)
        slots.append(grubcfg.booted_slot(" ".join(machine.booted()[1])))
        files = machine.files
    assert slots == [Slot.B] * MAX_TRIES + [Slot.A] * 2
    assert from_env(grubenv.parse(files[ENV])).outcome(Slot.A) is bootcount.Outcome.FELL_BACK


def test_the_script_reads_and_writes_only_what_it_should() -> None:
    machine = run_grub({ENV: block(bootcount.initial().stage(Slot.B, "2026.12.0"))})
    loads = [e for e in machine.events if e[0] == "load_env"]
    saves = [e for e in machine.events if e[0] == "save_env"]
    assert loads == [("load_env", ENV, *GRUB_READS)]  # a whitelist: nothing else in the block is taken
    assert saves == [("save_env", ENV, *GRUB_WRITES)]
    assert ("insmod", "loadenv") in machine.events
    # A variable the whitelist leaves out, even one GRUB reads itself, is not set from the block.
    files = {ENV: grubenv.render({"root": "(hd9)", "prefix": "/evil", "herd_default": "B"})}
    machine = run_grub(files)
    assert "prefix" not in machine.vars and "root" not in machine.vars
    assert_boots(machine, Slot.B)


def test_nothing_set_before_the_entry_changes_what_it_does() -> None:
    """GRUB's variables from grub.cfg are visible in a menu entry; the fragment sets every one it reads."""
    stale = {"herd_default": "B", "herd_try": "B", "herd_tries": "3", "herd_slot": "B", "herd_other": "B"}
    for files in ({}, {ENV: block(bootcount.initial())}, {ENV: grubenv.blank()}):
        machine = Grub(dict(files), vars=dict(stale))
        machine.run(SCRIPT)
        assert_boots(machine, Slot.A)
        assert machine.files == files


def test_the_slots_partitions_by_partuuid_and_the_files_elsewhere() -> None:
    config = SlotBoot(usr=grubcfg.usr_by_partuuid("0b1a2c3d-02", "0b1a2c3d-03"), cmdline="root=PARTUUID=0b1a2c3d-05 ro",
                      env_file="/EFI/herd/grubenv", files="/EFI/herd", fs_uuid="ABCD-1234")
    state = bootcount.initial().stage(Slot.B, "2026.12.0")
    machine = run_grub({"/EFI/herd/grubenv": block(state)}, script=parse_script(grubcfg.render(config)))
    assert_boots(machine, Slot.B, config)
    assert machine.booted() == ("/EFI/herd/B/vmlinuz",
                                ["root=PARTUUID=0b1a2c3d-05", "ro", "mount.usr=PARTUUID=0b1a2c3d-03",
                                 "mount.usrfstype=squashfs", "herd.slot=B"], "/EFI/herd/B/initrd.img")
    assert machine.events.index(("search", "ABCD-1234")) < [e[0] for e in machine.events].index("load_env")


def test_grubs_own_parser_accepts_it(tmp_path: Path) -> None:
    check = shutil.which("grub-script-check") or "/usr/bin/grub-script-check"
    assert Path(check).exists(), "grub-script-check (Debian package grub-common) is needed, as for any build"
    configs = [CONFIG, SlotBoot(usr=grubcfg.usr_by_partuuid("0b1a2c3d-02", "0b1a2c3d-03"), cmdline="ro",
                                fs_uuid="0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6")]
    for n, config in enumerate(configs):
        path = tmp_path / f"grub{n}.cfg"
        path.write_text(grubcfg.menuentry("herd demo web 2026.12.0", config))
        result = subprocess.run([check, str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_kernel_learns_its_slot() -> None:
    assert grubcfg.booted_slot("BOOT_IMAGE=/herd/B/vmlinuz ro herd.slot=B quiet") is Slot.B
    assert grubcfg.booted_slot("ro herd.slot=A herd.slot=B") is Slot.B  # the last one, as the kernel reads it
    assert grubcfg.booted_slot("root=PARTUUID=x ro") is None              # an image from before the slots
    assert grubcfg.booted_slot("herd.slot=C") is None
    assert grubcfg.booted_slot("xherd.slot=A") is None


@pytest.mark.parametrize(("change", "message"), [
    ({"usr": {Slot.A: "PARTLABEL=usr-a"}}, "one device for each"),
    ({"usr": {Slot.A: "PARTLABEL=usr-a", Slot.B: "PARTLABEL=usr b"}}, "slot B's /usr"),
    ({"usr": {Slot.A: "PARTLABEL=usr-a", Slot.B: "PARTLABEL=${x}"}}, "slot B's /usr"),
    ({"cmdline": "ro quiet;reboot"}, "kernel argument"),
    ({"cmdline": 'ro "x"'}, "kernel argument"),
    ({"cmdline": "ro init=$x"}, "kernel argument"),
    ({"cmdline": "ro herd.slot=A"}, "added per slot"),
    ({"cmdline": "ro mount.usr=/dev/sda3"}, "added per slot"),
    ({"env_file": "herd/grubenv"}, "absolute path"),
    ({"files": "/herd dir"}, "absolute path"),
    ({"fs_uuid": "ABCD-1234; reboot"}, "fs_uuid"),
])
def test_what_could_break_the_script_is_refused(change: dict[str, object], message: str) -> None:
    fields = {"usr": grubcfg.usr_by_partlabel(), "cmdline": "ro", **change}
    with pytest.raises(ValueError, match=message):
        SlotBoot(**fields)  # type: ignore[arg-type]

"""Booting an image in QEMU (TCG: no KVM here), reading its serial console, and pulling its cables."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..netns.harness import terminate

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]")


@dataclass
class Boot:
    way: str
    console: str
    match: re.Match[str] | None
    seconds: float

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.console.splitlines() if re.search(pattern, line)]


class VM:
    """way: "bios" (SeaBIOS, virtio disk), "uefi" (OVMF, virtio disk) or "usb" (SeaBIOS, USB stick on xHCI).
    Each MAC in `macs` is a virtio NIC on QEMU's user network with restrict=on: it reaches nothing outside."""

    def __init__(self, image: Path, way: str, workdir: Path, macs: list[str], taps: list[str] | None = None,
                 netns: str | None = None, persistent: bool = False, disks: list[Path] | None = None,
                 background: bool = False) -> None:
        """persistent: the VM writes to `image` itself (a stick of its own, kept across power cycles);
        otherwise its writes go to a throw-away overlay. disks: more disks (virtio: /dev/vdb, …), kept.
        background: the VM runs at the lowest CPU priority (nice 19) until `foreground()`: a box booting beside
        VMs that serve gets what CPU they leave. Two guests booting under TCG otherwise starve the serving ones
        on two cores (a survivor paused for up to a second, again and again): a test's timing would measure the
        emulation, not herd."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "serial.log"
        self.log.unlink(missing_ok=True)
        self.monitor_path = workdir / "monitor.sock"
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1", "-display", "none",
                "-monitor", f"unix:{self.monitor_path},server,nowait", "-no-reboot", "-serial", f"file:{self.log}"]
        if way == "uefi":
            vars_copy = workdir / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_copy)
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        argv += ["-device", "qemu-xhci,id=xhci"]  # USB ports: the boot stick, or sticks plugged in later
        if way == "usb":
            argv += ["-drive", f"if=none,id=stick,format=raw,file={image}",
                     "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0"]
        else:
            argv += ["-drive", f"if=virtio,format=raw,file={image}" + ("" if persistent else ",snapshot=on")]
        for disk in disks or []:
            argv += ["-drive", f"if=virtio,format=raw,file={disk}"]
        for i, mac in enumerate(macs):
            # A tap (on a bridge in a namespace the test made) or user networking that reaches nothing.
            netdev = f"tap,id=n{i},ifname={taps[i]},script=no,downscript=no" if taps else f"user,id=n{i},restrict=on"
            argv += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=n{i},mac={mac}"]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        if not macs:
            argv += ["-nic", "none"]
        self.start = time.monotonic()
        self.background = background
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=(workdir / "qemu.err").open("w"),
                                     preexec_fn=_lowest_priority if background else None)

    def foreground(self) -> None:
        """Back to the CPU priority of every other VM (all of QEMU's threads: the vCPU's, the I/O ones)."""
        if not self.background:
            return
        self.background = False
        try:
            tasks = os.listdir(f"/proc/{self.proc.pid}/task")
        except FileNotFoundError:
            return  # already gone
        for tid in tasks:
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, int(tid), 0)

    def console(self) -> str:
        return ANSI.sub("", self.log.read_text(errors="replace")) if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match[str] | None:
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            match = regex.search(self.console())
            if match or self.proc.poll() is not None:
                return match
            time.sleep(1)
        return None

    def monitor(self, command: str) -> str:
        """Run a QEMU monitor command; its reply (empty when all went well, for most commands)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(self.monitor_path))
            _read_to_prompt(sock)  # the greeting
            sock.sendall(command.encode() + b"\n")
            reply = _read_to_prompt(sock)
        # The monitor echoes the command line (with terminal escapes) before its reply.
        lines = ANSI.sub("", reply).replace("\r", "").split("\n")
        return "\n".join(line for line in lines[1:] if line.strip()).strip()

    def plug_stick(self, name: str, path: Path, removable: bool, read_bps: int = 0, write_bps: int = 0) -> None:
        """Plug a USB stick (`path`, a raw file) into the running VM, as a user does; the *_bps throttle it
        to a slow stick's speed."""
        throttle = "".join(f",throttling.bps-{way}={bps}" for way, bps in (("read", read_bps), ("write", write_bps))
                           if bps)
        for command in (f"drive_add 0 if=none,id=drive-{name},format=raw,file={path}{throttle}",
                        f"device_add usb-storage,bus=xhci.0,drive=drive-{name},id={name},"
                        f"removable={'on' if removable else 'off'}"):
            reply = self.monitor(command)
            assert reply in ("", "OK"), f"{command}: {reply}"

    def unplug(self, name: str) -> None:
        """Pull a stick out (even in the middle of a write)."""
        reply = self.monitor(f"device_del {name}")
        assert reply == "", reply

    def stop(self) -> None:
        terminate(self.proc)


def _lowest_priority() -> None:
    """In QEMU's process, before exec: nice 19, which every thread it starts inherits."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)


def _read_to_prompt(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"(qemu) "):
        more = sock.recv(4096)
        if not more:
            break
        data += more
    return data.decode(errors="replace").removesuffix("(qemu) ")


def boot(image: Path, way: str, workdir: Path, wait_for: str, mac: str | None, timeout: float = 300) -> Boot:
    vm = VM(image, way, workdir, [mac] if mac else [])
    try:
        match = vm.wait_for(wait_for, timeout)
    finally:
        vm.stop()
    return Boot(way, vm.console(), match, time.monotonic() - vm.start)

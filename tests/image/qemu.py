"""Booting an image in QEMU (TCG: no KVM here) and waiting for a line on its serial console."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Boot:
    way: str
    console: str
    match: re.Match[str] | None
    seconds: float

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.console.splitlines() if re.search(pattern, line)]


def boot(image: Path, way: str, workdir: Path, wait_for: str, mac: str | None, timeout: float = 300) -> Boot:
    """way: "bios" (SeaBIOS, virtio disk), "uefi" (OVMF, virtio disk) or "usb" (SeaBIOS, USB stick on xHCI)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "serial.log"
    log.unlink(missing_ok=True)
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1", "-display", "none",
            "-monitor", "none", "-no-reboot", "-serial", f"file:{log}"]
    if way == "uefi":
        vars_copy = workdir / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_copy)
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    if way == "usb":
        argv += ["-device", "qemu-xhci,id=xhci",
                 "-drive", f"if=none,id=stick,format=raw,file={image}",
                 "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0"]
    else:
        argv += ["-drive", f"if=virtio,format=raw,file={image},snapshot=on"]
    if mac:
        # restrict=on: the guest reaches nothing outside the VM.
        argv += ["-netdev", "user,id=n0,restrict=on", "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]
    else:
        argv += ["-nic", "none"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=(workdir / "qemu.err").open("w"))
    pattern = re.compile(wait_for)
    match = None
    text = ""
    try:
        while time.monotonic() - start < timeout:
            if log.exists():
                text = ANSI.sub("", log.read_text(errors="replace"))
                match = pattern.search(text)
                if match:
                    break
            if proc.poll() is not None:
                break
            time.sleep(1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log.exists():
        text = ANSI.sub("", log.read_text(errors="replace"))
    return Boot(way, text, match, time.monotonic() - start)

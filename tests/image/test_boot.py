"""Every role's image boots in QEMU three ways and herdd comes up on it."""

from __future__ import annotations

import re

import pytest

from herd.spec import Role

from .conftest import STICK_EXTRA, WAYS, Build
from .qemu import Boot


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_boots_to_herdd_ready(role: Role, way: str, build: Build, boots: dict[tuple[Role, str], Boot]) -> None:
    result = boots[(role, way)]
    assert result.match, f"no `herd: … ready` line within {result.seconds:.0f} s; console tail:\n" + \
        "\n".join(result.console.splitlines()[-40:])
    name, seen_role = result.match.groups()
    # The NIC carries the MAC of this role's last node in the spec: herdd must have recognised it.
    assert (name, seen_role) == (build.spec.nodes_of(role)[-1].name, role.value)
    assert "Kernel panic" not in result.console


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_firmware_and_bus(role: Role, boots: dict[tuple[Role, str], Boot]) -> None:
    """The three ways really differ: the kernel saw EFI only under OVMF, and under "usb" its root was a USB
    mass-storage disk (sd*), not the virtio disk (vd*) of the other two."""
    uefi, bios, usb = (boots[(role, w)] for w in ("uefi", "bios", "usb"))
    assert uefi.lines(r"efi: EFI v\d")
    assert not bios.lines(r"efi: EFI v\d") and not usb.lines(r"efi: EFI v\d")
    assert bios.lines(r"DMI: .*BIOS \d+\.\d+")  # SeaBIOS's version (OVMF reports 0.0.0)
    assert usb.lines(r"usb-storage .*USB Mass Storage device detected")
    assert usb.lines(r"herd-growroot: /dev/sd[a-z]3 ")
    assert bios.lines(r"herd-growroot: /dev/vda3 ") and uefi.lines(r"herd-growroot: /dev/vda3 ")


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_root_grows_to_fill_the_stick(role: Role, boots: dict[tuple[Role, str], Boot]) -> None:
    usb = boots[(role, "usb")]
    lines = usb.lines(r"herd-growroot: \S+ from \d+ to \d+ bytes")
    assert lines, "growroot did not report on the console"
    before, after = map(int, re.search(r"from (\d+) to (\d+)", lines[0]).groups())  # type: ignore[union-attr]
    assert after - before >= STICK_EXTRA - 2 * 1024 * 1024

"""Every role's image boots in QEMU, half of them through OVMF (UEFI) from a virtio disk and half through
SeaBIOS (BIOS) from an emulated USB stick (conftest.BOOTS), and herdd comes up on it. (SeaBIOS from a virtio
disk is how the labs boot every role.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from herd.spec import Role

from .conftest import BOOTS, STICK_EXTRA, Build, boot_node
from .qemu import VM, Boot

ROLES = pytest.mark.parametrize("role", list(Role), ids=[f"{r.value}-{BOOTS[r]}" for r in Role])
USB = pytest.mark.parametrize("role", [r for r in Role if BOOTS[r] == "usb"], ids=lambda r: r.value)


@ROLES
def test_boots_to_herdd_ready(role: Role, build: Build, boots: dict[tuple[Role, str], Boot]) -> None:
    result = boots[(role, BOOTS[role])]
    assert result.match, f"no `herd: … ready` line within {result.seconds:.0f} s; console tail:\n" + \
        "\n".join(result.console.splitlines()[-40:])
    name, seen_role = result.match.groups()
    # The NIC carries the MAC of this role's last node in the spec: herdd must have recognised it.
    assert (name, seen_role) == (boot_node(build.spec, role).name, role.value)
    assert "Kernel panic" not in result.console


@ROLES
def test_firmware_and_bus(role: Role, boots: dict[tuple[Role, str], Boot]) -> None:
    """The two ways really differ: the kernel saw EFI only under OVMF, the BIOS was SeaBIOS under "usb", and
    there its root was a USB mass-storage disk (sd*), not the virtio disk (vd*)."""
    result = boots[(role, BOOTS[role])]
    if BOOTS[role] == "uefi":
        assert result.lines(r"efi: EFI v\d")
        assert result.lines(r"herd-growroot: /dev/vda4 ")
    else:
        assert not result.lines(r"efi: EFI v\d")
        assert result.lines(r"DMI: .*BIOS \d+\.\d+")  # SeaBIOS's version (OVMF reports 0.0.0)
        assert result.lines(r"usb-storage .*USB Mass Storage device detected")
        assert result.lines(r"herd-growroot: /dev/sd[a-z]4 ")


@USB
def test_root_grows_to_fill_the_stick(role: Role, boots: dict[tuple[Role, str], Boot]) -> None:
    usb = boots[(role, "usb")]
    lines = usb.lines(r"herd-growroot: \S+ from \d+ to \d+ bytes")
    assert lines, "growroot did not report on the console"
    before, after = map(int, re.search(r"from (\d+) to (\d+)", lines[0]).groups())  # type: ignore[union-attr]
    assert after - before >= STICK_EXTRA - 2 * 1024 * 1024


@ROLES
def test_herdd_configures_the_network(role: Role, build: Build, boots: dict[tuple[Role, str], Boot]) -> None:
    node = boot_node(build.spec, role)
    prefix = build.spec.network.subnet.prefixlen
    result = boots[(role, BOOTS[role])]
    assert result.lines(rf"network: AddAddress\(name='\w+', address='{node.address}/{prefix}'\)")
    assert result.lines(rf"network: SetGateway\(gateway='{build.spec.network.gateway}'\)")


def test_two_nics_are_bonded_and_survive_a_pulled_cable(build: Build, tmp_path: Path) -> None:
    """With two wired NICs herdd makes an active-backup bond; pulling the active one's cable moves traffic
    to the other. The Debian kernel has bonding (the host's has not: this runs in QEMU)."""
    node = build.spec.nodes_of(Role.WEB)[0]
    assert node.mac is not None
    vm = VM(build.images[Role.WEB], "bios", tmp_path, [node.mac, "52:54:00:ff:00:01"])
    try:
        ready = vm.wait_for(r"herd: (\S+) web ready", 300)
        assert ready and ready.group(1) == node.name, vm.console()[-3000:]
        console = vm.console()
        assert "network: CreateBond(name='bond0')" in console
        assert len(re.findall(r"network: Enslave\(nic='(\w+)', bond='bond0'\)", console)) == 2
        assert re.search(rf"network: AddAddress\(name='bond0', address='{node.address}/", console)
        active = vm.wait_for(r"bond0: \(slave (\w+)\): making interface the new active one", 30)
        assert active, console[-3000:]
        first = active.group(1)
        vm.monitor("set_link n0 off")  # the first NIC's cable
        switched = vm.wait_for(rf"bond0: \(slave (?!{first})(\w+)\): making interface the new active one", 30)
        assert switched, vm.console()[-3000:]
    finally:
        vm.stop()

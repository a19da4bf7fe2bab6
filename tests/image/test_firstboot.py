"""What herdd does for a freshly flashed box (issue: identity at first boot), checked on the lab's VMs: the
host name is the node's, and SSH host keys and machine-id were made on the box, so two boxes flashed from
the same image never share them; herdd runs from the packages the build unpacked."""

from __future__ import annotations

import json

from herd.release import parse

from .lab import Lab


def test_each_box_made_its_own_name_keys_and_machine_id(lab: Lab) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for name in ("web1", "web2"):
        assert lab.ssh(name, "hostname").strip() == name
        assert lab.ssh(name, "cat /etc/hostname").strip() == name
        machine_id = lab.ssh(name, "cat /etc/machine-id").strip()
        assert len(machine_id) == 32
        host_key = lab.ssh(name, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        assert lab.ssh(name, "ls /etc/ssh | grep ^ssh_host_").split() == [
            "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
        identity = lab.ssh(name, "cat /var/lib/herd/identity.json")
        how = f"claimed by {lab.macs[name]}" if name in lab.macs else "mac"  # web2's box claimed its slot
        assert json.loads(identity) == {"name": name, "role": "web", "how": how}
        seen[name] = (machine_id, host_key)
        # herdd runs from the packages the build unpacked; a box never unpacks (or half-writes) them itself.
        unpacked = lab.ssh(name, "ls /usr/lib/herd/shiv; ls /var/lib/herd").split()
        assert [u for u in unpacked if u.startswith("herdd.pyz_")] and "shiv" not in unpacked, unpacked
    assert seen["web1"][0] != seen["web2"][0], "same machine-id on two boxes of one image"
    assert seen["web1"][1] != seen["web2"][1], "same SSH host key on two boxes of one image"


def test_usr_is_the_read_only_squashfs_and_nothing_failed_for_it(lab: Lab) -> None:
    """The initramfs mounted /usr (its own partition, a squashfs) before init ran; nothing on a running node
    writes there, and no unit failed because it could not."""
    for name in ("db1", "web1", "nfs1", "dir1"):
        fstype, options, source = lab.ssh(name, "findmnt -no FSTYPE,OPTIONS,SOURCE /usr").split()
        assert fstype == "squashfs" and "ro" in options.split(","), (name, fstype, options)
        assert lab.ssh(name, f"lsblk -no PARTLABEL {source}").strip() == "usr"
        assert "Read-only file system" in lab.ssh(name, "touch /usr/x 2>&1 || true")
        failed = lab.ssh(name, "systemctl list-units --failed --plain --no-legend").strip()
        assert not failed, f"{name}: failed units: {failed}"


def test_every_node_reports_the_release_its_image_was_built_as(lab: Lab) -> None:
    """`--release` (here the spec's) is in /etc/herd/release and in what herdd says, so an operator can tell
    which boxes still run an older stick."""
    release = lab.build.spec.release
    for name in ("dir1", "web1", "nfs1", "db1"):
        fields = parse(lab.ssh(name, "cat /etc/herd/release"))
        assert fields["RELEASE"] == release and fields["CLUSTER"] == lab.build.spec.name, (name, fields)
        node = lab.build.spec.node_named(name)
        assert node is not None and fields["ROLE"] == node.role.value, (name, fields)
        assert lab.status(name)["release"] == release, name
        title = lab.ssh(name, "herdctl status").splitlines()[0]
        assert f"release {release}" in title, (name, title)

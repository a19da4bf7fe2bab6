"""One docroot for every web node, in the lab (lab.py): the nfs VM exports it (seeded with the example site),
the web VMs mount it (web1, up before it, when it appears), and a file written on the nfs node is served by
every web node at once."""

from __future__ import annotations

import secrets

from ..netns.harness import wait_for
from .lab import Lab

WEB = {"web1": "192.168.50.21", "web2": "192.168.50.22"}
UP_FIRST = "web1"  # ready before nfs1 boots (lab.VM_NODES); web2 boots beside nfs1


def test_the_nfs_node_exports_the_docroot_to_the_subnet_only(lab: Lab) -> None:
    assert lab.vms["nfs1"].wait_for(r"herd: exporting /srv/herd/www \(seeded with the example site\)", 120)
    exports = lab.ssh("nfs1", "exportfs -v")
    assert "/srv/herd/www" in exports and str(lab.build.spec.network.subnet) in exports
    assert "root_squash" in exports and "no_root_squash" not in exports


def test_web_nodes_up_first_mount_the_docroot_when_the_nfs_node_appears(lab: Lab) -> None:
    for name in WEB:
        vm = lab.vms[name]
        assert vm.wait_for(r"herd: docroot mounted from nfs1:/srv/herd/www", 120), vm.console()[-3000:]
        if name == UP_FIRST:  # it was ready, serving its local page, before the mount
            console = vm.console()
            assert console.index(f"herd: {name} web ready") < console.index("herd: docroot mounted")
        assert "192.168.50.31:/srv/herd/www /var/www/html nfs4" in lab.ssh(name, "cat /proc/mounts")
        assert "It works: herd" in lab.fetch_text("/", address_of(name))


def test_a_file_written_on_the_nfs_node_is_served_by_every_web_node_at_once(lab: Lab) -> None:
    token = secrets.token_hex(8)
    lab.ssh("nfs1", f"echo {token} > /srv/herd/www/hello.txt")
    for name in WEB:
        wait_for(lambda name=name: lab.fetch("/hello.txt", 1, host=address_of(name)) == [token], 5, every=0.2,
                 what=f"{name} serves the new file")


def address_of(name: str) -> str:
    return WEB[name]

"""The example spec edited the ways several tests need (a second db node, a second nfs node, a web slot left to
be claimed): one copy of each edit, for every tier."""

from __future__ import annotations

import re

# The box the labs boot as web2 when the spec leaves web2's MAC out: a MAC no spec lists, so at first boot it
# claims the free web slot (the only one) instead of finding itself by its MAC.
CLAIMER = {"web2": "52:54:00:99:00:02"}

DB2 = '\n[[node]]\nname = "db2"\nrole = "db"\naddress = "192.168.50.42"\nmac = "52:54:00:50:00:42"\n'


def with_second_db(text: str) -> str:
    assert text.count("\n[access]") == 1
    return text.replace("\n[access]", DB2 + "\n[access]")


def with_second_nfs(text: str) -> str:
    """nfs2 beside nfs1, the NFS service address, a data disk: the docroot replicated with DRBD."""
    nfs2 = DB2.replace("db2", "nfs2").replace('"db"', '"nfs"').replace("50.42", "50.32").replace("00:42", "00:32")
    assert text.count("[nfs]\n") == 1
    text = text.replace("[nfs]\n", '[nfs]\naddress = "192.168.50.30"\ndisk = "/dev/vdb"\n')
    return text.replace("\n[access]", nfs2 + "\n[access]")


def two_of_each(text: str) -> str:
    """Two db nodes (Galera, garbd on the directors) and two nfs nodes (DRBD)."""
    return with_second_nfs(with_second_db(text))


def with_web2_claimed(text: str) -> str:
    """web2 without its `mac`: the box that boots with CLAIMER's MAC claims that slot at first boot."""
    text, n = re.subn(r'(name = "web2"\nrole = "web"\naddress = "[0-9.]+"\n)mac = "[0-9a-f:]+"\n', r"\1", text)
    assert n == 1, "the example's web2 block is not as expected"
    return text

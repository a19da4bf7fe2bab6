"""The example spec edited the ways several tests need (a second db node, a second nfs node): one copy of each
edit, for every tier."""

from __future__ import annotations

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

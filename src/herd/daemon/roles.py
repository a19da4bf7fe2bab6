"""What herdd does for a node's role beyond membership: the nfs node's export, the web nodes' docroot.
Small, idempotent steps, each safe to repeat; run off the event loop (they wait on disks and servers)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil

DOCROOT = Path("/var/www/html")
SITE = Path("/usr/share/herd/site")  # the example site, in the nfs image
MOUNT_OPTIONS = "vers=4.2,soft,timeo=30,retrans=2,lookupcache=positive,actimeo=1"
# Replicated storage: hard, so a failover (seconds) pauses Apache and the writers instead of failing them; the
# client reconnects to the service address, now on the other node, and reclaims its open files.
HARD_MOUNT_OPTIONS = "vers=4.2,hard,timeo=50,retrans=3,lookupcache=positive,actimeo=1"


def mounts(proc_mounts: Path = Path("/proc/mounts")) -> dict[str, tuple[str, str]]:
    """mount point -> (source, fs type)."""
    out = {}
    for line in proc_mounts.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out[parts[1].replace("\\040", " ")] = (parts[0], parts[2])
    return out


def docroot_source(docroot: Path = DOCROOT) -> str | None:
    source, fstype = mounts().get(str(docroot), ("", ""))
    return source if fstype.startswith("nfs") else None


def mount_docroot(server: str, export: str, docroot: Path = DOCROOT, hard: bool = False) -> str | None:
    """Mount the nfs node's export on the docroot unless it is already; returns an error or None."""
    wanted = f"{server}:{export}"
    if docroot_source(docroot) == wanted:
        return None
    docroot.mkdir(parents=True, exist_ok=True)
    options = HARD_MOUNT_OPTIONS if hard else MOUNT_OPTIONS
    r = subprocess.run(["mount", "-t", "nfs", "-o", options, wanted, str(docroot)], capture_output=True,
                       text=True, timeout=30)
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


def prepare_export(export: Path, site: Path = SITE) -> bool:
    """Create the export; seed it with the example site when it is empty. Then (re)export. Returns whether
    the site was copied."""
    export.mkdir(parents=True, exist_ok=True)
    seeded = False
    if site.is_dir() and not any(export.iterdir()):
        shutil.copytree(site, export, dirs_exist_ok=True)
        seeded = True
    if shutil.which("exportfs"):
        subprocess.run(["exportfs", "-ra"], capture_output=True, timeout=30)
    return seeded


def role_health(role: str) -> dict[str, Any]:
    """Is the role's engine up? Read cheaply (process table, /proc): this rides on every heartbeat."""
    names = {p.info["name"] for p in psutil.process_iter(["name"])}
    if role == "web":
        return {"apache": "apache2" in names, "docroot": docroot_source() or "local"}
    if role == "nfs":
        try:
            threads = int(Path("/proc/fs/nfsd/threads").read_text().strip() or 0)
        except (OSError, ValueError):
            threads = 0
        return {"nfsd": threads}
    if role == "db":
        return {"mariadb": bool({"mariadbd", "mysqld"} & names)}
    return {}


# -- db ---------------------------------------------------------------------------------------------------

def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def database_sql(databases: list[tuple[str, str, str]], subnet: str) -> str:
    """SQL that makes each (database, user, password) exist as the spec says; safe to run again and again.
    Users may connect from the cluster's subnet only."""
    import ipaddress

    network, _, _ = subnet.partition("/")
    mask = str(ipaddress.IPv4Network(subnet).netmask)
    lines = []
    for name, user, password in databases:
        account = f"{sql_string(user)}@{sql_string(f'{network}/{mask}')}"
        lines += [
            f"CREATE DATABASE IF NOT EXISTS `{name}`;",
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {sql_string(password)};",
            f"ALTER USER {account} IDENTIFIED BY {sql_string(password)};",
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO {account};",
        ]
    return "\n".join(lines) + "\n"


def apply_database_sql(sql: str) -> str | None:
    """Run it as MariaDB's root over the local socket (unix_socket auth: no password anywhere). The SQL, with
    its passwords, goes through stdin, never the command line or a log."""
    if not Path("/run/mysqld/mysqld.sock").exists():
        return "MariaDB is not up yet"
    r = subprocess.run(["mariadb", "--batch"], input=sql, capture_output=True, text=True, timeout=60)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["mariadb failed"])[-1]


def php_db_config(host: str, databases: list[tuple[str, str, str]]) -> str:
    entries = ",\n".join(f"        {sql_string(name)} => ['user' => {sql_string(user)}, "
                         f"'password' => {sql_string(password)}]" for name, user, password in databases)
    return (f"<?php\n// Written by herdd: how this cluster's web pages reach their databases.\n"
            f"return [\n    'host' => {sql_string(host)},\n    'databases' => [\n{entries},\n    ],\n];\n")


def write_web_db_config(text: str, path: Path = Path("/etc/herd/db.php")) -> bool:
    """Readable by Apache (group www-data), by nobody else."""
    import contextlib
    import grp
    import os

    from herd.daemon.state import write_atomic

    if path.exists() and path.read_text() == text:
        return False
    write_atomic(path, text.encode(), 0o640)
    with contextlib.suppress(KeyError):  # no www-data: not a web image (tests)
        os.chown(path, 0, grp.getgrnam("www-data").gr_gid)
    return True

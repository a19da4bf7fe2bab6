"""The spec's small sections: [cluster] (the name the nodes' host names are made of, and the release that names
the files), [debian], [image], [access] and [[database]]. Each parser reads its table with the spec's reader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from herd.spec.model import DEBIAN_SECURITY, Database, Debian, Image, Role
from herd.spec.reader import HOST_NAME, Reader

# Matched with fullmatch(): `$` also matches before a final newline.
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
HOST_NAME_MAX = 64  # Linux's longest host name (sethostname(2))
# The host names the overlay makes of the cluster's name: every image's /etc/hostname (`{cluster}-{role}`,
# overlay/common/etc/hostname.j2) and, with two nfs nodes, the host name rpc.nfsd starts under
# (`herd-{cluster}-nfs`, overlay/nfs/etc/systemd/system/nfs-server.service.d/herd.conf.j2).
CLUSTER_HOST_NAMES = (*(f"{{cluster}}-{role.value}" for role in Role), "herd-{cluster}-nfs")
CLUSTER_NAME_MAX = HOST_NAME_MAX - max(len(form.format(cluster="")) for form in CLUSTER_HOST_NAMES)


def valid_release(release: str) -> bool:
    return bool(_RELEASE.fullmatch(release))


def parse_cluster(r: Reader, data: Mapping[str, Any]) -> tuple[str, str]:
    """[cluster]: its name and release."""
    cluster = r.table(data, "cluster", {"name", "release"})
    name = r.get(cluster, "cluster", "name", str, "", required=True) or ""
    if name and not HOST_NAME.fullmatch(name):
        r.fail("cluster.name", f"{name!r} must be lower-case letters, digits and '-' (a host name)")
    elif len(name) > CLUSTER_NAME_MAX:
        longest = max(CLUSTER_HOST_NAMES, key=len).format(cluster=name)
        r.fail("cluster.name", f"{name!r} is {len(name)} characters; the nodes' host names are made of it "
               f"({longest!r} is {len(longest)}, over Linux's {HOST_NAME_MAX}): use at most {CLUSTER_NAME_MAX}")
    release = r.value(cluster, "cluster", "release", str, "0.1.0")
    if not valid_release(release):
        r.fail("cluster.release", f"{release!r} must be letters, digits and . _ + - (it names files)")
    return name, release


def parse_debian(r: Reader, data: Mapping[str, Any]) -> Debian:
    deb = r.table(data, "debian", {"suite", "arch", "mirror", "security"})
    security: str | None = DEBIAN_SECURITY
    if deb.get("security") is False:
        security = None  # an explicit choice: the build warns about it every time
    elif "security" in deb and not isinstance(deb["security"], str):
        r.fail("debian.security", f"must be the security archive's URL (Debian's: {DEBIAN_SECURITY!r}), or false "
               f"to build without security updates; got {deb['security']!r}")
    elif "security" in deb:
        security = deb["security"]
    debian = Debian(
        suite=r.get(deb, "debian", "suite", str, "bookworm") or "bookworm",
        arch=r.get(deb, "debian", "arch", str, "amd64") or "amd64",
        mirror=r.get(deb, "debian", "mirror", str, Debian.mirror) or Debian.mirror,
        security=security,
    )
    if debian.arch != "amd64":
        r.fail("debian.arch", f"{debian.arch!r} is not supported; herd builds amd64 images")
    # Written into the images' apt sources and handed to debootstrap: one URL, one word.
    for key, url in (("mirror", debian.mirror), ("security", debian.security)):
        if url is not None and not re.fullmatch(r"(https?|file)://[\x21-\x7e]+", url):
            r.fail(f"debian.{key}", f"{url!r} must be an http://, https:// or file:// URL")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", debian.suite):
        r.fail("debian.suite", f"{debian.suite!r} is not a Debian suite name like bookworm")
    return debian


MiB = 2**20
GiB = 2**30
IMAGE_SIZE_MAX = 64 * GiB  # sparse, but hashed and compressed whole at every build
_SIZE = re.compile(r"([1-9][0-9]{0,6}|0)\s*(MiB|GiB)")


def parse_image(r: Reader, data: Mapping[str, Any]) -> Image:
    r.table(data, "image", {"min_size"})
    raw = r.get(data, "image", "min_size", str)
    if raw is None:
        return Image()
    size = _SIZE.fullmatch(raw.strip())
    if size is None:
        r.fail("image.min_size", f"{raw!r} is not a size: write whole MiB or GiB, such as \"1800MiB\" or \"4GiB\" "
               "(\"0MiB\": as small as the tree allows)")
        return Image()
    value = int(size.group(1)) * (GiB if size.group(2) == "GiB" else MiB)
    if value > IMAGE_SIZE_MAX:
        r.fail("image.min_size", f"{raw!r} is over {IMAGE_SIZE_MAX // GiB} GiB; the root grows to fill the stick at "
               "first boot anyway: use a smaller size")
        return Image()
    return Image(min_size=value)


def parse_access(r: Reader, data: Mapping[str, Any]) -> list[Any]:
    """[access]: the SSH keys root logs in with (each checked; the list as given)."""
    access = r.table(data, "access", {"ssh_keys"})
    keys: list[Any] = r.get(access, "access", "ssh_keys", list, []) or []
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", key) or "\n" in key:
            r.fail(f"access.ssh_keys[{i}]", "is not an OpenSSH public key line (`ssh-ed25519 AAAA… comment`)")
    return keys


_SQL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# MariaDB's own schemas: the app user gets ALL on `name`.*, which on one of these makes it the server's superuser
# (any SQL injection in a page could then grant itself anything).
RESERVED_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


def parse_databases(r: Reader, items: list[Any]) -> list[Database]:
    out: list[Database] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        p = f"database[{i}]"
        if not isinstance(item, dict):
            r.fail(p, "must be a table ([[database]])")
            continue
        r.table(item, p, {"name", "user"})
        name = r.get(item, p, "name", str, required=True)
        user = r.get(item, p, "user", str, name)
        for key, value in (("name", name), ("user", user)):
            if value is not None and not _SQL_NAME.fullmatch(value):
                r.fail(f"{p}.{key}", f"{value!r} must be lower-case letters, digits and _ (at most 32)")
        if name in RESERVED_DATABASES:
            r.fail(f"{p}.name", f"{name!r} is MariaDB's own schema (the app user would get ALL on it, and so "
                   "the whole server): use a name of the site's own, like \"site\"")
            name = None
        if name is not None and name in seen:
            r.fail(f"{p}.name", f"{name!r} is already database[{seen[name]}]")
        if name is not None and user is not None:
            seen.setdefault(name, i)
            out.append(Database(name, user))
    return out

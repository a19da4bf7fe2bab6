"""The spec's [site] section: off-site failover through DNS (its model is herd.spec.model's Site). No dnspython
here: the builder validates specs too, and needs nothing of DNS."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from herd.spec.model import Failback, Network, Service, Site, SiteRole
from herd.spec.reader import Reader, ipv4_text

_SITE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# What the builder installs in /etc/herd on every image (the TSIG secret must not take one of their places).
HERD_FILES = frozenset(f"/etc/herd/{name}" for name in ("cluster.key", "cluster.toml", "release", "role",
                                                        "db.php", "growroot.conf"))
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
_SITE_KEYS = {"name", "role", "names", "zone", "server", "port", "ttl", "key_name", "key_algorithm", "key_file",
              "main", "backup", "interval", "down_seconds", "up_seconds", "failback"}


def _dns_name(r: Reader, path: str, value: str | None) -> str | None:
    if value is None:
        return None
    name = value.lower().rstrip(".")
    if not _DNS_NAME.fullmatch(name):  # fullmatch: `$` would take a final newline
        r.fail(path, f"{value!r} is not a DNS name like www.example.com")
        return None
    return name


def parse_site(r: Reader, data: Mapping[str, Any], network: Network, services: list[Service]) -> Site | None:
    p = "site"
    r.table(data, p, _SITE_KEYS)
    before = len(r.problems)
    name = r.get(data, p, "name", str, required=True)
    if name is not None and not _SITE_NAME.fullmatch(name):
        r.fail(f"{p}.name", f"{name!r} must be lower-case letters, digits and '-'")
    role = r.enum(data, p, "role", SiteRole, None)
    if role is None and "role" not in data:
        r.fail(f"{p}.role", 'missing; add `role = "main"` or `role = "backup"` here')
    zone = _dns_name(r, f"{p}.zone", r.get(data, p, "zone", str, required=True))
    names: list[str] = []
    raw_names = r.get(data, p, "names", list, required=True)
    if raw_names is not None and not raw_names:
        r.fail(f"{p}.names", 'is empty; list the public names to move, e.g. ["www.example.com"]')
    for i, value in enumerate(raw_names or []):
        key = f"{p}.names[{i}]"
        if not isinstance(value, str):
            r.fail(key, f"must be a string, got {type(value).__name__} {value!r}")
            continue
        fqdn = _dns_name(r, key, value)
        if fqdn is not None and zone is not None and not (fqdn == zone or fqdn.endswith("." + zone)):
            r.fail(key, f"{fqdn!r} is not inside site.zone {zone!r}; an update can only change its own zone")
        elif fqdn is not None:
            names.append(fqdn)
    server = r.convert(f"{p}.server", r.get(data, p, "server", str, required=True), ipaddress.IPv4Address,
                       "an IPv4 address (the zone's authoritative server)")
    port = r.value(data, p, "port", int, 53)
    if not 1 <= port <= 65535:
        r.fail(f"{p}.port", f"{port} is not a port number (1-65535)")
    ttl = r.value(data, p, "ttl", int, 60)
    if not 1 <= ttl <= 86400:
        r.fail(f"{p}.ttl", f"{ttl} must be 1-86400 seconds; resolvers keep the old answer this long")
    key_name = _dns_name(r, f"{p}.key_name", r.get(data, p, "key_name", str, required=True))
    algorithm = r.value(data, p, "key_algorithm", str, "hmac-sha256")
    if algorithm not in TSIG_ALGORITHMS:
        r.fail(f"{p}.key_algorithm", f"{algorithm!r} is not one of: {', '.join(TSIG_ALGORITHMS)}")
    key_file = r.value(data, p, "key_file", str, "/etc/herd/site.tsig")
    # The builder writes the secret at this path in the director image: on one of herd's own files it would
    # replace the cluster key or spec (the builder also refuses any path the image already has: /etc/shadow…).
    parts = key_file.split("/")
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", key_file) or any(part in (".", "..") for part in parts):
        r.fail(f"{p}.key_file", f"{key_file!r} must be an absolute path of plain names (the TSIG secret, made by "
               "tsig-keygen), like /etc/herd/site.tsig")
    elif key_file in HERD_FILES:
        r.fail(f"{p}.key_file", f"{key_file} is one of herd's own files; use another name, like /etc/herd/site.tsig")
    main: list[ipaddress.IPv4Address] = []
    for i, value in enumerate(r.get(data, p, "main", list, []) or []):
        addr = r.convert(f"{p}.main[{i}]", value, ipv4_text, "an IPv4 address in quotes")
        if addr is not None:
            main.append(addr)
    if role == SiteRole.BACKUP and "main" not in data:
        r.fail(f"{p}.main", "missing; a backup site probes the main site: add `main = [\"<its public VIP>\"]`")
    elif role == SiteRole.BACKUP and not r.get(data, p, "main", list, []):
        r.fail(f"{p}.main", "is empty; list the main site's public address(es)")
    backup = r.convert(f"{p}.backup", r.get(data, p, "backup", str), ipaddress.IPv4Address, "an IPv4 address")
    if backup is None and "backup" not in data:
        backup = network.vip
    if role == SiteRole.BACKUP and backup is not None and backup in main:
        r.fail(f"{p}.backup", f"{backup} is also in site.main; the backup must be another address")
    interval = r.value(data, p, "interval", float, 1.0)
    if interval <= 0:
        r.fail(f"{p}.interval", "must be a positive number of seconds")
    down = r.value(data, p, "down_seconds", float, 10.0)
    up = r.value(data, p, "up_seconds", float, 60.0)
    for key, value in (("down_seconds", down), ("up_seconds", up)):
        if interval > 0 and value < 2 * interval:
            r.fail(f"{p}.{key}", f"{value:g} must be at least 2 x site.interval ({2 * interval:g}), "
                   "or one lost probe moves the site")
    failback = r.enum(data, p, "failback", Failback, Failback.AUTO)
    if role == SiteRole.BACKUP and not services:
        r.fail(f"{p}.role", "a backup site probes the main site's services; add a [[service]] to probe")
    if len(r.problems) > before or name is None or role is None or zone is None or server is None \
            or key_name is None or backup is None:
        return None
    return Site(name=name, role=role, names=tuple(names), zone=zone, server=server, port=port, ttl=ttl,
                key_name=key_name, key_algorithm=algorithm, key_file=key_file, main=tuple(main), backup=backup,
                interval=interval, down_seconds=down, up_seconds=up, failback=failback)

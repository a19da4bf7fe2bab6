"""A real bind9 in a network namespace: the authoritative server of a test zone, taking RFC 2136 updates signed
with a TSIG key made by tsig-keygen. It runs in the foreground (-g) with everything under one directory."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .harness import terminate

NAMED_CONF = """\
options {{
    directory "{work}";
    pid-file none;
    session-keyfile none;
    managed-keys-directory "{work}";
    listen-on port 53 {{ {address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
}};
controls {{ }};
include "{work}/tsig.key";
zone "{zone}" {{
    type primary;
    file "{work}/{zone}.zone";
    update-policy {{ grant {key} zonesub A; }};
}};
"""
ZONE = """\
$TTL {ttl}
@    IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 3600 {ttl}
@    IN NS  ns.{zone}.
ns   IN A   {address}
{records}"""


def tsig_keygen(name: str, algorithm: str = "hmac-sha256") -> str:
    """A `key "name" { algorithm …; secret "…"; };` clause, as bind and herdd both read it."""
    return subprocess.run(["tsig-keygen", "-a", algorithm, name], capture_output=True, text=True,
                          check=True).stdout


class Bind:
    def __init__(self, ns: str, address: str, work: Path, zone: str, key_name: str, key_clause: str,
                 records: dict[str, str], ttl: int) -> None:
        self.ns, self.address, self.work, self.zone = ns, address, work, zone
        work.mkdir(parents=True, exist_ok=True)
        (work / "tsig.key").write_text(key_clause)
        (work / "named.conf").write_text(NAMED_CONF.format(work=work, address=address, zone=zone, key=key_name))
        lines = "".join(f"{name} IN A {addr}\n" for name, addr in records.items())
        (work / f"{zone}.zone").write_text(ZONE.format(zone=zone, ttl=ttl, address=address, records=lines))
        self.log = work / "named.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        subprocess.run(["named-checkconf", str(self.work / "named.conf")], check=True, capture_output=True)
        with open(self.log, "ab") as log:
            # As root without -u: the files are root's and stay in the test's directory.
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "named", "-g", "-c",
                                          str(self.work / "named.conf")], stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 20
        while "running" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"named did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def updates(self) -> list[str]:
        """named's log lines for every update it applied (one per record added)."""
        return [line for line in self.log.read_text().splitlines() if "updating zone" in line and "adding" in line]

    def refusals(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines()
                if "request has invalid signature" in line or "update failed" in line or "denied" in line]

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

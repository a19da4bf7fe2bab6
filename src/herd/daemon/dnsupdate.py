"""The DNS side of site failover, with dnspython: where do the names point (a query to the authoritative server),
and point them elsewhere (an RFC 2136 update signed with TSIG, then the same query to check the server took
it). Blocking calls: herdd runs them in a thread. Errors come back as one line of text for the status and the
log; the TSIG secret is never part of one."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update

from herd.daemon.site import Target
from herd.spec import Site

TIMEOUT = 3.0
_SECRET = re.compile(r'secret\s+"([^"]+)"')


class DnsError(Exception):
    """Why a lookup or update failed, in words fit for `herdctl status`."""


@dataclass(frozen=True)
class Zone:
    """What herdd needs to talk to the authoritative server, from the spec's [site]."""

    site: Site

    @property
    def main(self) -> tuple[str, ...]:
        return tuple(str(a) for a in self.site.main)

    @property
    def backup(self) -> tuple[str, ...]:
        return (str(self.site.backup),)

    def addresses(self, target: Target) -> tuple[str, ...]:
        return self.main if target == Target.MAIN else self.backup


def read_key(site: Site) -> dns.tsig.Key:
    """The TSIG key from site.key_file: the bare base64 secret, or tsig-keygen's output (a named.conf `key`
    clause), so one file serves bind and herd. Read at every use: a new key needs no restart."""
    path = Path(site.key_file)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise DnsError(f"{path}: cannot read the TSIG key: {getattr(exc, 'strerror', None) or exc}") from None
    found = _SECRET.search(text)
    secret = found.group(1) if found else text.strip()
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise DnsError(f"{path}: the TSIG secret is not base64 (make one with tsig-keygen)") from None
    if not raw:
        raise DnsError(f"{path}: the TSIG secret is empty")
    return dns.tsig.Key(site.key_name, raw, site.key_algorithm)


def answers(site: Site, name: str, timeout: float = TIMEOUT) -> set[str]:
    """The A records the authoritative server gives for name (over TCP: no truncation, no spoofed UDP)."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    response = _send(site, query, timeout)
    if response.rcode() == dns.rcode.NXDOMAIN:
        return set()
    if response.rcode() != dns.rcode.NOERROR:
        raise DnsError(f"query for {name}: the server answers {dns.rcode.to_text(response.rcode())}")
    found: set[str] = set()
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.A:
            found.update(rdata.address for rdata in rrset)
    return found


def where(zone: Zone, timeout: float = TIMEOUT) -> Target:
    """Where every name points: MAIN or BACKUP when all of them agree with that site's addresses."""
    seen = {frozenset(answers(zone.site, name, timeout)) for name in zone.site.names}
    for target in (Target.MAIN, Target.BACKUP):
        if seen == {frozenset(zone.addresses(target))}:
            return target
    return Target.OTHER


def publish(zone: Zone, target: Target, timeout: float = TIMEOUT) -> None:
    """Point every name at target's addresses in one signed update (all names or none), then check the
    server answers with them."""
    site, addresses = zone.site, zone.addresses(target)
    update = dns.update.UpdateMessage(site.zone, keyring=read_key(site))
    for name in site.names:
        update.replace(dns.name.from_text(name), site.ttl, dns.rdatatype.A, *addresses)
    response = _send(site, update, timeout)
    if response.rcode() != dns.rcode.NOERROR:
        raise DnsError(f"update refused: {dns.rcode.to_text(response.rcode())}{_tsig_error(response)}")
    for name in site.names:
        got = answers(site, name, timeout)
        if got != set(addresses):
            raise DnsError(f"update accepted, but the server answers {name} -> {', '.join(sorted(got)) or 'nothing'}"
                           f", not {', '.join(addresses)}")


def _send(site: Site, message: dns.message.Message, timeout: float) -> dns.message.Message:
    where_to = f"{site.server}:{site.port}"
    try:
        return dns.query.tcp(message, str(site.server), port=site.port, timeout=timeout)
    except dns.tsig.PeerError as exc:
        # The server rejected our signature and said so, unsigned: a wrong key, name or algorithm, or clock.
        why = _PEER_ERRORS.get(type(exc), _describe(exc))
        raise DnsError(f"{where_to} refused the TSIG key {site.key_name!r}: {why}") from None
    except dns.exception.Timeout:
        raise DnsError(f"{where_to}: no answer in {timeout:g} s") from None
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        raise DnsError(f"{where_to}: {_describe(exc)}") from None


_PEER_ERRORS = {
    dns.tsig.PeerBadSignature: "BADSIG, the secret differs from the server's (site.key_file)",
    dns.tsig.PeerBadKey: "BADKEY, the server has no key of that name and algorithm (site.key_name, key_algorithm)",
    dns.tsig.PeerBadTime: "BADTIME, this node's clock is more than 5 minutes off the server's",
}


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text[:1].isupper() else text[:1].upper() + text[1:]


def _tsig_error(response: dns.message.Message) -> str:
    error = int(getattr(response, "tsig_error", 0))
    return f" (TSIG {dns.rcode.to_text(dns.rcode.Rcode(error))})" if error else ""

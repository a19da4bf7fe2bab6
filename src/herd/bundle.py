"""Signed update bundles: a release for one role in one file, `<cluster>-<role>-<release>.bundle`, beside its
image, with a detached signature by the release key, `<cluster>-<role>-<release>.bundle.sig`.

A bundle is an uncompressed tar (POSIX ustar) of regular files, in a fixed order, each owned by root and stamped
with the release's SOURCE_DATE_EPOCH, so two builds of one release are the same bytes:

    bundle.json       the manifest: format, cluster, role, release, version, kernel, herd version, epoch, and
                      every part below with its size, sha256 and mode, in the tar's order
    usr.squashfs      the slot's /usr (zstd inside already)
    vmlinuz           the kernel
    initrd.img        its initramfs
    config/<path>     the release's config tree: each file the overlay renders (/etc, /boot/grub/grub.cfg,
                      /root/.ssh/authorized_keys) and /etc/herd's spec, role, release and release-signers; never
                      the cluster key nor [site]'s TSIG secret (what a node holds stays on it), nor what is in
                      /usr (the squashfs has it)

What the release key signs is the manifest (`ssh-keygen -Y sign -n herd-release`, an SSHSIG over its sha512),
and the manifest holds the sha256 of every part. So a node checks the signature, the cluster, the role and the
version from the tar's first member, a few KiB, before it reads hundreds of MiB (or, later, receives them), and
then hashes each part as it reads it: a part that differs from the manifest, one missing, or anything else in the
tar, and the bundle is refused. By hand:

    tar -xOf X.bundle bundle.json | ssh-keygen -Y verify -f /etc/herd/release-signers \\
        -I herd-release -n herd-release -s X.bundle.sig

The release key is an ed25519 key of the build host's, never the cluster key: every node holds that one, and one
stolen stick would then sign releases for the whole cluster. Its public half is in every image, as an
allowed_signers line in /etc/herd/release-signers (`signer_line`).

Reads files and runs one program (ssh-keygen, through `check_signature`, which the builder replaces with its
own runner); no builder imports: herdd uses this on the nodes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from herd.release import Version, version_text

FORMAT = 1
NAMESPACE = "herd-release"  # ssh-keygen -Y's namespace: a signature made for another purpose never passes
PRINCIPAL = "herd-release"  # the name the allowed_signers line gives the release key
MANIFEST = "bundle.json"
SLOT_PARTS = ("usr.squashfs", "vmlinuz", "initrd.img")
CONFIG = "config"
SIGNERS = Path("/etc/herd/release-signers")  # in every image
MAX_MANIFEST = 4 * 2**20  # bytes; the example's are 10 KiB
CHUNK = 4 * 2**20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODE = re.compile(r"0[0-7]{3}")
_PUBLIC = re.compile(r"ssh-ed25519 [A-Za-z0-9+/]+={0,2}")


class BundleError(Exception):
    """A bundle a node must refuse; the message says which and why."""


class BadSignature(BundleError):
    pass


class WrongTarget(BundleError):
    """Another cluster's or another role's bundle."""


class OlderRelease(BundleError):
    pass


class DamagedBundle(BundleError):
    """Not what its signed manifest says: a part that differs, is missing or is extra; an unreadable tar."""


@dataclass(frozen=True)
class Part:
    name: str    # usr.squashfs, vmlinuz, initrd.img or config/<path relative to the root>
    size: int
    sha256: str
    mode: int    # the file's mode in the image (0644, 0755, 0600)


@dataclass(frozen=True)
class Manifest:
    cluster: str
    role: str
    release: str
    version: Version
    kernel: str
    herd_version: str
    source_date_epoch: int
    parts: tuple[Part, ...]
    format: int = FORMAT

    def to_json(self) -> bytes:
        data = {
            "format": self.format, "cluster": self.cluster, "role": self.role, "release": self.release,
            "version": list(self.version), "kernel": self.kernel, "herd_version": self.herd_version,
            "source_date_epoch": self.source_date_epoch,
            "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256, "mode": f"{p.mode:04o}"}
                      for p in self.parts],
        }
        return (json.dumps(data, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """The manifest, or DamagedBundle saying what is wrong with it (each field is checked: it is signed, but
        a node trusts no more of it than it must)."""
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DamagedBundle(f"{MANIFEST} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DamagedBundle(f"{MANIFEST} is not a JSON object")
        if data.get("format") != FORMAT:
            raise DamagedBundle(f"{MANIFEST} is of format {data.get('format')!r}; this herd reads format {FORMAT}")
        fields = {"format": int, "cluster": str, "role": str, "release": str, "version": list, "kernel": str,
                  "herd_version": str, "source_date_epoch": int, "parts": list}
        _fields(data, fields, MANIFEST)
        version = data["version"]
        if not version or not all(_whole(n) for n in version):
            raise DamagedBundle(f"{MANIFEST}: version must be a list of whole numbers, got {version!r}")
        parts = tuple(_part(p, i) for i, p in enumerate(data["parts"]))
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise DamagedBundle(f"{MANIFEST}: a part is listed twice")
        if [n for n in names if n in SLOT_PARTS] != list(SLOT_PARTS):
            raise DamagedBundle(f"{MANIFEST}: the parts must include {', '.join(SLOT_PARTS)} (in that order)")
        return cls(data["cluster"], data["role"], data["release"], tuple(version), data["kernel"],
                   data["herd_version"], data["source_date_epoch"], parts)

    def config(self) -> list[Part]:
        return [p for p in self.parts if p.name.startswith(CONFIG + "/")]


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _fields(data: dict[str, Any], fields: dict[str, type], where: str) -> None:
    if set(data) != set(fields):
        odd = sorted(set(data) ^ set(fields))
        raise DamagedBundle(f"{where}: expected the fields {', '.join(fields)}; {', '.join(odd)} missing or extra")
    for key, kind in fields.items():
        value = data[key]
        if not isinstance(value, kind) or (kind is int and not _whole(value)):
            raise DamagedBundle(f"{where}: {key} must be a {'whole number' if kind is int else kind.__name__}, "
                                f"got {value!r}")


def config_name(path: PurePosixPath) -> str:
    """A config file's part name, from its path relative to the root."""
    return f"{CONFIG}/{path}"


def _safe_name(name: str) -> bool:
    """One of the slot's parts, or config/ and a plain relative path: no `..`, `.`, empty or absolute component
    (the slot work will write config files to the root by these names)."""
    if name in SLOT_PARTS:
        return True
    parts = name.split("/")
    return (len(parts) >= 2 and parts[0] == CONFIG and all(p not in ("", ".", "..") for p in parts)
            and name.isprintable() and "\\" not in name)


def _part(data: object, index: int) -> Part:
    where = f"{MANIFEST}: parts[{index}]"
    if not isinstance(data, dict):
        raise DamagedBundle(f"{where} is not an object")
    _fields(data, {"name": str, "size": int, "sha256": str, "mode": str}, where)
    if not _safe_name(data["name"]):
        raise DamagedBundle(f"{where}: {data['name']!r} is not a part's name")
    if not _SHA256.fullmatch(data["sha256"]):
        raise DamagedBundle(f"{where}: sha256 {data['sha256']!r} is not 64 lower-case hex digits")
    if not _MODE.fullmatch(data["mode"]):
        raise DamagedBundle(f"{where}: mode {data['mode']!r} is not a file's mode like 0644 (no setuid bits)")
    return Part(data["name"], data["size"], data["sha256"], int(data["mode"], 8))


def public_key(line: str) -> str:
    """`ssh-ed25519 BASE64` from a public key line (its comment dropped), or ValueError."""
    fields = line.split()
    key = " ".join(fields[:2])
    if not _PUBLIC.fullmatch(key):
        raise ValueError(f"not an ed25519 public key: {line.strip()[:60]!r}")
    return key


def signer_line(public: str) -> str:
    """The allowed_signers line (ssh-keygen(1), ALLOWED SIGNERS) that makes `public` the release key, for herd
    releases only."""
    return f'{PRINCIPAL} namespaces="{NAMESPACE}" {public_key(public)}'


# ---------------------------------------------------------------------------------------------------------
# Writing (the builder)

Source = Path | bytes


def part_of(name: str, source: Source, mode: int) -> Part:
    """A part's entry, its sha256 read from the file (or the bytes)."""
    if isinstance(source, bytes):
        return Part(name, len(source), hashlib.sha256(source).hexdigest(), mode)
    h = hashlib.sha256()
    size = 0
    with open(source, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return Part(name, size, h.hexdigest(), mode)


def _info(name: str, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, mode, mtime, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write(out: IO[bytes], manifest: Manifest, sources: Sequence[Source]) -> None:
    """The bundle into `out`: the manifest, then each part's bytes from `sources` (in the manifest's order),
    stamped with the manifest's source_date_epoch."""
    if len(sources) != len(manifest.parts):
        raise ValueError("one source per part")
    mtime = manifest.source_date_epoch
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = manifest.to_json()
        tar.addfile(_info(MANIFEST, len(data), 0o644, mtime), io.BytesIO(data))
        for part, source in zip(manifest.parts, sources, strict=True):
            info = _info(part.name, part.size, part.mode, mtime)
            if isinstance(source, bytes):
                tar.addfile(info, io.BytesIO(source))
            else:
                with open(source, "rb") as f:
                    tar.addfile(info, f)


# ---------------------------------------------------------------------------------------------------------
# Checking (every node, and the builder on what it wrote)

SignatureCheck = Callable[[bytes, Path, Path], None]  # (message, signature file, allowed_signers); raises


def ssh_keygen_verify(message: bytes, signature: Path, allowed_signers: Path) -> None:
    """BadSignature unless `signature` is a good signature of `message` by a key of `allowed_signers` for
    herd releases."""
    r = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed_signers), "-I", PRINCIPAL,
                        "-n", NAMESPACE, "-s", str(signature)], input=message, capture_output=True, timeout=60)
    if r.returncode != 0:
        said = " ".join((r.stderr + r.stdout).decode(errors="replace").split())
        raise BadSignature(f"ssh-keygen: {said or f'exit code {r.returncode}'}")


def read_manifest(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.next()
    if member is None or member.name != MANIFEST or not member.isreg():
        raise DamagedBundle(f"{name}: its first member is not {MANIFEST}: not a herd bundle")
    if member.size > MAX_MANIFEST:
        raise DamagedBundle(f"{name}: its {MANIFEST} is {member.size} bytes, more than a manifest can be")
    f = tar.extractfile(member)
    assert f is not None  # a regular file
    return f.read()


def check_parts(tar: tarfile.TarFile, manifest: Manifest, name: str) -> None:
    """Each remaining member is the manifest's next part (name, regular file, size, sha256), and nothing
    follows the last."""
    for part in manifest.parts:
        member = tar.next()
        if member is None:
            raise DamagedBundle(f"{name}: {part.name} is missing (the bundle ends before it)")
        if member.name != part.name or not member.isreg():
            raise DamagedBundle(f"{name}: found {member.name!r} where the manifest has {part.name}")
        if member.size != part.size:
            raise DamagedBundle(f"{name}: {part.name} is {member.size} bytes, the manifest says {part.size}")
        f = tar.extractfile(member)
        assert f is not None
        h = hashlib.sha256()
        while chunk := f.read(CHUNK):
            h.update(chunk)
        if h.hexdigest() != part.sha256:
            raise DamagedBundle(f"{name}: {part.name} differs from the signed manifest (sha256 {h.hexdigest()}, "
                                f"the manifest says {part.sha256})")
    extra = tar.next()
    if extra is not None:
        raise DamagedBundle(f"{name}: {extra.name!r} is not in the manifest")


def verify(bundle: Path, signature: Path, allowed_signers: Path, cluster: str, role: str, running: Version,
           allow_older: str | None = None, check_signature: SignatureCheck = ssh_keygen_verify) -> Manifest:
    """The bundle's manifest once every check has passed, in this order: the manifest is signed by the release
    key (`allowed_signers`); it is this cluster's and this role's; its version is not older than `running`
    (the running release's) unless `allow_older` names its release: the operator asked for that release by
    name; then every part is whole. Otherwise a BundleError saying why: BadSignature, WrongTarget,
    OlderRelease, DamagedBundle."""
    name = bundle.name
    try:
        with open(bundle, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            raw = read_manifest(tar, name)
            try:
                check_signature(raw, signature, allowed_signers)
            except BadSignature as exc:
                raise BadSignature(f"{name}: {signature.name} is not the release key's signature of this "
                                   f"bundle's manifest ({exc}); refused") from None
            try:
                manifest = Manifest.from_json(raw)
            except DamagedBundle as exc:
                raise DamagedBundle(f"{name}: {exc}") from None
            if manifest.cluster != cluster:
                raise WrongTarget(f"{name} is a bundle of cluster {manifest.cluster!r}, not of {cluster!r}")
            if manifest.role != role:
                raise WrongTarget(f"{name} is a bundle for {manifest.role} nodes, not for {role} nodes")
            if manifest.version < running and allow_older != manifest.release:
                version = version_text(manifest.version)
                shown = manifest.release if version == manifest.release else f"{manifest.release} (version {version})"
                raise OlderRelease(f"{name}: release {shown} is older than the running release's version "
                                   f"{version_text(running)}; to go back to it, ask for release {manifest.release} "
                                   "by name")
            check_parts(tar, manifest, name)
    except (tarfile.TarError, EOFError) as exc:
        raise DamagedBundle(f"{name}: not a readable tar: {exc}") from None
    return manifest

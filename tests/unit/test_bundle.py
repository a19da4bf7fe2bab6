"""Update bundles (herd.bundle) from a small fake slot, signed with OpenSSH's `ssh-keygen -Y sign` as the builder
does: a good bundle passes; a bad signature, another cluster's or role's bundle, an older release (unless named),
a part or manifest changed after signing, anything missing or extra in the tar are each refused with their
reason. Two writes of the same parts are the same bytes."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from herd import bundle
from herd.bundle import (
    BadSignature,
    DamagedBundle,
    Manifest,
    OlderRelease,
    Part,
    WrongTarget,
    part_of,
    signer_line,
    verify,
)

EPOCH = 1700000000
RUNNING = (2026, 11, 0)


@dataclass(frozen=True)
class Keys:
    release: Path
    other: Path
    signers: Path  # allowed_signers naming the release key's public half


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    public = keygen(folder / "release.key")
    keygen(folder / "other.key")
    signers = folder / "release-signers"
    signers.write_text(f"# the release key\n{signer_line(public)}\n")
    return Keys(folder / "release.key", folder / "other.key", signers)


def ssh_sign(key: Path, message: bytes, namespace: str = bundle.NAMESPACE) -> bytes:
    return subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", namespace, "-"], input=message,
                          capture_output=True, check=True).stdout


def slot(folder: Path, squashfs: bytes | None = None) -> list[tuple[str, bundle.Source, int]]:
    """A fake slot: the three parts as files (the squashfs not a whole number of tar blocks) and a config tree."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"usr.squashfs": squashfs if squashfs is not None else bytes(range(256)) * 801,
             "vmlinuz": b"\x7fkernel" * 1000, "initrd.img": b"070701initramfs" * 300}
    parts: list[tuple[str, bundle.Source, int]] = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        parts.append((name, folder / name, 0o644))
    parts += [("config/etc/herd/role", b"web\n", 0o644), ("config/etc/drbd.d/herd.res", b"secret\n", 0o600),
              ("config/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA me\n", 0o600)]
    return parts


def make(folder: Path, key: Path, cluster: str = "demo", role: str = "web", release: str = "2026.11.0",
         version: tuple[int, ...] = RUNNING, squashfs: bytes | None = None) -> tuple[Path, Path]:
    parts = slot(folder / "parts", squashfs)
    manifest = Manifest(cluster, role, release, version, "6.1.0-28-amd64", "0.1.0", EPOCH,
                        tuple(part_of(name, source, mode) for name, source, mode in parts))
    path = folder / f"{cluster}-{role}-{release}.bundle"
    with open(path, "wb") as f:
        bundle.write(f, manifest, [source for _, source, _ in parts])
    sig = path.with_name(path.name + ".sig")
    sig.write_bytes(ssh_sign(key, manifest.to_json()))
    return path, sig


def member_offset(path: Path, name: str) -> int:
    with tarfile.open(path) as tar:
        return tar.getmember(name).offset_data


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_a_good_bundle_passes(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release)
    manifest = verify(path, sig, keys.signers, "demo", "web", RUNNING)
    assert (manifest.cluster, manifest.role, manifest.release, manifest.version) == ("demo", "web", "2026.11.0",
                                                                                     RUNNING)
    assert [p.name for p in manifest.parts][:3] == list(bundle.SLOT_PARTS)
    assert [p.name for p in manifest.config()] == ["config/etc/herd/role", "config/etc/drbd.d/herd.res",
                                                   "config/root/.ssh/authorized_keys"]
    assert manifest.parts[0].size == 256 * 801
    # what `tar tf` shows: the manifest first, then the parts in the manifest's order, all regular files
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [bundle.MANIFEST, *(p.name for p in manifest.parts)]
    assert {(m.type, m.uid, m.gid, m.uname, m.mtime) for m in members} == {(tarfile.REGTYPE, 0, 0, "root", EPOCH)}
    assert {m.name: m.mode for m in members}["config/etc/drbd.d/herd.res"] == 0o600


def test_newer_and_equal_versions_pass(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release, release="2026.12.0", version=(2026, 12, 0))
    assert verify(path, sig, keys.signers, "demo", "web", RUNNING).release == "2026.12.0"
    assert verify(path, sig, keys.signers, "demo", "web", (2026, 12, 0)).release == "2026.12.0"  # a rebuild
    assert verify(path, sig, keys.signers, "demo", "web", ()).release == "2026.12.0"  # running: unknown


def test_a_changed_part_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release)
    flip(path, member_offset(path, "usr.squashfs") + 1000)
    with pytest.raises(DamagedBundle, match=r"usr\.squashfs differs from the signed manifest"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_a_changed_config_file_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release)
    flip(path, member_offset(path, "config/root/.ssh/authorized_keys") + 5)
    with pytest.raises(DamagedBundle, match=r"config/root/\.ssh/authorized_keys differs"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_a_changed_manifest_is_refused(tmp_path: Path, keys: Keys) -> None:
    """A byte of the manifest changed after signing; and a whole other squashfs with a manifest that names it,
    under the original signature."""
    path, sig = make(tmp_path, keys.release)
    flip(path, member_offset(path, bundle.MANIFEST) + 40)
    with pytest.raises(BadSignature, match=r"not the release key's signature of this bundle's manifest"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)
    good, good_sig = make(tmp_path / "good", keys.release)
    evil, _ = make(tmp_path / "evil", keys.other, squashfs=b"evil" * 5000)
    with pytest.raises(BadSignature):
        verify(evil, good_sig, keys.signers, "demo", "web", RUNNING)
    assert verify(good, good_sig, keys.signers, "demo", "web", RUNNING)


def test_a_signature_by_another_key_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.other)
    with pytest.raises(BadSignature, match="refused"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_a_signature_for_another_purpose_is_refused(tmp_path: Path, keys: Keys) -> None:
    """The release key's signature of the very manifest, made for another namespace (`-n file`), is no
    release signature."""
    path, sig = make(tmp_path, keys.release)
    with tarfile.open(path) as tar:
        f = tar.extractfile(bundle.MANIFEST)
        assert f is not None
        sig.write_bytes(ssh_sign(keys.release, f.read(), namespace="file"))
    with pytest.raises(BadSignature):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_a_missing_or_garbled_signature_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release)
    sig.write_text("-----BEGIN SSH SIGNATURE-----\nnonsense\n-----END SSH SIGNATURE-----\n")
    with pytest.raises(BadSignature):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)
    sig.unlink()
    with pytest.raises(BadSignature):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_another_clusters_bundle_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release, cluster="acme")
    with pytest.raises(WrongTarget, match="is a bundle of cluster 'acme', not of 'demo'"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_another_roles_bundle_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release, role="db")
    with pytest.raises(WrongTarget, match="is a bundle for db nodes, not for web nodes"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_an_older_release_is_refused_unless_asked_for_by_name(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release, release="2026.10.2", version=(2026, 10, 2))
    with pytest.raises(OlderRelease, match=r"release 2026\.10\.2 is older than the running release's version "
                                           r"2026\.11\.0; to go back to it, ask for release 2026\.10\.2 by name"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)
    with pytest.raises(OlderRelease):
        verify(path, sig, keys.signers, "demo", "web", RUNNING, allow_older="2026.10.1")  # another one's name
    assert verify(path, sig, keys.signers, "demo", "web", RUNNING, allow_older="2026.10.2").release == "2026.10.2"


def test_the_name_does_not_lift_the_other_checks(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.other, release="2026.10.2", version=(2026, 10, 2))
    with pytest.raises(BadSignature):
        verify(path, sig, keys.signers, "demo", "web", RUNNING, allow_older="2026.10.2")
    path, sig = make(tmp_path / "db", keys.release, role="db", release="2026.10.2", version=(2026, 10, 2))
    with pytest.raises(WrongTarget):
        verify(path, sig, keys.signers, "demo", "web", RUNNING, allow_older="2026.10.2")


def test_anything_missing_or_extra_in_the_tar_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release)
    whole = path.read_bytes()
    with tarfile.open(path) as tar:
        last = tar.getmembers()[-1]
    path.write_bytes(whole[:last.offset])  # the last part cut off, no end-of-archive blocks
    with pytest.raises(DamagedBundle, match=r"authorized_keys is missing|not a readable tar"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)
    path.write_bytes(whole[:last.offset_data + 3])  # cut inside it
    with pytest.raises(DamagedBundle):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)
    # one more member after the last part
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as out, \
            tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        for member in tar.getmembers():
            out.addfile(member, tar.extractfile(member))
        extra = tarfile.TarInfo("config/etc/cron.d/evil")
        extra.size = 4
        out.addfile(extra, io.BytesIO(b"evil"))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DamagedBundle, match=r"'config/etc/cron\.d/evil' is not in the manifest"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_a_file_that_is_no_bundle_is_refused(tmp_path: Path, keys: Keys) -> None:
    path, sig = make(tmp_path, keys.release)
    path.write_bytes(b"not a tar at all\n" * 100)
    with pytest.raises(DamagedBundle):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)
    with tarfile.open(path, "w") as tar:  # a tar whose first member is not the manifest
        info = tarfile.TarInfo("usr.squashfs")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DamagedBundle, match=r"its first member is not bundle\.json"):
        verify(path, sig, keys.signers, "demo", "web", RUNNING)


def test_two_writes_are_the_same_bytes(tmp_path: Path, keys: Keys) -> None:
    """Other folders, files made at another time with another umask: the same bundle, and the same signature (ed25519 is
    deterministic)."""
    first, first_sig = make(tmp_path / "a", keys.release)
    old = os.umask(0o077)
    try:
        second, second_sig = make(tmp_path / "b", keys.release)
    finally:
        os.umask(old)
    assert first.read_bytes() == second.read_bytes()
    assert first_sig.read_bytes() == second_sig.read_bytes()


# ---------------------------------------------------------------------------------------------------------
# The manifest


def manifest() -> Manifest:
    parts = tuple(Part(name, 1, "0" * 64, 0o644) for name in (*bundle.SLOT_PARTS, "config/etc/hosts"))
    return Manifest("demo", "web", "2026.11.0+rc1", (2026, 11, 0), "6.1", "0.1.0", EPOCH, parts)


def test_manifest_round_trip() -> None:
    m = manifest()
    assert Manifest.from_json(m.to_json()) == m
    assert b'"mode": "0644"' in m.to_json() and b'"version": [\n    2026,' in m.to_json()


@pytest.mark.parametrize(("change", "message"), [
    ({"format": 2}, "format 2; this herd reads format 1"),
    ({"release": 7}, "release must be a str"),
    ({"version": []}, "version must be a list of whole numbers"),
    ({"version": [1, -1]}, "version must be a list of whole numbers"),
    ({"source_date_epoch": True}, "source_date_epoch must be a whole number"),
    ({"signed_by": "me"}, "signed_by missing or extra"),
])
def test_manifest_fields_are_checked(change: dict[str, object], message: str) -> None:
    import json

    data = json.loads(manifest().to_json())
    data.update(change)
    with pytest.raises(DamagedBundle, match=message):
        Manifest.from_json(json.dumps(data).encode())


@pytest.mark.parametrize("name", ["config/../etc/shadow", "config//etc/x", "/etc/passwd", "config", "config/",
                                  "etc/hosts", "config/./x", "config/a\nb", "usr.squashfs2"])
def test_part_names_are_plain_paths_under_config(name: str) -> None:
    m = manifest()
    bad = replace(m, parts=(*m.parts, Part(name, 1, "0" * 64, 0o644)))
    with pytest.raises(DamagedBundle, match="is not a part's name"):
        Manifest.from_json(bad.to_json())


def test_modes_and_digests_are_checked() -> None:
    m = manifest()
    for part, message in ((Part("config/x", 1, "0" * 64, 0o4755), "no setuid"),
                          (Part("config/x", 1, "A" * 64, 0o644), "64 lower-case hex"),
                          (Part("vmlinuz", 1, "0" * 64, 0o644), "listed twice")):
        with pytest.raises(DamagedBundle, match=message):
            Manifest.from_json(replace(m, parts=(*m.parts, part)).to_json())
    with pytest.raises(DamagedBundle, match=r"must include usr\.squashfs, vmlinuz, initrd\.img"):
        Manifest.from_json(replace(m, parts=m.parts[1:]).to_json())


def test_signer_line() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2A107MAyW26catwE6ZrDa7oHyoueLSPZTgqpmoYInF"
    assert signer_line(key + " some comment\n") == f'herd-release namespaces="herd-release" {key}'
    assert signer_line(f"{key}\nherd-release {key}") == signer_line(key)  # one line whatever follows
    for bad in ("ssh-rsa AAAAB3NzaC1yc2E", "", "ssh-ed25519", "ssh-ed25519 AAAA$(reboot)"):
        with pytest.raises(ValueError):
            signer_line(bad)

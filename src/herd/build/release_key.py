"""The release key: an ed25519 key (OpenSSH's format, no passphrase) that signs every update bundle, made once
beside the spec (`<spec>.release.key`, 0600, like the cluster key) and reused by every later build; its private
half never leaves the build host, its public half goes into every image (/etc/herd/release-signers).

Not the cluster key: every node holds that one, so one stolen stick could sign releases for the whole cluster.
The public half is not written beside it: `ssh-keygen -y -f <spec>.release.key` prints it, and manifest.json
names it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from herd.build.run import CommandError, run
from herd.bundle import NAMESPACE, PRINCIPAL, BadSignature, public_key


class ReleaseKeyError(Exception):
    """A release key file the build cannot sign with (bad input: exit 2)."""


def public_half(path: Path) -> str:
    """`ssh-ed25519 BASE64` of the key at path; ReleaseKeyError for anything but an ed25519 private key without a
    passphrase (the build signs unattended)."""
    try:
        # -P '': a key with a passphrase fails here instead of asking for it.
        out = run(["ssh-keygen", "-y", "-P", "", "-f", path])
    except CommandError as exc:
        said = " ".join(exc.tail)
        raise ReleaseKeyError(f"--release-key: {path} is not a private key ssh-keygen can read without a "
                              f"passphrase ({said}); the release key is an ed25519 key without one "
                              f"(ssh-keygen -t ed25519 -N '' -f {path}), or delete it to make a new one") from None
    lines = [line for line in out.splitlines() if line.startswith("ssh-")]
    try:
        return public_key(lines[-1] if lines else out)
    except ValueError:
        raise ReleaseKeyError(f"--release-key: {path} is not an ed25519 key ({(lines or [out])[-1].split(' ')[0]}); "
                              "make one with ssh-keygen -t ed25519 -N '', or delete it to make a new one") from None


def release_key(path: Path, cluster: str) -> str:
    """Make the key at path if there is none (0600, whatever the umask); its public half either way."""
    if not os.path.lexists(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        for stale in (tmp, tmp.with_name(tmp.name + ".pub")):
            stale.unlink(missing_ok=True)
        try:
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"herd release key of {cluster}", "-f", tmp])
            os.chmod(tmp, 0o600)
            # Two first builds at once: the one that links first makes the key, and the other signs with it too.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_name(tmp.name + ".pub").unlink(missing_ok=True)
    return public_half(path)


def sign(key: Path, message: Path) -> bytes:
    """The SSHSIG signature (armoured text) of the file at message, made with key for herd releases."""
    signature = message.with_name(message.name + ".sig")
    signature.unlink(missing_ok=True)  # ssh-keygen would ask whether to overwrite it
    run(["ssh-keygen", "-Y", "sign", "-f", key, "-n", NAMESPACE, message])
    return signature.read_bytes()


def check_signature(message: bytes, signature: Path, allowed_signers: Path) -> None:
    """herd.bundle's signature check through the builder's runner: the build verifies each bundle it signs as
    a node will."""
    try:
        run(["ssh-keygen", "-Y", "verify", "-f", allowed_signers, "-I", PRINCIPAL, "-n", NAMESPACE,
             "-s", signature], input=message)
    except CommandError as exc:
        raise BadSignature(f"ssh-keygen: {' '.join(exc.tail)}") from None

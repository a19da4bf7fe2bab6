"""Running commands inside a root tree. All mounts (proc, sys, dev, the shared .deb cache) are made inside a
private mount namespace, so they disappear when the command ends, whether it succeeded, failed or was
killed; nothing is ever left mounted inside a tree that is about to be deleted."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from herd.build.intree import make_dirs, remove, write_file
from herd.build.plan import DEFAULT_EPOCH
from herd.build.run import OnLine, in_private_namespace, run

# SOURCE_DATE_EPOCH inside the chroot (update-initramfs, dpkg triggers, useradd…): a fixed one, since the trees
# made there are cached and shared by every cluster and release; the tree step clamps times to the build's own.
# PYTHONHASHSEED=0 too: the .pyc files packages compile when installed hold sets and frozensets in hash order,
# which a random seed changes from build to build.
TREE_EPOCH = DEFAULT_EPOCH
REPRODUCIBLE_ENV = {"SOURCE_DATE_EPOCH": str(TREE_EPOCH), "PYTHONHASHSEED": "0"}

# What `apt-get clean` would do to the tree, but not to the .deb cache: inside in_chroot(debs=…) the tree's
# /var/cache/apt/archives *is* the shared cache, and `apt-get clean` emptied it after every install, so every
# clean build downloaded every package again. Only apt's binary caches go (tens of MB, made again on use).
DROP_APT_CACHES = "rm -f /var/cache/apt/pkgcache.bin /var/cache/apt/srcpkgcache.bin"

_SETUP = r"""
set -eu
R="$1"; DEBS="$2"; ARCHIVES="$3"; EPOCH="$4"; shift 4
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
if [ -n "$DEBS" ]; then
    # Installing packages: the shared .deb cache (in_chroot made ARCHIVES and wrote the host's DNS).
    mkdir -p "$DEBS/partial"
    mount --bind "$DEBS" "$ARCHIVES"
fi
# Whatever the builder's own: files dpkg's maintainer scripts and herdd's unpacking make go into every image.
umask 022
chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true SOURCE_DATE_EPOCH="$EPOCH" \
    PYTHONHASHSEED=0 "$@"
"""

# Written into the tree by the host's root, so through herd.build.intree: a symlink planted at one of these paths,
# or on the way (usr/sbin/, etc/, var/cache/), must not make it write, make or remove a host file or folder.
POLICY_RC_D = PurePosixPath("usr/sbin/policy-rc.d")
NO_DAEMONS = b"#!/bin/sh\n# herd: packages must not start their daemons in the build tree.\nexit 101\n"
RESOLV_CONF = PurePosixPath("etc/resolv.conf")
ARCHIVES = PurePosixPath("var/cache/apt/archives")  # where the shared .deb cache is mounted


def in_chroot(tree: Path, debs: Path | None, script: str, on_line: OnLine | None = None) -> str:
    """Run script in the tree. With `debs`, set up for apt (the shared .deb cache, the host's DNS); without,
    the tree's own files are left exactly as they are (checking a finished tree's configs)."""
    archives = ""
    if debs is not None:
        debs.mkdir(parents=True, exist_ok=True)
        archives = str(make_dirs(tree, ARCHIVES))
        write_file(tree, RESOLV_CONF, Path("/etc/resolv.conf").read_bytes(), 0o644)  # the host's DNS
    argv = in_private_namespace(["sh", "-c", _SETUP, "herd-chroot", tree.resolve(), str(debs.resolve()) if debs else "",
                                 archives, str(TREE_EPOCH), "/bin/sh", "-euc", script])
    write_file(tree, POLICY_RC_D, NO_DAEMONS, 0o755)
    try:
        return run(argv, on_line=on_line)
    finally:
        remove(tree, POLICY_RC_D)


class AptProgress:
    """Turns apt's APT::Status-Fd lines into a fraction: downloads are the first 30 %, dpkg the rest."""

    def __init__(self) -> None:
        self.fraction = 0.0

    def feed(self, line: str) -> str | None:
        """Returns the text to show, and updates `fraction` from status lines."""
        kind, _, rest = line.partition(":")
        if kind not in ("dlstatus", "pmstatus"):
            return line
        parts = rest.split(":", 2)
        if len(parts) < 3:
            return None
        try:
            percent = float(parts[1])
        except ValueError:
            return None
        self.fraction = 0.3 * percent / 100 if kind == "dlstatus" else 0.3 + 0.7 * percent / 100
        return parts[2]

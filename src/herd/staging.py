"""A node takes a signed update bundle into its other slot, ready for the next boot to try it.

In this order, so that a power cut anywhere leaves the node booting what it ran, and never a half-written slot:
1. the bundle checked whole (herd.bundle.verify: the release key's signature, this cluster and role, not older
   than what runs unless asked for by name, every part's sha256), and the node's slots in a state to take it
   (it runs its default slot; a release that failed here is not taken again unless forced);
2. a try staged before but not begun withdrawn (its slot is about to be written again);
3. the other slot written: /usr only where it differs (slots.blockwrite), then read back and checked; the
   kernel, initramfs and the release's config files written and synced;
4. only then the try staged in GRUB's environment block (slots.bootcount.stage).

Side effects on paths handed in (a slot's /usr partition, its boot and config folders, the environment block),
so it runs the same against a real disk and against files in a test."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from herd.bundle import Manifest, SignatureCheck, ssh_keygen_verify, verify
from herd.daemon.state import write_atomic
from herd.release import Version
from herd.slots import grubenv
from herd.slots.blockwrite import Written, write_stream
from herd.slots.blockwrite import verify as verify_slot
from herd.slots.bootcount import Slot, State, from_env


class StagingError(Exception):
    """The node cannot take this bundle now (says why and what to do)."""


@dataclass(frozen=True)
class SlotPaths:
    usr: dict[Slot, Path]  # each slot's /usr partition (a block device on a node)
    boot: dict[Slot, Path]  # each slot's folder for vmlinuz and initrd.img, where GRUB reads them
    config: dict[Slot, Path]  # each slot's copy of the release's rendered configuration
    grubenv: Path


@dataclass(frozen=True)
class Node:
    cluster: str
    role: str
    running: Version  # the release it runs
    booted: Slot  # the slot on its kernel command line
    signers: Path  # /etc/herd/release-signers


@dataclass(frozen=True)
class Staged:
    manifest: Manifest
    slot: Slot
    usr: Written


def take(bundle: Path, signature: Path, node: Node, paths: SlotPaths, *, allow_older: str | None = None,
         force: bool = False, progress: Callable[[int, int], None] | None = None,
         check_signature: SignatureCheck = ssh_keygen_verify) -> Staged:
    """Write the bundle's release into the slot the node does not run and stage it for the next boot."""
    manifest = verify(bundle, signature, node.signers, node.cluster, node.role, node.running, allow_older,
                      check_signature)
    state = from_env(grubenv.read(paths.grubenv))
    if node.booted is not state.default:
        raise StagingError(f"this node runs slot {node.booted} while slot {state.default} is the default: the "
                           "try under way must be marked good or failed before another release is staged")
    if manifest.release in state.failures and not force:
        raise StagingError(f"release {manifest.release} failed on this node before; it is not taken again "
                           "unless forced")
    slot = state.default.other
    _write_env(paths.grubenv, state.unstage())
    written = _write_slot(bundle, manifest, slot, paths, progress)
    _write_env(paths.grubenv, from_env(grubenv.read(paths.grubenv)).stage(slot, manifest.release, force=force))
    return Staged(manifest, slot, written)


def _write_env(path: Path, state: State) -> None:
    grubenv.write(path, dict(state.env()))


def _write_slot(bundle: Path, manifest: Manifest, slot: Slot, paths: SlotPaths,
                progress: Callable[[int, int], None] | None) -> Written:
    parts = {p.name: p for p in manifest.parts}
    config = paths.config[slot]
    if config.exists():
        shutil.rmtree(config)  # the slot's previous release's files: none may linger into this one
    config.mkdir(parents=True)
    paths.boot[slot].mkdir(parents=True, exist_ok=True)
    written: Written | None = None
    with open(bundle, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            src = tar.extractfile(member) if member.isfile() else None
            if src is None or member.name not in parts:
                continue  # the manifest (checked already) and the signature's neighbours
            part = parts[member.name]
            if member.name == "usr.squashfs":
                written = write_stream(src, part.size, member.name, paths.usr[slot], progress)
            elif member.name in ("vmlinuz", "initrd.img"):
                write_atomic(paths.boot[slot] / member.name, src.read(), 0o644)
            else:
                rel = member.name.removeprefix("config/")
                write_atomic(config / rel, src.read(), part.mode)
    if written is None:
        raise StagingError(f"{bundle.name} has no usr.squashfs")
    usr = parts["usr.squashfs"]
    verify_slot(paths.usr[slot], usr.size, usr.sha256)
    return written

"""Which slot a node boots: a state machine kept in GRUB's environment block, changed by herdd and, at each
boot, by GRUB.

The state, as the block holds it (every value a plain string, for GRUB has no arithmetic):

    herd_default=A        the slot GRUB boots when no try is due: the fresh flash's A, then the last slot made good
    herd_try=B            the slot being tried, or empty; always the other slot than herd_default
    herd_tries=3          boots of herd_try left: "3", "2", "1", "0" (herdd sets MAX_TRIES or fewer; GRUB counts down)
    herd_good=A           the slot herdd has seen pass its role check: empty on a fresh flash, then herd_default
    herd_try_release=…    the release staged in herd_try, or empty
    herd_failed=…         releases that failed on this node, space-separated, oldest first (at most MAX_FAILED)

GRUB reads only the first three and writes only herd_tries; the rest are herdd's. One boot, as GRUB does it
(grub() here, and grubcfg renders it as GRUB script):

    slot = herd_default if it is "B" else "A"                      (A, a fresh flash's slot, when it is garbage)
    if herd_try is the other slot and herd_tries is "3", "2" or "1":
        herd_tries = "2", "1" or "0"; save_env herd_tries          (before `linux`)
        if that save succeeded: slot = herd_try                     (a try GRUB cannot count is not booted)
    boot slot

herdd's part, after each boot (outcome() says which case this is; the slot booted is on the kernel command line):
- TRYING: it runs the tried slot. Once the node has rejoined and its role check passes, mark_good(): the slot
  becomes the default. Until then nothing is written, so a crash, hang or power cut before it is a used try.
  A check that fails for good may call failed() at once (the next boot is the default), or leave the tries to
  run out.
- FELL_BACK: GRUB used up the tries and booted the default: failed() writes the release down, and stage()
  refuses it from then on unless forced, so a bad release is never retried in a loop.
- Staging a release: unstage() a try staged but not booted, write the other slot's /usr, kernel and initramfs
  (and sync them), then stage(). A power cut anywhere in that order leaves the default untouched and no try
  pointing at a half-written slot.

The one value GRUB writes, herd_tries, is always one character: its save, one digit for another, changes one
byte of the block and moves nothing. herdd's writes change more, but the whole state (MAX_FAILED releases of the
spec's longest name) fits in the block's first 512-byte sector, so no write of either tears across two sectors.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace


class Slot(enum.StrEnum):
    A = "A"
    B = "B"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A


MAX_TRIES = 3
TRIES = tuple(str(n) for n in range(MAX_TRIES, -1, -1))  # "3", "2", "1", "0": GRUB counts down through strings
COUNTDOWN = tuple(itertools.pairwise(TRIES))  # ("3", "2"), ("2", "1"), ("1", "0"): GRUB's one step at each boot
FALLBACK = Slot.A  # what GRUB boots when herd_default is neither A nor B: a fresh flash fills slot A
MAX_FAILED = 4  # failed releases remembered, the newest kept; with 64-character names the state fits 512 bytes

DEFAULT = "herd_default"
TRY = "herd_try"
TRIES_LEFT = "herd_tries"
GOOD = "herd_good"
RELEASE = "herd_try_release"
FAILED = "herd_failed"
ENV_NAMES = (DEFAULT, TRY, TRIES_LEFT, GOOD, RELEASE, FAILED)  # the order a new block holds them in
GRUB_READS = (DEFAULT, TRY, TRIES_LEFT)
GRUB_WRITES = (TRIES_LEFT,)

# A release name as the spec allows it (herd.spec.cluster: [cluster] release); no spaces, so herd_failed can
# list them.
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class SlotError(ValueError):
    """A state that cannot be, or an operation that the state does not allow."""


class Outcome(enum.StrEnum):
    STEADY = "steady"          # booted the default, nothing staged
    STAGED = "staged"          # booted the default, a try waits for the next boot (or GRUB could not count it)
    TRYING = "trying"          # booted the tried slot: check, then mark_good() or failed()
    FELL_BACK = "fell back"    # the tries ran out and GRUB booted the default: failed()
    UNEXPECTED = "unexpected"  # booted a slot the state does not explain (the block was changed or unreadable)


@dataclass(frozen=True)
class GrubBoot:
    """What GRUB does at one boot: the slot it boots, and what it saves before `linux` (empty: no write)."""
    slot: Slot
    saves: dict[str, str]


def grub(env: Mapping[str, str], *, saved: bool = True) -> GrubBoot:
    """One boot as GRUB's script does it, on the variables load_env found (a missing one is empty), whatever
    they hold. saved=False: the save_env failed (GRUB cannot write the block), so no try is booted."""
    slot = FALLBACK.other if env.get(DEFAULT, "") == FALLBACK.other.value else FALLBACK
    other = slot.other
    if env.get(TRY, "") == other.value:
        tries = env.get(TRIES_LEFT, "")
        for left, after in COUNTDOWN:
            if tries == left:
                if not saved:
                    return GrubBoot(slot, {})
                return GrubBoot(other, {TRIES_LEFT: after})
    return GrubBoot(slot, {})


@dataclass(frozen=True)
class Boot:
    slot: Slot                # the slot GRUB boots
    saves: dict[str, str]     # what it writes to the block before `linux`
    after: State              # the state the block then holds


@dataclass(frozen=True)
class State:
    """One node's slots, as its block holds them. Always: the tried slot is the other one; no try, no tries
    left and no release; `good` is None (a fresh flash not yet checked) or the default, for mark_good() makes
    the slot it marks the default."""
    default: Slot
    trying: Slot | None = None
    tries: str = "0"
    good: Slot | None = None
    release: str = ""               # the release staged in `trying`
    failures: tuple[str, ...] = ()  # releases that failed here, oldest first

    def __post_init__(self) -> None:
        if self.tries not in TRIES:
            raise SlotError(f"tries left {self.tries!r}: one of {', '.join(TRIES)}")
        if self.trying is None:
            if self.tries != "0" or self.release:
                raise SlotError("no slot is being tried, yet tries or a release are set")
        else:
            if self.trying is self.default:
                raise SlotError(f"slot {self.trying} is both the default and the one being tried")
            if not valid_release(self.release):
                raise SlotError(f"the release being tried, {self.release!r}, is not a release name")
        if self.good is not None and self.good is not self.default:
            raise SlotError(f"slot {self.good} is marked good but {self.default} is the default")
        if len(self.failures) > MAX_FAILED or len(set(self.failures)) != len(self.failures):
            raise SlotError(f"failed releases {self.failures}: at most {MAX_FAILED}, each once")
        for name in self.failures:
            if not valid_release(name):
                raise SlotError(f"failed release {name!r} is not a release name")

    @property
    def begun(self) -> bool:
        """A try GRUB has already counted (so it may have run, and may have failed)."""
        return self.trying is not None and self.tries != TRIES[0]

    def stage(self, slot: Slot, release: str, *, tries: int = MAX_TRIES, force: bool = False) -> State:
        """The next boot tries `release`, written into `slot` (the one that is not the default), with `tries`
        boots before GRUB goes back to the default. Refused: the default slot; a try already staged (unstage(),
        or resolve it with mark_good() or failed(), first); a release that failed here, unless forced."""
        if slot is self.default:
            raise SlotError(f"slot {slot} is the default, the one to come back to: stage into {slot.other}")
        if self.trying is not None:
            raise SlotError(f"slot {self.trying} is already staged with {self.release}: unstage it, or mark it "
                            f"good or failed, first")
        if not valid_release(release):
            raise SlotError(f"{release!r} is not a release name")
        if release in self.failures and not force:
            raise SlotError(f"release {release} failed on this node before: not retried unless forced")
        if not 1 <= tries <= MAX_TRIES:
            raise SlotError(f"tries {tries}: from 1 to {MAX_TRIES}")
        return replace(self, trying=slot, tries=str(tries), release=release)

    def unstage(self) -> State:
        """Withdraw a try that GRUB has not begun (before its slot is written again). A begun one is refused:
        it may have failed, and failed() writes that down."""
        if self.trying is None:
            return self
        if self.begun:
            raise SlotError(f"the try of {self.release} in slot {self.trying} has begun: mark it good or failed")
        return replace(self, trying=None, tries="0", release="")

    def boot(self, *, saved: bool = True) -> Boot:
        """What GRUB does at the next boot, from this state: grub() on the block's variables."""
        env = self.env()
        chosen = grub(env, saved=saved)
        return Boot(chosen.slot, chosen.saves, from_env({**env, **chosen.saves}))

    def outcome(self, booted: Slot) -> Outcome:
        """herdd's reading of the boot it finds itself in (booted: the slot on the kernel command line)."""
        if booted is self.trying:
            return Outcome.TRYING
        if booted is not self.default:
            return Outcome.UNEXPECTED
        if self.trying is None:
            return Outcome.STEADY
        if self.tries == "0":
            return Outcome.FELL_BACK
        if not self.begun:
            return Outcome.STAGED
        return Outcome.UNEXPECTED  # counted, not booted, yet tries left: not what GRUB does

    def mark_good(self, booted: Slot) -> State:
        """The booted slot passed its role check. The tried slot becomes the default (its release no longer
        counts as failed); the default is marked good (a fresh flash's first check)."""
        if booted is self.trying:
            failures = tuple(name for name in self.failures if name != self.release)
            return State(default=booted, good=booted, failures=failures)
        if booted is self.default:
            return replace(self, good=booted)
        raise SlotError(f"booted slot {booted} is neither the default ({self.default}) nor being tried")

    def failed(self) -> State:
        """The try did not make it (GRUB fell back, or herdd gave up on it): its release is written down, the
        try is withdrawn, and the next boot is the default's."""
        if self.trying is None:
            raise SlotError("no slot is being tried")
        failures = (*(name for name in self.failures if name != self.release), self.release)[-MAX_FAILED:]
        return replace(self, trying=None, tries="0", release="", failures=failures)

    def env(self) -> dict[str, str]:
        """The variables the block holds for this state, in ENV_NAMES order."""
        return {
            DEFAULT: self.default.value,
            TRY: "" if self.trying is None else self.trying.value,
            TRIES_LEFT: self.tries,
            GOOD: "" if self.good is None else self.good.value,
            RELEASE: self.release,
            FAILED: " ".join(self.failures),
        }


def initial(slot: Slot = Slot.A) -> State:
    """A fresh flash: everything in slot A, nothing tried, nothing yet marked good."""
    return State(default=slot)


def valid_release(release: str) -> bool:
    return bool(_RELEASE.fullmatch(release))


def from_env(env: Mapping[str, str]) -> State:
    """The state a block holds. SlotError for a block herd did not write (a missing or impossible value): GRUB
    would still boot it (grub()), but herdd must not act on a guess."""
    missing = [name for name in ENV_NAMES if name not in env]
    if missing:
        raise SlotError(f"the environment block lacks {', '.join(missing)}")

    def slot(name: str, *, empty: bool) -> Slot | None:
        value = env[name]
        if value == "" and empty:
            return None
        try:
            return Slot(value)
        except ValueError:
            raise SlotError(f"{name}={value!r}: A or B{' or empty' if empty else ''}") from None

    default = slot(DEFAULT, empty=False)
    assert default is not None
    failures = tuple(env[FAILED].split(" ")) if env[FAILED] else ()
    return State(default=default, trying=slot(TRY, empty=True), tries=env[TRIES_LEFT],
                 good=slot(GOOD, empty=True), release=env[RELEASE], failures=failures)

"""herd.slots.bootcount: the slot choice as a state machine. Every state is enumerated: boots without a mark
good always end on the default within the tries; power cuts after GRUB's save never leave a node without a
slot it can boot; a failed release is not staged again unless forced; and the block's layout keeps GRUB's
write to one byte and the whole state in the first sector."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

import pytest

from herd import spec
from herd.slots import bootcount, grubenv
from herd.slots.bootcount import (
    FAILED,
    MAX_FAILED,
    MAX_TRIES,
    TRIES,
    TRIES_LEFT,
    Outcome,
    Slot,
    SlotError,
    State,
    from_env,
    grub,
    initial,
)

A, B = Slot.A, Slot.B
NEW = "2026.12.0"
OLD_FAILURES = ((), ("2026.11.9",), tuple(f"2026.10.{n}" for n in range(MAX_FAILED)))


def all_states() -> Iterator[State]:
    """Every state herd can be in (with a few release names)."""
    for default, failures in itertools.product(Slot, OLD_FAILURES):
        for good in (None, default):
            yield State(default=default, good=good, failures=failures)
            for tries in TRIES:
                yield State(default=default, trying=default.other, tries=tries, good=good, release=NEW,
                            failures=failures)


STATES = list(all_states())


def block(state: State) -> bytes:
    return grubenv.render(state.env())


def test_the_states_round_trip_through_the_block() -> None:
    assert len(STATES) == 2 * 3 * 2 * (1 + len(TRIES))
    for state in STATES:
        assert from_env(grubenv.parse(block(state))) == state


def test_a_fresh_flash_boots_slot_a_and_writes_nothing() -> None:
    boot = initial().boot()
    assert (boot.slot, boot.saves, boot.after) == (A, {}, initial())
    assert initial().env() == {"herd_default": "A", "herd_try": "", "herd_tries": "0", "herd_good": "",
                               "herd_try_release": "", "herd_failed": ""}


def test_what_grub_does_with_whatever_the_block_holds() -> None:
    assert grub({}) == bootcount.GrubBoot(A, {})                              # no block at all
    assert grub({"herd_default": "B"}) == bootcount.GrubBoot(B, {})
    assert grub({"herd_default": "b"}) == bootcount.GrubBoot(A, {})           # garbage: slot A
    staged = {"herd_default": "A", "herd_try": "B", "herd_tries": "3"}
    assert grub(staged) == bootcount.GrubBoot(B, {TRIES_LEFT: "2"})
    assert grub({**staged, "herd_tries": "1"}) == bootcount.GrubBoot(B, {TRIES_LEFT: "0"})
    assert grub({**staged, "herd_tries": "0"}) == bootcount.GrubBoot(A, {})  # used up: back to the default
    for tries in ("", "4", "10", "-1", " 3", "x"):                           # no arithmetic, no parsing
        assert grub({**staged, "herd_tries": tries}) == bootcount.GrubBoot(A, {})
    assert grub({**staged, "herd_try": "A"}) == bootcount.GrubBoot(A, {})    # the default is not "tried"
    assert grub(staged, saved=False) == bootcount.GrubBoot(A, {})            # a try GRUB cannot count: not booted


def test_boots_without_a_mark_good_end_on_the_default_within_the_tries() -> None:
    """From every state, boot after boot with nothing else running (herdd never gets to act: a power cut after
    GRUB's save, a kernel that panics, a node that never passes its check): the tried slot boots at most its
    tries left, then the default boots, every time, and the default never changes."""
    for state in STATES:
        slots = []
        current = state
        for _ in range(MAX_TRIES + 3):
            boot = current.boot()
            assert boot.slot in (state.default, state.trying)
            slots.append(boot.slot)
            current = boot.after
            assert current.default == state.default and current.good == state.good
        tried = int(state.tries) if state.trying else 0
        assert slots == [state.default.other] * tried + [state.default] * (MAX_TRIES + 3 - tried)
        assert slots[MAX_TRIES] == state.default  # within N + 1 boots
        assert current.outcome(state.default) == (Outcome.FELL_BACK if state.trying else Outcome.STEADY)


def test_grub_never_boots_a_try_it_could_not_count() -> None:
    for state in STATES:
        boot = state.boot(saved=False)
        assert (boot.slot, boot.saves, boot.after) == (state.default, {}, state)


class Node:
    """A node's slots and block through power cuts: what each slot holds, the state, and what it booted."""

    def __init__(self) -> None:
        self.state = initial()
        self.holds: dict[Slot, str | None] = {A: "2026.11.0", B: None}  # a fresh flash fills slot A
        self.boots: list[tuple[Slot, str | None]] = []

    def boot(self, *, cut: bool, healthy: set[str]) -> None:
        boot = self.state.boot()
        release = self.holds[boot.slot]
        assert release is not None and not release.endswith("(partial)"), f"booted slot {boot.slot}: {release}"
        self.boots.append((boot.slot, release))
        self.state = boot.after
        if cut:  # power gone after GRUB's save, before the kernel ran: herdd does nothing
            return
        outcome = self.state.outcome(boot.slot)
        assert outcome is not Outcome.UNEXPECTED
        if outcome is Outcome.TRYING and release in healthy:
            self.state = self.state.mark_good(boot.slot)
        elif outcome is Outcome.FELL_BACK:
            self.state = self.state.failed()
        elif outcome is Outcome.STEADY and self.state.good is None:
            self.state = self.state.mark_good(boot.slot)

    def stage(self, release: str, *, cut_while_writing: bool) -> bool:
        """herdd's order: withdraw a try not begun, write the other slot, then stage. False if refused."""
        state = self.state
        if state.begun:
            return False  # the try must first be resolved by a boot
        state = state.unstage()
        if release in state.failures:
            with pytest.raises(SlotError, match="not retried unless forced"):
                state.stage(state.default.other, release)
            return False
        self.state = state
        self.holds[state.default.other] = f"{release} (partial)"
        if cut_while_writing:
            return False
        self.holds[state.default.other] = release
        self.state = state.stage(state.default.other, release)
        return True


@pytest.mark.parametrize("seed", range(200))
def test_a_node_through_random_releases_and_power_cuts(seed: int) -> None:
    """Releases good and bad staged at random, power cut at random after GRUB's save and while a slot is
    written: every boot finds a whole release in its slot, the default is always one that passed its check (or
    the fresh flash), a bad release never becomes the default, boots at most MAX_TRIES times in all (once it
    failed, stage() refuses it: Node.stage checks), and the node ends on a good release."""
    rng = random.Random(seed)
    releases = [f"2026.12.{n}" for n in range(6)]
    bad = set(rng.sample(releases, rng.randint(0, MAX_FAILED)))  # no more than the node remembers
    healthy = {"2026.11.0", *releases} - bad
    node = Node()
    for _ in range(60):
        if rng.random() < 0.3:
            node.stage(rng.choice(releases), cut_while_writing=rng.random() < 0.2)
        node.boot(cut=rng.random() < 0.3, healthy=healthy)
        assert node.holds[node.state.default] in healthy
    for release in bad:
        assert sum(1 for _, booted in node.boots if booted == release) <= MAX_TRIES
    for _ in range(MAX_TRIES + 2):  # no more staging: it settles on the default, a good release
        node.boot(cut=False, healthy=healthy)
    assert node.boots[-1] == (node.state.default, node.holds[node.state.default])
    assert node.boots[-1][1] in healthy and node.state.trying is None


def test_a_failed_release_is_refused_unless_forced() -> None:
    state = initial().stage(B, NEW)
    for _ in range(MAX_TRIES):
        state = state.boot().after
    assert state.boot().slot is A and state.outcome(A) is Outcome.FELL_BACK
    state = state.failed()
    assert (state.trying, state.tries, state.release, state.failures) == (None, "0", "", (NEW,))
    with pytest.raises(SlotError, match="failed on this node before"):
        state.stage(B, NEW)
    forced = state.stage(B, NEW, force=True)
    assert forced.trying is B and forced.failures == (NEW,)
    good = forced.boot().after.mark_good(B)
    assert good == State(default=B, good=B)  # it passed this time: no longer a failure
    assert good.boot().slot is B


def test_the_newest_failures_are_kept() -> None:
    state = initial()
    names = [f"2026.12.{n}" for n in range(MAX_FAILED + 2)]
    for name in names:
        state = state.stage(B, name).failed()
    assert state.failures == tuple(names[-MAX_FAILED:])
    state = state.stage(B, names[-MAX_FAILED], force=True).failed()  # failed again: now the newest
    assert state.failures == (*names[-MAX_FAILED + 1:], names[-MAX_FAILED])


def test_stage_refusals() -> None:
    state = initial()
    with pytest.raises(SlotError, match="is the default"):
        state.stage(A, NEW)
    with pytest.raises(SlotError, match="not a release name"):
        state.stage(B, "2026 12")
    for tries in (0, MAX_TRIES + 1):
        with pytest.raises(SlotError, match="tries"):
            state.stage(B, NEW, tries=tries)
    staged = state.stage(B, NEW, tries=1)
    assert staged.tries == "1" and staged.boot().slot is B and staged.boot().after.boot().slot is A
    with pytest.raises(SlotError, match="already staged"):
        staged.stage(B, "2026.12.1")


def test_unstage_only_a_try_not_begun() -> None:
    staged = initial().stage(B, NEW)
    assert staged.unstage() == initial()
    assert initial().unstage() == initial()
    with pytest.raises(SlotError, match="has begun"):
        staged.boot().after.unstage()


def test_outcomes() -> None:
    staged = initial().stage(B, NEW)
    assert initial().outcome(A) is Outcome.STEADY
    assert initial().outcome(B) is Outcome.UNEXPECTED
    assert staged.outcome(A) is Outcome.STAGED           # not rebooted yet, or GRUB could not count the try
    assert staged.boot().after.outcome(B) is Outcome.TRYING
    assert State(default=A, trying=B, tries="0", release=NEW).outcome(A) is Outcome.FELL_BACK
    assert State(default=A, trying=B, tries="1", release=NEW).outcome(A) is Outcome.UNEXPECTED


def test_mark_good() -> None:
    assert initial().mark_good(A) == State(default=A, good=A)
    trying = initial().mark_good(A).stage(B, NEW).boot().after
    assert trying.mark_good(B) == State(default=B, good=B)
    assert trying.mark_good(A) == trying                 # the default's check: the try stays
    with pytest.raises(SlotError, match="neither the default"):
        initial().mark_good(B)
    with pytest.raises(SlotError, match="no slot is being tried"):
        initial().failed()


def test_impossible_blocks_are_refused() -> None:
    good = initial().stage(B, NEW).env()
    for name in bootcount.ENV_NAMES:
        with pytest.raises(SlotError, match=f"lacks {name}"):
            from_env({k: v for k, v in good.items() if k != name})
    for change, message in [
        ({"herd_default": ""}, "A or B"),
        ({"herd_default": "C"}, "A or B"),
        ({"herd_try": "A"}, "both the default and the one being tried"),
        ({"herd_tries": "4"}, "tries left"),
        ({"herd_try_release": ""}, "not a release name"),
        ({"herd_try": "", "herd_tries": "0"}, "tries or a release are set"),
        ({"herd_good": "B"}, "marked good but A is the default"),
        ({FAILED: "x x"}, "each once"),
        ({FAILED: "a  b"}, "not a release name"),
        ({FAILED: " ".join(f"r{n}" for n in range(MAX_FAILED + 1))}, f"at most {MAX_FAILED}"),
    ]:
        with pytest.raises(SlotError, match=message):
            from_env({**good, **change})


def changed(before: bytes, after: bytes) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]


def transitions(state: State) -> list[State]:
    """Every state herdd or GRUB can write after this one."""
    steps: list[Callable[[], State]] = [
        lambda: state.boot().after, state.failed, state.unstage,
        lambda: state.mark_good(Slot.A), lambda: state.mark_good(Slot.B),
        lambda: state.stage(state.default.other, "2026.12.1", force=True),
    ]
    out = []
    for step in steps:
        try:
            out.append(step())
        except SlotError:
            continue
    return out


def test_grubs_save_changes_one_byte_and_moves_nothing() -> None:
    for state in STATES:
        boot = state.boot()
        if boot.saves:
            before = block(state)
            after = grubenv.update(before, boot.saves)  # what save_env writes
            assert len(changed(before, after)) == 1
            assert after == block(boot.after)


def test_every_write_keeps_the_layout_and_the_first_sector() -> None:
    """herdd edits the block in place (grubenv.write): after any transition the block is the one a fresh render
    of the new state makes (nothing drifts), and every byte that changes is in the first 512-byte sector, even
    with the longest names the spec allows."""
    longest = [("9" * 64)[:-len(str(n))] + str(n) for n in range(MAX_FAILED + 1)]
    big = State(default=A, trying=B, tries="3", release=longest[-1], failures=tuple(longest[:MAX_FAILED]))
    assert grubenv.used(block(big)) <= 512
    for state in [*STATES, big]:
        for after in transitions(state):
            edited = grubenv.update(block(state), after.env())
            assert edited == block(after)
            assert all(i < 512 for i in changed(block(state), edited))


def test_release_names_are_the_specs() -> None:
    for name in ("2026.11.0", "7.0+rc1", "7.0-hotfix", "a_b", "A" * 64, "A" * 65, "", "-x", "x y", "é", "1\n"):
        assert bootcount.valid_release(name) == spec.valid_release(name), name

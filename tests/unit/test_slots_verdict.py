"""Good or back, through whole boots: GRUB's part (bootcount's boot()) and herdd's verdict after each."""

from __future__ import annotations

import pytest

from herd.slots.bootcount import Slot, SlotError, State, initial
from herd.slots.verdict import Verdict, after, verdict

DEADLINE = 300.0


def test_a_fresh_flash_is_marked_good_once_its_check_passes() -> None:
    fresh = initial()
    assert verdict(fresh, Slot.A, False, 10, DEADLINE) == Verdict.NOTHING
    assert verdict(fresh, Slot.A, True, 10, DEADLINE) == Verdict.MARK_FIRST_GOOD
    assert after(fresh, Slot.A, Verdict.MARK_FIRST_GOOD) == State(default=Slot.A, good=Slot.A)
    assert verdict(State(default=Slot.A, good=Slot.A), Slot.A, True, 10, DEADLINE) == Verdict.NOTHING


def test_a_good_release_becomes_the_default_after_its_check_not_after_its_boot() -> None:
    state = State(default=Slot.A, good=Slot.A).stage(Slot.B, "2026.12.0")
    boot = state.boot()
    assert boot.slot is Slot.B
    state = boot.after
    assert verdict(state, Slot.B, False, 60, DEADLINE) == Verdict.WAIT  # booted, not yet rejoined and checked
    v = verdict(state, Slot.B, True, 90, DEADLINE)
    assert v == Verdict.MARK_GOOD
    state = after(state, Slot.B, v)
    assert state == State(default=Slot.B, good=Slot.B)
    assert state.boot().slot is Slot.B  # from now on


def test_a_release_that_boots_but_never_passes_goes_back_by_itself_and_is_not_retried() -> None:
    state = State(default=Slot.A, good=Slot.A).stage(Slot.B, "2026.12.0").boot().after
    v = verdict(state, Slot.B, False, DEADLINE, DEADLINE)
    assert v == Verdict.GIVE_UP
    state = after(state, Slot.B, v)
    assert state.failures == ("2026.12.0",) and state.trying is None
    assert state.boot().slot is Slot.A  # the reboot herdd asks for lands on the old slot
    with pytest.raises(SlotError, match="failed on this node before"):
        state.stage(Slot.B, "2026.12.0")


def test_a_release_that_never_boots_is_written_down_when_grub_falls_back() -> None:
    state = State(default=Slot.A, good=Slot.A).stage(Slot.B, "2026.12.0")
    for _ in range(3):  # three tries, each a boot that dies before herdd can judge it (a kernel panic)
        boot = state.boot()
        assert boot.slot is Slot.B
        state = boot.after
    boot = state.boot()
    assert boot.slot is Slot.A
    state = boot.after
    v = verdict(state, Slot.A, True, 30, DEADLINE)
    assert v == Verdict.RECORD_FAILURE
    assert after(state, Slot.A, v).failures == ("2026.12.0",)


def test_a_slot_the_state_does_not_explain_is_left_alone() -> None:
    state = State(default=Slot.A, good=Slot.A)
    assert verdict(state, Slot.B, True, 30, DEADLINE) == Verdict.NOTHING
    assert after(state, Slot.B, Verdict.NOTHING) == state

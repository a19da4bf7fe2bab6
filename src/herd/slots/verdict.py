"""Good or back: what herdd decides after a boot, from the slots' state, the slot it booted and its role check.

The tried slot becomes the default only once the node has rejoined and its role check passes (not merely once
it booted: a release that boots but cannot serve must go back too); a try that has not passed by its deadline
is given up: written down as failed, and the node reboots into its default, by itself. A try GRUB gave up on
(the tries ran out) is written down the same way. Pure: herdd carries the verdict out (bootcount's state
written into the block, a reboot)."""

from __future__ import annotations

import enum

from herd.slots.bootcount import Outcome, Slot, State


class Verdict(enum.StrEnum):
    NOTHING = "nothing"              # nothing to decide (or a slot the state cannot explain: left alone)
    MARK_FIRST_GOOD = "first good"   # a fresh flash's slot passed its first check
    WAIT = "wait"                    # trying, not yet checked, the deadline not reached
    MARK_GOOD = "mark good"          # trying, checked: the tried slot becomes the default
    GIVE_UP = "give up"              # trying, the deadline passed: failed, then reboot into the default
    RECORD_FAILURE = "record"        # GRUB fell back: the release is written down as failed


def verdict(state: State, booted: Slot, check_passed: bool, since_boot: float, deadline: float) -> Verdict:
    match state.outcome(booted):
        case Outcome.TRYING:
            if check_passed:
                return Verdict.MARK_GOOD
            return Verdict.GIVE_UP if since_boot >= deadline else Verdict.WAIT
        case Outcome.FELL_BACK:
            return Verdict.RECORD_FAILURE
        case Outcome.STEADY | Outcome.STAGED if check_passed and state.good is None:
            return Verdict.MARK_FIRST_GOOD
    return Verdict.NOTHING


def after(state: State, booted: Slot, v: Verdict) -> State:
    """The state to write for a verdict (the same state when there is nothing to write)."""
    if v in (Verdict.MARK_GOOD, Verdict.MARK_FIRST_GOOD):
        return state.mark_good(booted)
    if v in (Verdict.GIVE_UP, Verdict.RECORD_FAILURE):
        return state.failed()
    return state

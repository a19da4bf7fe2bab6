"""The site failover machine on a fake clock: when the names move to the backup and back, that a flapping main
site moves nothing, retries back off, manual failover/failback, and a new VIP holder picking up where the
last one left off."""

from __future__ import annotations

import itertools

from herd.daemon.site import Effect, Lookup, Policy, Publish, SiteMachine, Target

DOWN, UP = 10.0, 30.0
MAIN, BACKUP, OTHER = Target.MAIN, Target.BACKUP, Target.OTHER


class Run:
    """One machine, its DNS answering at once (or failing), probes every `interval` seconds."""

    def __init__(self, auto: bool = True, points: Target = MAIN) -> None:
        self.m = SiteMachine(Policy(DOWN, UP, auto_failback=auto))
        self.now = 0.0
        self.dns = points  # where the names point at the server
        self.fail: str | None = None  # every DNS request fails with this while set
        self.publishes: list[tuple[float, Target]] = []
        self.lookups = 0
        self.answer(self.m.activate(self.now))

    def answer(self, effects: list[Effect]) -> None:
        """Play the DNS server: every effect gets its result straight away, as herdd's thread would give it."""
        while effects:
            effect = effects.pop(0)
            term = self.m.term
            if isinstance(effect, Lookup):
                self.lookups += 1
                effects += self.m.looked_up(term, None if self.fail else self.dns, self.now, self.fail)
            else:
                assert isinstance(effect, Publish)
                self.publishes.append((self.now, effect.target))
                if self.fail is None:
                    self.dns = effect.target
                effects += self.m.published(term, effect.target, self.now, self.fail)

    def main(self, healthy: bool, seconds: float, interval: float = 1.0) -> None:
        """The main site passes (or fails) every probe for `seconds`; the machine also ticks in between."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.answer(self.m.observe(healthy, self.now, None if healthy else "connect: refused"))
            for _ in range(int(interval / 0.25)):
                self.now = round(self.now + 0.25, 6)
                self.answer(self.m.tick(self.now))


def test_becoming_holder_looks_up_first_and_stays_put_while_main_is_up() -> None:
    run = Run()
    assert run.lookups == 1 and run.m.points == MAIN and run.m.want == MAIN
    run.main(True, 600)
    assert run.publishes == []
    assert run.m.status(run.now)["main"] == "up" and run.m.status(run.now)["dns"] == "main"


def test_failover_after_down_seconds_of_failed_probes_not_before() -> None:
    run = Run()
    run.main(True, 5)
    died = run.now
    run.main(False, DOWN - 1)
    assert run.publishes == []
    run.main(False, 1)
    assert run.publishes == [(died + DOWN, BACKUP)]
    assert run.dns == BACKUP and run.m.status(run.now)["updates"] == 1
    run.main(False, 300)
    assert len(run.publishes) == 1  # one update, however long the main site stays down


def test_flapping_main_site_causes_no_update_storm() -> None:
    run = Run()
    for _ in range(100):  # down 9 s, up 1 s, for 1000 s: never down_seconds without a break
        run.main(False, DOWN - 1)
        run.main(True, 1)
    assert run.publishes == []


def test_hysteresis_failback_only_after_up_seconds_without_a_break() -> None:
    run = Run()
    run.main(False, DOWN + 1)
    assert [t for _, t in run.publishes] == [BACKUP]
    for _ in range(20):  # back, but failing a probe every 20 s: never up for 30 s
        run.main(True, UP - 10)
        run.main(False, 1)
    assert [t for _, t in run.publishes] == [BACKUP]
    back = run.now
    run.main(True, UP + 2)
    assert run.publishes[1:] == [(back + UP, MAIN)]


def test_flapping_around_both_thresholds_moves_at_most_once_per_policy_cycle() -> None:
    run = Run()
    for _ in range(10):
        run.main(False, DOWN + 1)
        run.main(True, UP + 1)
    targets = [t for _, t in run.publishes]
    assert targets == [BACKUP, MAIN] * 10
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(run.publishes)]
    assert min(gaps) >= DOWN


def test_manual_failback_policy_waits_for_herdctl() -> None:
    run = Run(auto=False)
    run.main(False, DOWN + 1)
    run.main(True, 10 * UP)
    assert [t for _, t in run.publishes] == [BACKUP]
    run.answer(run.m.failback(run.now))
    assert [t for _, t in run.publishes] == [BACKUP, MAIN] and run.dns == MAIN


def test_manual_failover_is_pinned_until_failback() -> None:
    run = Run()
    run.main(True, 5)
    run.answer(run.m.failover(run.now))
    assert run.publishes == [(5.0, BACKUP)] and run.m.pinned
    run.main(True, 10 * UP)  # auto failback does not undo a failover by hand
    assert len(run.publishes) == 1
    run.answer(run.m.failback(run.now))
    assert run.dns == MAIN and not run.m.pinned


def test_manual_failback_while_main_is_down_gives_it_another_down_seconds() -> None:
    run = Run()
    run.main(False, DOWN + 1)
    run.answer(run.m.failback(run.now))
    at = run.now
    run.main(False, DOWN - 1)
    assert [t for _, t in run.publishes] == [BACKUP, MAIN]
    run.main(False, 2)
    assert run.publishes[2:] == [(at + DOWN, BACKUP)]


def test_failed_updates_are_retried_with_backoff_then_succeed() -> None:
    run = Run()
    run.fail = "refused the TSIG key 'herd-site': BADSIG"
    run.main(False, DOWN + 100)
    times = [t for t, _ in run.publishes]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[:5] == [1, 2, 4, 8, 16] and max(gaps) == 30  # doubling, capped
    assert run.dns == MAIN
    status = run.m.status(run.now)
    assert status["last"]["result"].startswith("refused") and status["failures"] == len(times)
    run.fail = None
    run.main(False, 31)
    assert run.dns == BACKUP and run.m.failures == 0 and run.m.status(run.now)["last"]["result"] == "ok"


def test_a_failed_lookup_is_retried_and_nothing_is_published_blind() -> None:
    m = SiteMachine(Policy(DOWN, UP, auto_failback=True))
    assert m.activate(0.0) == [Lookup()]
    assert m.looked_up(m.term, None, 0.5, "no answer in 3 s") == []
    assert m.observe(False, 1.0) == [] and m.tick(1.4) == []
    assert m.tick(1.5) == [Lookup()]  # retried after the backoff


def test_new_holder_adopts_a_failover_done_by_the_last_one() -> None:
    run = Run(points=BACKUP)  # the previous holder had failed over, then died
    assert run.m.want == BACKUP
    run.main(False, 100)
    assert run.publishes == []
    run.main(True, UP + 1)
    assert [t for _, t in run.publishes] == [MAIN]


def test_names_pointing_elsewhere_are_claimed_only_once_main_has_been_probed() -> None:
    m = SiteMachine(Policy(DOWN, UP, auto_failback=True))
    m.activate(0.0)
    assert m.looked_up(m.term, OTHER, 0.1) == []
    assert m.observe(False, 1.0) == [] and m.tick(1.0 + DOWN - 0.1) == []  # not at a dead main site
    assert m.observe(True, 1.0 + DOWN - 0.1) == [Publish(MAIN, "the names pointed at neither site")]


def test_a_standby_does_nothing_and_results_from_an_old_term_are_dropped() -> None:
    m = SiteMachine(Policy(DOWN, UP, auto_failback=True))
    assert m.observe(False, 0.0) == [] and m.tick(100.0) == []
    old = m.term
    m.activate(0.0)
    first = m.term
    m.deactivate()
    assert m.tick(1.0) == [] and m.observe(False, 1.0) == []
    assert m.looked_up(first, BACKUP, 1.0) == []
    assert m.activate(2.0) == [Lookup()]
    assert m.looked_up(first, BACKUP, 2.1) == [] and m.points is None  # the answer to the first term's lookup
    assert m.looked_up(m.term, MAIN, 2.2) == [] and m.points == MAIN
    assert old < first < m.term

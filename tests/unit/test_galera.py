"""The Galera bootstrap decision, and parsing what MariaDB writes: no MariaDB needed."""

from __future__ import annotations

import itertools

from herd.daemon.galera import (
    NO_UUID,
    Action,
    Position,
    Report,
    decide,
    is_primary,
    mark_safe_to_bootstrap,
    parse_grastate,
    parse_recovered,
    parse_status,
    pick_db_host,
)

DB = ["db1", "db2", "db3"]
U = "4d3b0c2a-1111-11ef-9a7e-0e2d4f6b8c10"


def stopped(seqno: int, uuid: str = U, safe: bool = False) -> Report:
    return Report(running=False, primary=False, position=Position(uuid, seqno, safe))


def everyone_decides(reports: dict[str, Report | None], alive: set[str] | None = None) -> dict[str, Action]:
    alive = set(DB) if alive is None else alive
    return {n: decide(n, DB, reports, alive).action for n in DB if n in alive}


def test_first_boot_exactly_one_node_bootstraps_and_it_is_the_first() -> None:
    fresh = {n: stopped(-1, NO_UUID) for n in DB}
    assert everyone_decides(fresh) == {"db1": Action.BOOTSTRAP, "db2": Action.WAIT, "db3": Action.WAIT}
    assert "first start" in decide("db1", DB, fresh, set(DB)).reason


def test_after_a_power_loss_the_most_advanced_node_bootstraps() -> None:
    reports: dict[str, Report | None] = {"db1": stopped(40), "db2": stopped(42), "db3": stopped(41)}
    assert everyone_decides(reports) == {"db1": Action.WAIT, "db2": Action.BOOTSTRAP, "db3": Action.WAIT}
    assert decide("db1", DB, reports, set(DB)).reason == "db2 bootstraps (seqno 42)"


def test_ties_go_to_safe_to_bootstrap_then_to_the_first_name() -> None:
    reports: dict[str, Report | None] = {"db1": stopped(42), "db2": stopped(42), "db3": stopped(42, safe=True)}
    assert everyone_decides(reports)["db3"] == Action.BOOTSTRAP
    reports["db3"] = stopped(42)
    assert everyone_decides(reports)["db1"] == Action.BOOTSTRAP


def test_a_fresh_node_never_outranks_one_with_history() -> None:
    reports: dict[str, Report | None] = {"db1": stopped(-1, NO_UUID), "db2": stopped(0), "db3": stopped(-1, NO_UUID)}
    assert everyone_decides(reports) == {"db1": Action.WAIT, "db2": Action.BOOTSTRAP, "db3": Action.WAIT}


def test_nobody_bootstraps_while_a_db_node_is_missing_or_unrecovered() -> None:
    reports: dict[str, Report | None] = {"db1": stopped(40), "db2": stopped(42)}
    decisions = everyone_decides(reports, {"db1", "db2"})
    assert set(decisions.values()) == {Action.WAIT}
    assert "waiting for db3" in decide("db2", DB, reports, {"db1", "db2"}).reason
    reports["db3"] = Report(running=False, primary=False, position=None)  # still running galera_recovery
    assert set(everyone_decides(reports).values()) == {Action.WAIT}
    assert "db3's recovered position" in decide("db1", DB, reports, set(DB)).reason


def test_a_stopped_node_joins_a_primary_one_and_waits_for_one_starting() -> None:
    reports: dict[str, Report | None] = {"db1": Report(True, True), "db2": stopped(30), "db3": None}
    assert decide("db2", DB, reports, {"db1", "db2"}) .action == Action.JOIN  # even with db3 away
    assert decide("db1", DB, reports, {"db1", "db2"}).action == Action.NONE
    reports["db1"] = Report(True, False)  # bootstrapping, not primary yet
    assert decide("db2", DB, reports, set(DB)).action == Action.WAIT


def test_different_histories_are_never_merged_by_choice() -> None:
    other = "9e9e9e9e-2222-11ef-9a7e-0e2d4f6b8c10"
    reports: dict[str, Report | None] = {"db1": stopped(40), "db2": stopped(99, other), "db3": stopped(1)}
    decision = decide("db2", DB, reports, set(DB))
    assert decision.action == Action.WAIT and "needs a human" in decision.reason


def test_never_two_bootstraps_whatever_the_reports() -> None:
    """Every combination of positions, with every node seeing the same reports: at most one bootstraps, and
    only the one with the highest seqno."""
    positions = [stopped(-1, NO_UUID), stopped(5), stopped(7), stopped(7, safe=True), Report(False, False, None)]
    for combo in itertools.product(positions, repeat=3):
        reports: dict[str, Report | None] = dict(zip(DB, combo, strict=True))
        decisions = everyone_decides(reports)
        booted = [n for n, a in decisions.items() if a == Action.BOOTSTRAP]
        assert len(booted) <= 1, (combo, decisions)
        if booted:
            best = max(r.position.seqno for r in combo if r.position)  # type: ignore[union-attr]
            assert reports[booted[0]].position.seqno == best  # type: ignore[union-attr]


def test_reports_round_trip_through_json_and_reject_garbage() -> None:
    for report in (Report(True, True), stopped(42, safe=True), Report(False, False, None)):
        assert Report.from_json(report.to_json()) == report
    assert Report.from_json("x") is None
    assert Report.from_json({"running": 1, "primary": False}) is None
    assert Report.from_json({"running": False, "primary": False, "position": {"uuid": 1}}) == Report()


def test_grastate_parsing_and_marking() -> None:
    text = ("# GALERA saved state\nversion: 2.1\nuuid:    " + U + "\nseqno:   -1\nsafe_to_bootstrap: 0\n")
    assert parse_grastate(text) == Position(U, -1, False)
    marked = mark_safe_to_bootstrap(text)
    assert parse_grastate(marked) == Position(U, -1, True)
    assert marked.count("safe_to_bootstrap") == 1
    assert parse_grastate("") == Position(NO_UUID, -1, False)
    assert parse_grastate(mark_safe_to_bootstrap("version: 2.1\nuuid: " + U + "\nseqno: 7\n")).safe_to_bootstrap


def test_recovered_position_from_galera_recovery() -> None:
    assert parse_recovered(f"--wsrep_start_position={U}:1234\n") == (U, 1234)
    assert parse_recovered(f"--wsrep_start_position={U}:-1") == (U, -1)
    assert parse_recovered("") is None


def test_status_and_primary() -> None:
    status = parse_status("wsrep_cluster_status\tPrimary\nwsrep_ready\tON\nwsrep_local_state_comment\tSynced\n"
                          "wsrep_cluster_size\t3\n")
    assert status["wsrep_cluster_size"] == "3" and is_primary(status)
    assert not is_primary({**status, "wsrep_local_state_comment": "Joining: receiving State Transfer"})
    assert not is_primary({**status, "wsrep_cluster_status": "non-Primary"})


def test_web_pages_stay_on_a_good_db_node_and_move_off_a_bad_one() -> None:
    serving = {"db1": True, "db2": True}
    assert pick_db_host(["db1", "db2"], {"db1", "db2"}, serving, None) == "db1"
    assert pick_db_host(["db1", "db2"], {"db1", "db2"}, serving, "db2") == "db2"
    assert pick_db_host(["db1", "db2"], {"db2"}, serving, "db1") == "db2"
    assert pick_db_host(["db1", "db2"], {"db1", "db2"}, {"db1": False, "db2": False}, "db1") is None

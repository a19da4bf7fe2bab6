"""Off-site failover through DNS, for real: two herd sites of two directors (and a web node) each, bind9 as the
authoritative server with a TSIG key, dig from a client namespace. The main site dies, the backup site's VIP
holder points the name at the backup VIP after down_seconds; a director failover in the backup site sends
nothing twice; the main site returns and the name goes back after up_seconds; herdctl moves it by hand; a
wrong TSIG key is refused by bind9 and reported by herdd, and the retry succeeds once the key is right.
The tests run in order on one set of namespaces (module-scoped), each leaving the name on the main site."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .bind import tsig_keygen
from .harness import PROJECT, wait_for
from .sites import BACKUP_VIP, MAIN_VIP, TTL, Sites

DOWN, UP = 3.0, 4.0
# Generous bounds that only catch a hang; how fast it is, bench/dns.py measures.
SETTLE = 30.0


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    s = Sites(tmp_path_factory.mktemp("sites"), f"s{os.getpid() % 100000}", down=DOWN, up=UP)
    try:
        wait_for(lambda: s.holder("b") == "b-dir1" and s.holder("m") == "m-dir1", SETTLE, what="both VIP holders")
        yield s
    finally:
        s.close()


def herdctl(sites: Sites, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herd.ctl", "--socket", str(sites.nodes[node].socket), *args],
                          capture_output=True, text=True, timeout=20,
                          env={**os.environ, "PYTHONPATH": str(PROJECT / "src")})


def speaker(sites: Sites) -> str:
    holder = sites.holder("b")
    assert holder is not None
    return holder


def log_of(sites: Sites, node: str) -> str:
    return sites.nodes[node].log.read_text()


def test_the_name_points_at_the_main_site_and_only_the_backup_holder_watches(sites: Sites) -> None:
    assert sites.dig() == [MAIN_VIP]
    wait_for(lambda: sites.site("b-dir1")["main"] == "up", SETTLE, what="the backup holder sees the main site up")
    site = sites.site("b-dir1")
    assert site["active"] and site["dns"] == "main" and site["updates"] == 0
    standby = sites.site("b-dir2")
    assert not standby["active"] and standby["speaker"] == "b-dir1"
    assert sites.site("m-dir1")["role"] == "main" and "active" not in sites.site("m-dir1")
    assert "watches the main site" in log_of(sites, "b-dir1") and "watches the main site" not in log_of(sites, "b-dir2")
    assert sites.bind is not None and sites.bind.updates() == []


def test_main_site_death_moves_the_name_to_the_backup_vip(sites: Sites) -> None:
    assert sites.bind is not None
    sites.kill_main()
    wait_for(lambda: sites.dig() == [BACKUP_VIP], DOWN + TTL + SETTLE, every=0.2, what="the name -> backup VIP")
    site = sites.site("b-dir1")
    assert site["dns"] == "backup" and site["main"] == "down" and site["updates"] == 1
    assert site["last"]["result"] == "ok"
    assert len(sites.bind.updates()) == 1 and BACKUP_VIP in sites.bind.updates()[0]
    assert "now point at the backup site (verified at the server)" in log_of(sites, "b-dir1")
    assert "pointing" not in log_of(sites, "b-dir2")


def test_a_director_failover_in_the_backup_site_sends_no_second_update(sites: Sites) -> None:
    assert sites.bind is not None
    logged = sites.nodes["b-dir2"].log.stat().st_size
    sites.nodes["b-dir1"].kill(signal.SIGKILL)
    wait_for(lambda: sites.holder("b") == "b-dir2", SETTLE, what="b-dir2 takes the backup VIP")
    wait_for(lambda: sites.site("b-dir2")["dns"] == "backup", SETTLE, what="b-dir2 looks up where the name is")
    wait_for(lambda: sites.site("b-dir2")["main"] == "down", SETTLE, what="b-dir2 probes the main site")
    time.sleep(DOWN + 1)  # long enough for a needless second update to go out, were it to
    assert len(sites.bind.updates()) == 1
    assert sites.site("b-dir2")["updates"] == 0
    assert "pointing" not in log_of(sites, "b-dir2")[logged:]
    assert sites.dig() == [BACKUP_VIP]
    sites.nodes["b-dir1"].start()  # back as the standby: no preemption
    wait_for(lambda: sites.nodes["b-dir2"].states()["b-dir1"] == "alive", SETTLE, what="b-dir1 back")


def test_the_main_site_back_and_healthy_for_up_seconds_gets_the_name_back(sites: Sites) -> None:
    assert sites.bind is not None
    sites.revive_main()
    wait_for(lambda: sites.dig() == [MAIN_VIP], UP + TTL + SETTLE, every=0.2, what="the name -> main VIP")
    assert len(sites.bind.updates()) == 2
    holder = speaker(sites)
    assert "main site healthy again" in log_of(sites, holder)
    assert sites.site(holder)["dns"] == "main"


def test_herdctl_site_failover_pins_the_backup_until_failback(sites: Sites) -> None:
    holder = speaker(sites)
    standby = next(n for n in ("b-dir1", "b-dir2") if n != holder)
    refused = herdctl(sites, standby, "site", "failover")
    assert refused.returncode == 1 and f"run it on {holder}, the VIP holder" in refused.stderr
    done = herdctl(sites, holder, "site", "failover")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: sites.dig() == [BACKUP_VIP], SETTLE, every=0.2, what="the name -> backup VIP by hand")
    time.sleep(UP + 1)  # the main site is up all along: an automatic failback would have happened by now
    assert sites.dig() == [BACKUP_VIP] and sites.site(holder)["pinned"]
    shown = herdctl(sites, holder, "status")
    assert shown.returncode == 0
    assert "DNS points at the backup site" in shown.stdout and "pinned by herdctl site failover" in shown.stdout
    assert herdctl(sites, holder, "site", "failback").returncode == 0
    wait_for(lambda: sites.dig() == [MAIN_VIP], SETTLE, every=0.2, what="the name -> main VIP by hand")


def test_a_wrong_tsig_key_is_refused_by_bind_and_reported_then_retried(sites: Sites) -> None:
    assert sites.bind is not None
    holder = speaker(sites)
    good = sites.key.read_text()
    updates = len(sites.bind.updates())
    sites.key.write_text(tsig_keygen("herd-site"))  # same name, another secret; herdd reads it at each use
    assert herdctl(sites, holder, "site", "failover").returncode == 0
    wait_for(lambda: "BADSIG" in str(sites.site(holder)["last"]), SETTLE, what="the refusal in herdctl status")
    site = sites.site(holder)
    assert site["failures"] >= 1 and site["retry_in_s"] is not None and site["dns"] == "main"
    assert any("BADSIG" in line for line in sites.bind.refusals())
    assert "DNS update failed" in log_of(sites, holder) and "refused the TSIG key 'herd-site'" in log_of(sites, holder)
    secret = good.split('secret "')[1].split('"')[0]
    assert secret not in log_of(sites, holder)
    assert sites.dig() == [MAIN_VIP] and len(sites.bind.updates()) == updates
    sites.key.write_text(good)  # the right key again: the next retry goes through
    wait_for(lambda: sites.dig() == [BACKUP_VIP], SETTLE, every=0.2, what="the retried update")
    assert herdctl(sites, holder, "site", "failback").returncode == 0
    wait_for(lambda: sites.dig() == [MAIN_VIP], SETTLE, every=0.2, what="the name back on the main site")


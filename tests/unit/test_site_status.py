"""The site in herdctl status and in the metrics, from the status herdd sends (as the site machine makes it)."""

from __future__ import annotations

from rich.console import Console

from herd.ctl import site_lines
from herd.daemon import metrics
from herd.daemon.site import Policy, SiteMachine, Target

BASE = {"name": "dr", "role": "backup", "names": ["www.example.com"], "server": "198.51.100.53:53",
        "main_addresses": ["203.0.113.10"], "backup_address": "198.51.100.10", "failback": "auto",
        "down_seconds": 10.0, "up_seconds": 60.0}


def render(site: dict[str, object]) -> str:
    console = Console(width=160, record=True, color_system=None)
    for line in site_lines(site):
        console.print(line)
    return console.export_text()


def failing_over(probe_error: str, update_error: str | None) -> SiteMachine:
    """The backup holder: names found on the main site, main down from 1 s, the failover sent at 11 s."""
    m = SiteMachine(Policy(10, 60, auto_failback=True))
    m.activate(0.0)
    m.looked_up(m.term, Target.MAIN, 0.1)
    m.observe(False, 1.0, probe_error)
    m.tick(11.0)
    m.published(m.term, Target.BACKUP, 11.1, update_error)
    return m


def test_the_holder_shows_main_state_where_dns_points_and_the_last_result() -> None:
    m = failing_over("http 203.0.113.10:80: connect: timed out",
                     "198.51.100.53:53 refused the TSIG key 'herd-site': BADSIG")
    text = render({**BASE, **m.status(12.0), "speaker": "dr-dir1"})
    assert "site dr (backup) — www.example.com at 198.51.100.53:53" in text
    assert "main site down for 11 s (203.0.113.10): http 203.0.113.10:80: connect: timed out" in text
    assert "DNS points at the main site, moving to the backup site" in text
    assert "policy: fail over after 10 s down, fail back after 60 s up" in text
    assert ("last update (backup) 1 s ago: 198.51.100.53:53 refused the TSIG key 'herd-site': BADSIG; "
            "retry in 0.1 s") in text
    assert "updates sent: 0" in text


def test_a_standby_and_the_main_site_say_who_moves_the_names() -> None:
    standby = render({**BASE, **SiteMachine(Policy(10, 60, auto_failback=False)).status(0.0), "speaker": "dr-dir1"})
    assert "standby: dr-dir1 watches the main site and moves the names" in standby
    main = render({**BASE, "role": "main"})
    assert "the backup site's VIP holder watches this site and moves the names" in main


def test_metrics_of_the_holder_and_none_elsewhere() -> None:
    m = failing_over("connect: timed out", None)
    status = {"self": "dr-dir1", "nodes": [], "site": {**BASE, **m.status(12.0)}}
    text = metrics.render(status, {}, {})
    assert 'herd_site_main_up{site="dr"} 0' in text
    assert 'herd_site_dns_points{target="backup"} 1' in text and 'herd_site_dns_points{target="main"} 0' in text
    assert "herd_site_dns_updates_total 1" in text and "herd_site_dns_failures 0" in text
    standby = {"self": "dr-dir2", "nodes": [], "site": {**BASE, **SiteMachine(m.policy).status(12.0)}}
    assert "herd_site" not in metrics.render(standby, {}, {})
    assert "herd_site" not in metrics.render({"self": "x", "nodes": [], "site": None}, {}, {})

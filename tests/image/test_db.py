"""The database behind the site, in the lab (lab.py): MariaDB on the db VM with the spec's database and user
(password derived from the cluster key), and the example's PHP page writing to it through either web node."""

from __future__ import annotations

import re

from ..netns.harness import wait_for
from .lab import Lab


def test_the_spec_databases_are_created(lab: Lab) -> None:
    assert lab.vms["db1"].wait_for(r"herd: databases ready: site", 180), lab.vms["db1"].console()[-3000:]
    users = lab.ssh("db1", "mariadb --batch -e \"SELECT user, host FROM mysql.user WHERE user='site'\"")
    assert "site\t192.168.50.0/255.255.255.0" in users
    # The password is nowhere on the db node but in MariaDB's hash: not in the logs, not in any file.
    config = lab.ssh("web1", "cat /etc/herd/db.php")
    password = re.search(r"'password' => '([0-9a-f]+)'", config).group(1)  # type: ignore[union-attr]
    assert password not in lab.ssh("db1", "journalctl -b --no-pager; cat /var/log/mysql/* 2>/dev/null; true")
    assert lab.ssh("web1", "stat -c '%a %U %G' /etc/herd/db.php").strip() == "640 root www-data"


def test_the_php_page_counts_through_every_web_node(lab: Lab) -> None:
    for name in ("web1", "web2"):
        assert lab.vms[name].wait_for(r"herd: docroot mounted", 180)
    for address in ("192.168.50.21", "192.168.50.22"):  # both up (each call adds a row)
        wait_for(lambda address=address: lab.fetch_text("/counter.php", address).strip() != "", 60, every=1,
                 what=f"{address} serves counter.php")
    counts: dict[str, list[int]] = {}
    for address, name in (("192.168.50.21", "web1"), ("192.168.50.22", "web2")) * 3:
        node, count = lab.fetch_text("/counter.php", address).split()
        assert node == name
        counts.setdefault(name, []).append(int(count))
    everything = sorted(counts["web1"] + counts["web2"])
    assert everything == list(range(everything[0], everything[0] + 6)), counts  # one count, shared by both
    # Bounded: a row per web node, updated, however many requests (an anonymous GET must not fill the disk).
    rows = lab.ssh("db1", "mariadb --batch --skip-column-names -e 'SELECT node, n FROM site.counts'").split()
    assert sorted(rows[::2]) == ["web1", "web2"] and sum(map(int, rows[1::2])) == everything[-1], rows

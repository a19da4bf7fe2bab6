"""Role helpers that need no root: reading mounts, seeding the export."""

from __future__ import annotations

from pathlib import Path

from herd.daemon.roles import mounts, prepare_export, role_health


def test_mounts_reads_proc_mounts(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text("nfs1:/srv/herd/www /var/www/html nfs4 rw,relatime 0 0\n/dev/sda3 / ext4 rw 0 0\n"
                     "x /with\\040space tmpfs rw 0 0\n")
    assert mounts(table) == {"/var/www/html": ("nfs1:/srv/herd/www", "nfs4"), "/": ("/dev/sda3", "ext4"),
                             "/with space": ("x", "tmpfs")}


def test_prepare_export_seeds_an_empty_export_once(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("herd")
    export = tmp_path / "srv/herd/www"
    assert prepare_export(export, site) is True
    assert (export / "index.html").read_text() == "herd"
    (export / "index.html").write_text("mine")
    assert prepare_export(export, site) is False  # never overwrites what is there
    assert (export / "index.html").read_text() == "mine"


def test_role_health_has_the_roles_engine() -> None:
    assert set(role_health("web")) == {"apache", "docroot"}
    assert set(role_health("nfs")) == {"nfsd"}
    assert set(role_health("db")) == {"mariadb"}
    assert role_health("director") == {}


def test_database_sql_is_idempotent_and_limits_users_to_the_subnet() -> None:
    from herd.daemon.roles import database_sql

    sql = database_sql([("site", "site", "pw'1")], "192.168.50.0/24")
    assert "CREATE DATABASE IF NOT EXISTS `site`;" in sql
    assert "CREATE USER IF NOT EXISTS 'site'@'192.168.50.0/255.255.255.0' IDENTIFIED BY 'pw\\'1';" in sql
    assert "ALTER USER 'site'@'192.168.50.0/255.255.255.0' IDENTIFIED BY 'pw\\'1';" in sql
    assert "GRANT ALL PRIVILEGES ON `site`.* TO 'site'@'192.168.50.0/255.255.255.0';" in sql


def test_php_config_and_derived_passwords() -> None:
    from herd.daemon.roles import php_db_config
    from herd.secrets import db_password

    key = b"k" * 64
    password = db_password(key, "site")
    assert password == db_password(key, "site") != db_password(b"j" * 64, "site") != db_password(key, "other")
    assert len(password) == 24
    php = php_db_config("192.168.50.41", [("site", "site", password)])
    assert php.startswith("<?php\n") and "'host' => '192.168.50.41'" in php
    assert f"'site' => ['user' => 'site', 'password' => '{password}']" in php


def test_spec_databases() -> None:
    from herd.spec import Database, SpecError, load, parse

    example = Path(__file__).resolve().parents[2] / "examples/cluster.toml"
    assert load(example).databases == (Database("site", "site"),)
    text = example.read_text()
    try:
        parse(text.replace('name = "site"', 'name = "Bad-Name"'), "c.toml")
    except SpecError as exc:
        assert "database[0].name" in str(exc)
    else:
        raise AssertionError("a bad database name was accepted")

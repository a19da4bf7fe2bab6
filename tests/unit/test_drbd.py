"""DRBD as herdd reads it (/proc/drbd, drbdadm get-gi) and the data disk it picks: no DRBD needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.daemon.drbd import Report, is_fresh, parse_proc
from herd.daemon.drbdctl import EngineError, choose_disk, found_by_blkid

from .fakesys import FakeSys, GiB

HEAD = "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 211FB288A383ED945B83420 \n"


def test_connected_and_in_sync() -> None:
    text = HEAD + (" 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n"
                   "    ns:4 nr:0 dw:4 dr:2081 al:1 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n")
    report = parse_proc(text)
    assert report == Report(role="Primary", connection="Connected", disk="UpToDate", peer_disk="UpToDate",
                            peer_role="Secondary")
    assert report.connected and report.in_sync and report.primary


def test_a_resync_shows_its_progress() -> None:
    text = HEAD + (" 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----\n"
                   "    ns:0 nr:46080 dw:46080 dr:0 al:8 bm:0 lo:0 pe:2 ua:0 ap:0 ep:1 wo:f oos:216064\n"
                   "\t[==>.................] sync'ed: 17.7% (216064/262144)K\n"
                   "\tfinish: 0:00:10 speed: 20,480 (20,480) want: 102,400 K/sec\n")
    report = parse_proc(text)
    assert (report.connection, report.disk, report.peer_disk, report.sync) == \
        ("SyncTarget", "Inconsistent", "UpToDate", 17.7)
    assert report.connected and not report.in_sync


def test_disconnected_standalone_unconfigured_and_absent() -> None:
    alone = parse_proc(HEAD + " 0: cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown   r-----\n")
    assert (alone.connection, alone.peer_role, alone.peer_disk) == ("StandAlone", "Unknown", "DUnknown")
    assert not alone.connected
    waiting = parse_proc(HEAD + " 0: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C r-----\n")
    assert waiting.primary and not waiting.connected
    assert parse_proc(HEAD + " 0: cs:Unconfigured\n") == Report(connection="Unconfigured")
    assert parse_proc(HEAD) == Report()  # the module is loaded, the resource is not up
    other = HEAD + " 1: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n"
    assert parse_proc(other).role == "Unconfigured"  # minor 1 is not ours


def test_fresh_metadata_is_told_by_its_generation_uuid() -> None:
    assert is_fresh("0000000000000004:0000000000000000:0000000000000000:0000000000000000:0:0:0:0:0:0:0\n")
    assert not is_fresh("8A6BC0BB1C12F1D5:0000000000000000:6E53FE26B4A02E1C:0000000000000000:1:1:1:1:0:0:0\n")


@pytest.fixture
def fake(tmp_path: Path) -> FakeSys:
    return FakeSys(tmp_path)


def stick_with_root(fake: FakeSys) -> None:
    stick = fake.disk("sda", "8:0", bus="usb", removable=True)
    fake.partition(stick, "sda3", "8:3")
    fake.mount("8:3", "/")


def test_auto_takes_the_sticks_free_space_when_growroot_kept_it(fake: FakeSys, tmp_path: Path) -> None:
    stick_with_root(fake)
    fake.disk("sdb", "8:16", bus="sata", removable=False)  # appeared after the first boot: the stick stays
    part = tmp_path / "herd-data"
    part.write_bytes(b"")
    assert choose_disk("auto", fake.system(), stick_part=part) == part


def test_auto_picks_the_internal_disk_never_the_boot_stick(fake: FakeSys) -> None:
    stick_with_root(fake)
    fake.disk("sdc", "8:32", bus="usb", removable=True)  # another stick: second choice
    fake.disk("sdb", "8:16", bus="sata", removable=False, size=32 * GiB)
    fake.disk("loop0", "7:0", bus="virtual", removable=False)
    assert choose_disk("auto", fake.system()) == Path("/dev/sdb")


def test_auto_takes_a_second_stick_when_there_is_nothing_better(fake: FakeSys) -> None:
    stick_with_root(fake)
    fake.disk("sdc", "8:32", bus="usb", removable=True)
    assert choose_disk("auto", fake.system()) == Path("/dev/sdc")


def test_auto_skips_disks_in_use_and_tiny_or_read_only_ones(fake: FakeSys) -> None:
    stick_with_root(fake)
    used = fake.disk("sdb", "8:16", bus="sata", removable=False)
    fake.partition(used, "sdb1", "8:17")
    fake.mount("8:17", "/srv/backup")
    fake.disk("sdd", "8:48", bus="sata", removable=False, size=32 * 2**20)
    fake.disk("sde", "8:64", bus="sata", removable=False, ro=True)
    with pytest.raises(EngineError, match=r"no data disk: nfs.disk is \"auto\""):
        choose_disk("auto", fake.system())


def test_auto_keeps_the_disk_drbd_holds(fake: FakeSys) -> None:
    """After a restart of herdd the resource is up: its disk is held by drbd0, and still the one."""
    stick_with_root(fake)
    data = fake.disk("vdb", "254:16", bus="virtual", removable=False)
    fake.stacked("drbd0", "147:0", [data])
    assert choose_disk("auto", fake.system()) == Path("/dev/vdb")


def test_a_named_disk_must_exist(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"nfs\.disk /nonexistent/sdz does not exist"):
        choose_disk("/nonexistent/sdz")
    disk = tmp_path / "disk"
    disk.write_bytes(b"")
    assert choose_disk(str(disk)) == disk


def test_a_partitions_own_table_entry_is_not_content() -> None:
    # `blkid -p -o export` on the blank herd-data partition growroot made (as printed for a loop device's
    # partition): only its entry in the disk's GPT, so the partition counts as blank.
    partition = ("DEVNAME=/dev/loop0p2\nPART_ENTRY_SCHEME=gpt\nPART_ENTRY_NAME=herd-data\n"
                 "PART_ENTRY_UUID=25ce10a5-3962-1348-af8d-e035a850ac3f\n"
                 "PART_ENTRY_TYPE=0fc63daf-8483-4772-8e79-3d69d8477de4\nPART_ENTRY_NUMBER=2\n"
                 "PART_ENTRY_OFFSET=67584\nPART_ENTRY_SIZE=61440\nPART_ENTRY_DISK=7:0\n")
    assert found_by_blkid(partition) is None
    assert found_by_blkid(partition + "VERSION=8.4\nTYPE=drbd\nUSAGE=raid\n") == "drbd"
    assert found_by_blkid("DEVNAME=/dev/loop0\nPTUUID=8e6cf592\nPTTYPE=gpt\n") == "gpt"
    assert found_by_blkid("DEVNAME=/dev/vdb\nUUID=1b2c\nBLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n") == "ext4"

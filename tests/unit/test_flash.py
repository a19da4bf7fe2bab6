"""`build.py flash` on a small sparse image: to regular files and (as root) to loop devices standing in for
sticks; the confirmation; refusals through the command; a bad read-back, a wrong bmap and Ctrl-C; and the
same result as `bmaptool copy` with our bmap."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.build import bmap, flash, flashio
from herd.build.cli import main as build_main
from herd.build.flash import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, main
from herd.build.target import read_target

from .sparse import SIZE, make_image

MiB = 2**20


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() installs a SIGTERM handler and prints through rich: keep both from leaking or wrapping."""
    monkeypatch.setenv("COLUMNS", "400")
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "disk.img")


def output(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    out, err = capsys.readouterr()
    return out, re.sub(r"\x1b\[[0-9;]*m", "", err)


def never(prompt: str) -> str:
    raise AssertionError(f"asked {prompt!r} when it should not")


def test_flash_to_a_new_file(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "vm.img"
    assert main([str(image), str(target)], ask=never, interactive=False) == EXIT_OK  # a new file: no question
    assert target.read_bytes() == image.read_bytes()
    assert target.stat().st_blocks * 512 <= 256 * 1024, "the holes stay holes"
    out, err = output(capsys)
    assert "no disk.img.bmap: mapping the image with SEEK_DATA" in err
    assert re.fullmatch(rf"flashed disk.img to {target}: wrote 77\.0 KiB of 8\.0 MiB in [\d.]+ s "
                        r"\([\d.]+ MiB/s\), verified; [\d.]+ s in all\n", out)


def test_an_existing_file_is_emptied_and_replaced_once_confirmed(tmp_path: Path, image: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "vm.img"
    target.write_bytes(os.urandom(16 * MiB))  # bigger than the image, data where the image has holes
    prompts: list[str] = []
    assert main([str(image), str(target)], ask=lambda p: prompts.append(p) or "yes", interactive=True) == EXIT_OK
    assert prompts == ["Type yes to write it: "]
    assert target.read_bytes() == image.read_bytes()
    _, err = output(capsys)
    assert f"{target}: a file of 16.0 MiB" in err
    assert "Everything on it will be lost. It will hold disk.img (8.0 MiB, 77.0 KiB to write)." in err


@pytest.mark.parametrize("answer", ["no", "y", "YES please", ""])
def test_anything_but_yes_writes_nothing(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str],
                                         answer: str) -> None:
    target = tmp_path / "vm.img"
    target.write_bytes(b"keep me")
    assert main([str(image), str(target)], ask=lambda p: answer, interactive=True) == EXIT_REFUSED
    assert target.read_bytes() == b"keep me"
    assert "not confirmed: nothing written" in output(capsys)[1]


def test_end_of_input_is_not_yes(tmp_path: Path, image: Path) -> None:
    target = tmp_path / "vm.img"
    target.write_bytes(b"keep me")

    def eof(prompt: str) -> str:
        raise EOFError

    assert main([str(image), str(target)], ask=eof, interactive=True) == EXIT_REFUSED
    assert target.read_bytes() == b"keep me"


def test_no_terminal_needs_yes(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "vm.img"
    target.write_bytes(b"keep me")
    assert main([str(image), str(target)], ask=never, interactive=False) == EXIT_REFUSED
    assert target.read_bytes() == b"keep me"
    assert "stdin is not a terminal, so nobody can confirm: give --yes" in output(capsys)[1]
    assert main([str(image), str(target), "--yes"], ask=never, interactive=False) == EXIT_OK
    assert target.read_bytes() == image.read_bytes()


def test_the_bmap_beside_the_image_is_used(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beside = image.with_name("disk.img.bmap")
    beside.write_text(bmap.to_xml(bmap.create(image)))
    target = tmp_path / "vm.img"
    assert main([str(image), str(target)], interactive=False) == EXIT_OK
    assert "SEEK_DATA" not in output(capsys)[1]
    assert target.read_bytes() == image.read_bytes()
    # A bmap listing fewer ranges writes fewer: the rest of the file stays a hole.
    partial = bmap.create(image)
    partial = bmap.Bmap(partial.image_size, partial.ranges[:1])
    other = tmp_path / "first-range.bmap"
    other.write_text(bmap.to_xml(partial))
    assert main([str(image), str(target), "--yes", "--bmap", str(other)], interactive=False) == EXIT_OK
    data = image.read_bytes()
    assert target.read_bytes() == data[:8192] + bytes(SIZE - 8192)


def test_a_bmap_for_another_size_is_refused(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = make_image(tmp_path / "other.img", size=SIZE + 4096)
    stale = tmp_path / "other.bmap"
    stale.write_text(bmap.to_xml(bmap.create(other)))
    target = tmp_path / "vm.img"
    assert main([str(image), str(target), "--bmap", str(stale)], interactive=False) == EXIT_REFUSED
    assert "not this image's bmap" in output(capsys)[1]
    assert not target.exists()
    stale.write_text("<bmap")
    assert main([str(image), str(target), "--bmap", str(stale)], interactive=False) == EXIT_REFUSED
    assert "not a bmap file" in output(capsys)[1]
    assert not target.exists()


def test_an_empty_image_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    target = tmp_path / "vm.img"
    assert main([str(empty), str(target)], interactive=False) == EXIT_REFUSED
    assert f"{empty}: empty image" in output(capsys)[1]
    assert not target.exists()


def test_a_bmap_without_checksums_is_refused(tmp_path: Path, image: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    theirs = tmp_path / "theirs.bmap"
    subprocess.run(["bmaptool", "create", "--no-checksum", "-o", str(theirs), str(image)], check=True,
                   capture_output=True)
    target = tmp_path / "vm.img"
    assert main([str(image), str(target), "--bmap", str(theirs)], interactive=False) == EXIT_REFUSED
    assert "has no checksums (made with bmaptool create --no-checksum)" in output(capsys)[1]
    assert not target.exists()


def test_a_file_swapped_after_the_question_is_not_written(tmp_path: Path, image: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "vm.img"
    target.write_bytes(b"old" * 100)
    other = tmp_path / "precious.img"
    other.write_bytes(b"precious" * 100)

    def swap(prompt: str) -> str:  # while the user reads the question, another file is renamed over it
        os.replace(other, target)
        return "yes"

    assert main([str(image), str(target)], ask=swap, interactive=True) == EXIT_REFUSED
    assert (f"{target} is not what was checked (size 300 bytes → 800 bytes; another file): nothing written; "
            "run flash again") in output(capsys)[1]
    assert target.read_bytes() == b"precious" * 100
    made = tmp_path / "new.img"

    def make(prompt: str) -> str:
        raise AssertionError("a new file is not asked about")

    # A missing file made (here: a link planted) between the check and the open is not followed.
    original = flash.open_target

    def late(*args: Any, **kwargs: Any) -> tuple[int, int | None]:
        made.symlink_to(tmp_path / "elsewhere.img")
        return original(*args, **kwargs)

    monkeypatch.setattr(flash, "open_target", late)
    assert main([str(image), str(made)], ask=make, interactive=False) == EXIT_REFUSED
    assert f"{made} appeared after it was checked" in output(capsys)[1]
    assert not (tmp_path / "elsewhere.img").exists()


def test_a_bmap_for_other_data_is_refused_before_anything_is_written(tmp_path: Path, image: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    other = make_image(tmp_path / "other.img", seed=2)  # same size and layout, other bytes
    stale = tmp_path / "other.bmap"
    stale.write_text(bmap.to_xml(bmap.create(other)))
    target = stick(tmp_path / "vm.img", 12 * MiB)
    assert main([str(image), str(target), "--bmap", str(stale)], ask=never, interactive=True) == EXIT_REFUSED
    err = output(capsys)[1]
    assert f"{image} does not match its bmap at blocks 0-1 (bytes 0-8191) and 3 more ranges: give the image's own " \
        "--bmap, or remove the stale .bmap" in err
    assert target.read_bytes() == b"\xaa" * (12 * MiB)


def test_an_image_changed_while_written_stops_the_copy(tmp_path: Path, image: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked against its bmap before, and again as it is written: changed in between, the copy stops."""
    real_check = flash.check_image

    def check_then_change(*args: Any) -> list[bmap.BlockRange]:
        found = real_check(*args)
        corrupt(image, 3 * MiB + 100)
        return found

    monkeypatch.setattr(flash, "check_image", check_then_change)
    assert main([str(image), str(tmp_path / "vm.img"), "--yes"], interactive=False) == EXIT_FAILED
    err = output(capsys)[1]
    assert "the image does not match its bmap at blocks 768-768" in err and "the target is incomplete" in err


def test_refusals_go_through_the_command(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = image.read_bytes()
    assert main([str(image), str(image), "--yes"], interactive=False) == EXIT_REFUSED
    assert f"will not write to {image}:\n  {image} is the image itself" in output(capsys)[1]
    assert image.read_bytes() == before
    assert main([str(image), str(tmp_path), "--yes"], interactive=False) == EXIT_REFUSED
    assert "is a directory, not a block device or a regular file" in output(capsys)[1]
    assert main([str(tmp_path / "nope.img"), str(tmp_path / "vm.img")], interactive=False) == EXIT_REFUSED
    assert "nope.img: no such image file" in output(capsys)[1]
    assert main([str(image), str(tmp_path / "no-dir" / "vm.img")], interactive=False) == EXIT_REFUSED
    assert "cannot open" in output(capsys)[1]
    assert main([str(image), str(image / "vm.img"), "--yes"], interactive=False) == EXIT_REFUSED  # not a folder
    assert f"error: {image / 'vm.img'}: Not a directory" in output(capsys)[1]


def test_a_compressed_image_is_refused(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The release's .img.zst is not the image: written as it is, the stick would hold zstd's bytes."""
    subprocess.run(["zstd", "-q", str(image)], check=True)
    target = tmp_path / "vm.img"
    assert main([str(image) + ".zst", str(target), "--yes"], interactive=False) == EXIT_REFUSED
    assert f"disk.img.zst is zstd-compressed, not a disk image: write the .img beside it, or decompress it first " \
        f"(for example: zstd -d {image}.zst)" in output(capsys)[1]
    assert not target.exists()


def test_a_file_of_the_kernels_is_refused(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/proc and /sys files say they are empty (so nothing would be asked) and writing one changes the system."""
    comm = Path("/proc/self/comm")
    before = comm.read_text()
    assert main([str(image), str(comm), "--yes"], interactive=False) == EXIT_REFUSED
    assert f"{comm} is on proc, one of the kernel's interfaces, not storage" in output(capsys)[1]
    assert comm.read_text() == before


def test_a_file_that_cannot_be_sized_fails_clearly(tmp_path: Path, image: Path) -> None:
    """Sizing the target file fails (here a file size limit, as a FAT stick's 4 GiB would): exit 1 and why."""
    code = ("import resource, signal, sys\n"
            "from herd.build.flash import main\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
            "sys.exit(main(sys.argv[1:], interactive=False))\n")
    target = tmp_path / "vm.img"
    r = subprocess.run([sys.executable, "-c", code, str(image), str(target), "--yes"], capture_output=True,
                       text=True, env={**os.environ, "COLUMNS": "400"})
    assert r.returncode == EXIT_FAILED, r.stderr
    assert f"error: preparing {target} failed: File too large" in r.stderr
    assert "Traceback" not in r.stderr


def corrupt(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_bad_read_back_is_detected(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "vm.img"
    drop_cache = flashio.drop_cache

    def and_corrupt(fd: int, block: bool) -> None:  # between the write and the read-back
        drop_cache(fd, block)
        corrupt(target, 1 * MiB + 5000)

    monkeypatch.setattr(flashio, "drop_cache", and_corrupt)
    assert main([str(image), str(target)], interactive=False) == EXIT_FAILED
    out, err = output(capsys)
    assert out == ""
    assert f"verification failed: {target} does not read back as written in 1 of 4 ranges:\n" \
           "  blocks 256-271 (bytes 1048576-1114111)\n" in err


def test_ranges_longer_than_a_chunk(tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 8 KiB: a range is read, hashed and written in pieces, the next one read ahead."""
    monkeypatch.setattr(flashio, "CHUNK", 8192)
    b = bmap.create(image)
    with open(image, "rb") as f:
        pieces = [(c.range, c.offset, len(c.data), c.short) for c in flashio.chunks(f.fileno(), b)]
    assert pieces[:3] == [(0, 0, 8192, False), (1, 1 * MiB, 8192, False), (1, 1 * MiB + 8192, 8192, False)]
    assert len(pieces) == 1 + 8 + 1 + 1 and pieces[-1] == (3, 8 * MiB, 1000, False)
    target = tmp_path / "vm.img"
    assert main([str(image), str(target)], interactive=False) == EXIT_OK
    assert target.read_bytes() == image.read_bytes()
    corrupt(target, 1 * MiB + 60000)
    assert [(r.first, r.last) for r in flashio.verify(target, b)] == [(256, 271)]


def test_verify_names_every_bad_range(tmp_path: Path, image: Path) -> None:
    b = bmap.create(image)
    target = tmp_path / "vm.img"
    assert main([str(image), str(target)], interactive=False) == EXIT_OK
    assert flashio.verify(target, b) == []
    corrupt(target, 3 * MiB + 105)
    corrupt(target, 8 * MiB + 999)  # the last, short block
    assert [(r.first, r.last) for r in flashio.verify(target, b)] == [(768, 768), (2048, 2048)]
    os.truncate(target, 4 * MiB)  # a target that ends early fails the ranges it cannot hold
    assert [(r.first, r.last) for r in flashio.verify(target, b)] == [(768, 768), (2048, 2048)]
    os.truncate(target, 0)
    assert len(flashio.verify(target, b)) == 4


def test_ctrl_c_says_the_target_is_incomplete(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    writes = 0
    pwrite_all = flashio._pwrite_all

    def interrupted(fd: int, data: memoryview, offset: int) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise KeyboardInterrupt
        pwrite_all(fd, data, offset)

    monkeypatch.setattr(flashio, "_pwrite_all", interrupted)
    target = tmp_path / "vm.img"
    assert main([str(image), str(target)], interactive=False) == EXIT_INTERRUPTED
    assert f"interrupted: {target} is incomplete (8.0 KiB of 77.0 KiB written): flash it again before using it" \
        in output(capsys)[1]


def test_same_result_as_bmaptool_copy_with_our_bmap(tmp_path: Path, image: Path) -> None:
    ours = image.with_name("disk.img.bmap")
    ours.write_text(bmap.to_xml(bmap.create(image)))
    mine, theirs = tmp_path / "mine.img", tmp_path / "theirs.img"
    assert main([str(image), str(mine)], interactive=False) == EXIT_OK
    r = subprocess.run(["bmaptool", "copy", "--bmap", str(ours), str(image), str(theirs)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert mine.read_bytes() == theirs.read_bytes() == image.read_bytes()
    assert mine.stat().st_size == theirs.stat().st_size == SIZE


def test_build_py_hands_flash_over(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_main(["flash", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: build.py flash [-h] [--yes] [--bmap FILE] IMAGE DEVICE" in out
    assert "unmapped blocks are not written" in out and "Exit codes" in out
    assert build_main(["flash", str(image), str(tmp_path / "vm.img"), "--yes"]) == EXIT_OK
    assert (tmp_path / "vm.img").read_bytes() == image.read_bytes()


# ---------------------------------------------------------------------------------------------------------
# Loop devices, as sticks (root)


@pytest.fixture
def loop() -> Iterator[Callable[..., Path]]:
    attached: list[str] = []

    def attach(backing: Path, *options: str) -> Path:
        r = subprocess.run(["losetup", "-f", "--show", *options, str(backing)], capture_output=True, text=True,
                           check=True)
        attached.append(r.stdout.strip())
        return Path(attached[-1])

    try:
        yield attach
    finally:
        for dev in reversed(attached):
            subprocess.run(["losetup", "-d", dev], check=False)


def stick(path: Path, size: int) -> Path:
    path.write_bytes(b"\xaa" * size)  # an old stick's content
    return path


@pytest.mark.root
@pytest.mark.parametrize("chunk", [flashio.CHUNK, 8192])
def test_flash_to_a_loop_device(tmp_path: Path, image: Path, loop: Callable[[Path], Path],
                                capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                chunk: int) -> None:
    monkeypatch.setattr(flashio, "CHUNK", chunk)  # O_DIRECT from either buffer, at any chunk boundary
    backing = stick(tmp_path / "stick.img", 12 * MiB)
    dev = loop(backing)
    prompts: list[str] = []
    assert main([str(image), str(dev)], ask=lambda p: prompts.append(p) or "yes", interactive=True) == EXIT_OK
    out, err = output(capsys)
    assert f"{dev}: loop device {backing}, 12.0 MiB (loop)" in err and prompts
    assert out.startswith(f"flashed disk.img to {dev}: wrote 77.0 KiB of 8.0 MiB")
    with open(dev, "rb") as f:
        written = f.read()
    data = image.read_bytes()
    b = bmap.create(image)
    for r in b.ranges:  # mapped ranges as in the image; the rest keeps the old content (bmap semantics)
        offset, length = b.span(r)
        assert written[offset:offset + length] == data[offset:offset + length]
    assert written[2 * 4096:256 * 4096] == b"\xaa" * (254 * 4096)
    assert written[SIZE:] == b"\xaa" * (12 * MiB - SIZE)


@pytest.mark.root
def test_a_bmap_of_small_blocks_and_sha1_flashes_a_4k_sector_stick(tmp_path: Path, image: Path,
                                                                    loop: Callable[..., Path]) -> None:
    """Another tool's bmap: 1 KiB blocks, so ranges that start off a 4 KiB boundary (O_DIRECT to a stick of
    4 KiB sectors refuses those writes), and sha1 (older bmaptools); written and verified all the same, and a
    changed image still caught by its sha1s."""
    data = image.read_bytes()
    blocks = [(0, 4), (1025, 1087), (3072, 3072), (8192, 8192)]  # 1 KiB blocks over the image's extents
    ranges = tuple(bmap.BlockRange(a, b, hashlib.sha1(data[a * 1024:(b + 1) * 1024]).hexdigest()) for a, b in blocks)
    theirs = tmp_path / "theirs.bmap"
    theirs.write_text(bmap.to_xml(bmap.Bmap(SIZE, ranges, 1024, "sha1")))
    backing = stick(tmp_path / "stick.img", 12 * MiB)
    dev = loop(backing, "--sector-size", "4096")
    assert main([str(image), str(dev), "--yes", "--bmap", str(theirs)], interactive=False) == EXIT_OK
    with open(dev, "rb") as f:
        written = f.read()
    for a, b in blocks:
        end = min((b + 1) * 1024, SIZE)
        assert written[a * 1024:end] == data[a * 1024:end]
    assert written[5 * 1024:1025 * 1024] == b"\xaa" * (1020 * 1024)  # unmapped: the old content stays
    with open(image, "r+b") as f:
        f.seek(3 * MiB + 100)
        f.write(b"X")
    assert main([str(image), str(dev), "--yes", "--bmap", str(theirs)], interactive=False) == EXIT_REFUSED


@pytest.mark.root
def test_a_stick_swapped_after_the_question_is_not_written(tmp_path: Path, image: Path,
                                                           loop: Callable[..., Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The stick shown is pulled and another one takes its /dev name while the question waits."""
    first = stick(tmp_path / "first.img", 12 * MiB)
    second = stick(tmp_path / "second.img", 12 * MiB)
    dev = loop(first)

    def swap(prompt: str) -> str:
        subprocess.run(["losetup", "-d", str(dev)], check=True)
        subprocess.run(["losetup", str(dev), str(second)], check=True)
        return "yes"

    assert main([str(image), str(dev)], ask=swap, interactive=True) == EXIT_REFUSED
    err = output(capsys)[1]
    assert f"{dev} is not what was checked (" in err and "diskseq" in err and "nothing written" in err, err
    assert second.read_bytes() == first.read_bytes() == b"\xaa" * (12 * MiB)


@pytest.mark.root
def test_a_loop_device_smaller_than_the_image_is_refused(tmp_path: Path, image: Path,
                                                         loop: Callable[[Path], Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    backing = stick(tmp_path / "stick.img", 4 * MiB)
    dev = loop(backing)
    assert main([str(image), str(dev), "--yes"], interactive=False) == EXIT_REFUSED
    assert f"{dev} is 4.0 MiB, smaller than the image (8.0 MiB)" in output(capsys)[1]
    assert backing.read_bytes() == b"\xaa" * (4 * MiB)


@pytest.mark.root
def test_a_mounted_loop_device_is_refused(tmp_path: Path, image: Path, loop: Callable[[Path], Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    backing = tmp_path / "stick.img"
    with open(backing, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run(["mkfs.ext4", "-q", str(backing)], check=True)
    dev = loop(backing)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", str(dev), str(mnt)], check=True)
    try:
        before = backing.read_bytes()
        assert main([str(image), str(dev), "--yes"], interactive=False) == EXIT_REFUSED
        assert f"{dev} is mounted on {mnt}: unmount it first" in output(capsys)[1]
        assert backing.read_bytes() == before
        # And if the checks were wrong, the kernel's exclusive claim would still say no.
        with pytest.raises(flash.Refused, match="busy"):
            flash.open_target(read_target(dev, image), dev, image, SIZE, None)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.root
def test_a_loop_device_over_a_disk_that_must_not_be_written_is_refused(tmp_path: Path, image: Path,
                                                                       loop: Callable[[Path], Path],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A loop device writes through to what backs it: one over a mounted disk (or the root disk) is that disk."""
    backing = tmp_path / "stick.img"
    with open(backing, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run(["mkfs.ext4", "-q", str(backing)], check=True)
    disk = loop(backing)
    over = loop(disk)  # losetup takes a block device as well as a file
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", str(disk), str(mnt)], check=True)
    try:
        before = backing.read_bytes()
        assert main([str(image), str(over), "--yes"], interactive=False) == EXIT_REFUSED
        err = output(capsys)[1]
        assert f"{over} writes through to {disk}, which must not be written: {disk} is mounted on {mnt}" in err, err
        assert f"{disk} is the backing store of {over}" not in err  # the loop device flashed is no reason
        assert backing.read_bytes() == before
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # Unmounted, the disk under it is a loop device like any test stick: written through the one over it.
    assert main([str(image), str(over), "--yes"], interactive=False) == EXIT_OK


@pytest.mark.root
def test_a_loop_device_over_the_image_itself_is_refused(tmp_path: Path, image: Path, loop: Callable[[Path], Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    dev = loop(image)
    assert main([str(image), str(dev), "--yes"], interactive=False) == EXIT_REFUSED
    assert f"{dev} writes through to {image}, which must not be written: {image} is the image itself" in \
        output(capsys)[1]

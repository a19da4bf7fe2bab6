"""herd.slots.grubenv against the real grub-editenv (grub-common, a build host requirement): the same bytes after
the same edits, the same variables listed both ways, the same refusals when the block is full, the same reading
of odd blocks; and writes made in place."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from herd.slots import grubenv
from herd.slots.grubenv import SIZE, GrubenvError

GRUB_EDITENV = shutil.which("grub-editenv") or "/usr/bin/grub-editenv"


def editenv(path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert Path(GRUB_EDITENV).exists(), "grub-editenv (Debian package grub-common) is needed, as for any build"
    return subprocess.run([GRUB_EDITENV, str(path), *args], capture_output=True, text=True, check=check)


def grub_edit(path: Path, name: str, value: str | None) -> None:
    if value is None:
        editenv(path, "unset", name)
    else:
        editenv(path, "set", f"{name}={value}")


EDITS: list[tuple[str, str | None]] = [
    ("saved_entry", "0"),
    ("herd_default", "A"),
    ("back", "a\\b\\\\c\\"),             # backslashes, one at the end
    ("lines", "one\ntwo\n"),             # newlines, one at the end
    ("empty", ""),
    ("utf8", "é ü ✓"),
    ("with_eq", "x=y=z"),
    ("herd_default", "B"),               # the same length: in place
    ("saved_entry", "a longer value than before"),
    ("back", "s"),                       # shorter: what follows moves back, padding grows
    ("lines", None),                     # unset
    ("never_set", None),                 # unset of a missing variable: nothing
    ("lines", "back again"),             # set again: at the end
    ("herd_default", "A"),
]


def test_a_new_block_is_grub_editenvs(tmp_path: Path) -> None:
    editenv(tmp_path / "grubenv", "create")
    made = (tmp_path / "grubenv").read_bytes()
    assert grubenv.blank() == made
    assert len(made) == SIZE
    assert grubenv.parse(made) == {}


def test_the_same_edits_make_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    editenv(path, "create")
    block = grubenv.blank()
    model: dict[str, str] = {}
    for name, value in EDITS:
        grub_edit(path, name, value)
        block = grubenv.update(block, [(name, value)])
        if value is None:
            model.pop(name, None)
        else:
            model[name] = value
        assert path.read_bytes() == block, f"after {name}={value!r}"
        # Files grub-editenv makes parse to what was set; the listing is the one it prints.
        assert grubenv.parse(path.read_bytes()) == model
        assert grubenv.listing(block) == editenv(path, "list").stdout


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_make_the_same_bytes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "grubenv"
    editenv(path, "create")
    block = grubenv.blank()
    names = ["a", "b_1", "herd_try", "herd_tries", "x" * 30]
    alphabet = "ab\\\n=#é "
    for _ in range(30):
        name = rng.choice(names)
        value = None if rng.random() < 0.2 else "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        try:
            block = grubenv.update(block, [(name, value)])
        except GrubenvError:
            assert editenv(path, "set", f"{name}={value}", check=False).returncode != 0
        else:
            grub_edit(path, name, value)
        assert path.read_bytes() == block


def test_a_block_written_here_lists_the_same_in_grub_editenv(tmp_path: Path) -> None:
    env = {"herd_default": "A", "herd_try": "", "odd": "tab\tback\\slash\nnew line", "z": "é"}
    path = tmp_path / "grubenv"
    path.write_bytes(grubenv.render(env))
    assert editenv(path, "list").stdout == "".join(f"{k}={v}\n" for k, v in env.items())
    # ...and grub-editenv goes on editing it as one of its own.
    editenv(path, "set", "herd_try=B")
    assert grubenv.read(path) == {**env, "herd_try": "B"}


def test_a_full_block_is_refused_by_both_at_the_same_size(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    editenv(path, "create")
    free = SIZE - grubenv.used(grubenv.blank())
    fits = "v" * (free - len("big=\n"))
    grubenv.update(grubenv.blank(), {"big": fits})
    with pytest.raises(GrubenvError, match="too small"):
        grubenv.update(grubenv.blank(), {"big": fits + "v"})
    with pytest.raises(GrubenvError, match="too small"):  # an escape takes two bytes
        grubenv.update(grubenv.blank(), {"big": fits[:-1] + "\\"})
    refused = editenv(path, "set", f"big={fits}v", check=False)
    assert refused.returncode != 0 and "too small" in refused.stderr
    assert path.read_bytes() == grubenv.blank()
    editenv(path, "set", f"big={fits}")
    assert path.read_bytes() == grubenv.update(grubenv.blank(), {"big": fits})
    assert grubenv.used(path.read_bytes()) == SIZE


ODD_BLOCKS = {
    "a comment between variables": b"a=1\n# a comment = not a variable\nb=2\n",
    "a line without '=' is part of the next name": b"a=1\nno equals sign\nb=2\n",
    "no '=' before the end stops the reading": b"a=1\nno equals sign\n",
    "a later duplicate": b"a=1\nb=2\na=3\n",
    "an escaped newline in a comment": b"#x\\\ny=hidden\nc=3\n",
    "no newline before the padding": b"a=1\nb=2",
    "an escape of another byte": b"a=\\q\\#\n",
    "a backslash before the padding": b"a=1\nb=x\\",
}


@pytest.mark.parametrize("content", ODD_BLOCKS.values(), ids=ODD_BLOCKS.keys())
def test_odd_blocks_read_as_grub_reads_them(tmp_path: Path, content: bytes) -> None:
    head = grubenv.SIGNATURE + content
    block = head + b"#" * (SIZE - len(head))
    path = tmp_path / "grubenv"
    path.write_bytes(block)
    assert grubenv.listing(block) == editenv(path, "list").stdout


def test_what_load_env_sets() -> None:
    head = grubenv.SIGNATURE + b"a=1\nb=2\na=3\n"
    assert grubenv.parse(head + b"#" * (SIZE - len(head))) == {"a": "3", "b": "2"}
    head = grubenv.SIGNATURE + b"a=1\nno equals\nb=2\n"  # GRUB's name runs to the next '=', newline or not
    assert grubenv.parse(head + b"#" * (SIZE - len(head))) == {"a": "1", "no equals\nb": "2"}
    head = grubenv.SIGNATURE + b"a=1\nb=2"  # b has no newline before the padding: broken, a still counts
    assert grubenv.parse(head + b"#" * (SIZE - len(head))) == {"a": "1"}


def test_not_a_block() -> None:
    for block in (b"", b"# GRUB Environment Block\n", b"a=1\n" + b"#" * 1020, b"\0" * SIZE):
        with pytest.raises(GrubenvError, match="signature"):
            grubenv.parse(block)
        with pytest.raises(GrubenvError, match="signature"):
            grubenv.update(block, {"a": "1"})


def test_names_and_values_grub_could_not_read_back_are_refused() -> None:
    for name in ("", "1a", "a=b", "a b", "#a", "a\nb", "é"):
        with pytest.raises(GrubenvError, match="variable name"):
            grubenv.update(grubenv.blank(), {name: "x"})
    with pytest.raises(GrubenvError, match="NUL"):
        grubenv.update(grubenv.blank(), {"a": "x\0y"})


def test_bytes_that_are_not_utf8_write_back_unchanged() -> None:
    head = grubenv.SIGNATURE + b"a=\xff\xfe\n"
    block = head + b"#" * (SIZE - len(head))
    value = grubenv.parse(block)["a"]
    assert grubenv.render({"a": value}).startswith(grubenv.SIGNATURE + grubenv.MESSAGE + b"a=\xff\xfe\n")


def test_write_is_in_place(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    editenv(path, "create")
    editenv(path, "set", "keep=me", "herd_tries=3")
    before = path.stat()
    assert grubenv.write(path, {"herd_tries": "2", "new": "x"}) == {"keep": "me", "herd_tries": "2", "new": "x"}
    after = path.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, SIZE)
    assert sorted(os.listdir(tmp_path)) == ["grubenv"]  # no temporary file renamed over it
    assert editenv(path, "list").stdout == "keep=me\nherd_tries=2\nnew=x\n"
    assert grubenv.write(path, {"new": None}) == {"keep": "me", "herd_tries": "2"}


def test_write_refuses_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    path.write_bytes(grubenv.render({"a": "1"}))
    with pytest.raises(GrubenvError, match="too small"):
        grubenv.write(path, {"a": "2", "b": "x" * SIZE})
    assert path.read_bytes() == grubenv.render({"a": "1"})  # not even a's edit, which came first

    short = tmp_path / "short"
    short.write_bytes(grubenv.render({"a": "1"})[:512])
    with pytest.raises(GrubenvError, match="1024 bytes, this file is 512"):
        grubenv.write(short, {"a": "2"})
    long = tmp_path / "long"
    long.write_bytes(grubenv.render({"a": "1"}) + b"#")
    with pytest.raises(GrubenvError, match="1025 or more"):
        grubenv.write(long, {"a": "2"})

    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(OSError):
        grubenv.write(link, {"a": "2"})
    assert path.read_bytes() == grubenv.render({"a": "1"})
    with pytest.raises(FileNotFoundError):
        grubenv.write(tmp_path / "missing", {"a": "2"})

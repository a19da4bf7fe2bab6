"""The one module that runs commands, and the host check built on it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from herd.build.host import missing_packages
from herd.build.run import CommandError, in_private_namespace, run


def test_run_streams_lines_and_returns_output() -> None:
    seen: list[str] = []
    assert run(["sh", "-c", "echo one; echo two >&2"], on_line=seen.append) == "one\ntwo"
    assert seen == ["one", "two"]


def test_failure_names_the_command_its_code_and_output() -> None:
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "echo first; echo last words; exit 7"])
    message = str(info.value)
    assert "`sh -c 'echo first; echo last words; exit 7'`" in message
    assert "exit code 7" in message and "last words" in message
    assert info.value.code == 7


def test_missing_command() -> None:
    with pytest.raises(CommandError) as info:
        run(["herd-no-such-command", "x"])
    assert info.value.code == 127 and "not found" in str(info.value)


def test_interrupt_stops_the_command(tmp_path: Path) -> None:
    """Ctrl-C while a command runs: it is killed and reaped before the KeyboardInterrupt reaches the caller."""
    pidfile = tmp_path / "pid"
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    pid = int(pidfile.read_text())
    time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.root  # mount namespaces
def test_private_namespace_mounts_vanish(tmp_path: Path) -> None:
    run(in_private_namespace(["sh", "-c", f"mount -t tmpfs herd-test {tmp_path} && touch {tmp_path}/inside"]))
    assert not (tmp_path / "inside").exists()
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


def test_host_check_names_missing_tools_and_packages() -> None:
    reqs = [("sh", "dash"), ("herd-no-such-tool", "herd-tools"), ("/no/such/file", "some-package")]
    assert missing_packages(reqs) == [("herd-no-such-tool", "herd-tools"), ("/no/such/file", "some-package")]

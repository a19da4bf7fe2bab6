"""The one place the builder runs programs. Steps call `run()`; nothing else imports `sh`.

Keeping it here means every command is logged the same way, its output can feed a progress display, and a
failure always says which command failed with the tail of what it printed.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import sh

log = logging.getLogger("herd.build")

OnLine = Callable[[str], None]


class CommandError(Exception):
    def __init__(self, argv: Sequence[str], code: int, tail: Sequence[str]) -> None:
        self.argv = list(argv)
        self.code = code
        self.tail = list(tail)
        shown = "\n    ".join(self.tail) or "(no output)"
        super().__init__(f"`{shlex.join(self.argv)}` failed with exit code {code}; its last output:\n    {shown}")


def run(argv: Sequence[str | Path], *, on_line: OnLine | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None, input: bytes | str | None = None) -> str:
    """Run argv, stream its output lines to `on_line`, return the output; raise CommandError on failure."""
    args = [str(a) for a in argv]
    log.debug("$ %s", shlex.join(args))
    tail: deque[str] = deque(maxlen=25)
    collected: list[str] = []

    def line(text: str) -> None:
        text = text.rstrip("\n")
        tail.append(text)
        collected.append(text)
        log.debug("  %s", text)
        if on_line is not None:
            on_line(text)

    full_env = {**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
    try:
        process = sh.Command(args[0])(*args[1:], _out=line, _err_to_out=True, _env=full_env, _in=input,
                                      _cwd=str(cwd) if cwd else None, _encoding="utf-8",
                                      _decode_errors="replace", _bg=True, _bg_exc=False)
    except sh.CommandNotFound:
        raise CommandError(args, 127, [f"{args[0]}: command not found"]) from None
    try:
        process.wait()
    except sh.ErrorReturnCode as exc:
        raise CommandError(args, exc.exit_code, tail) from None
    except BaseException:
        # Ctrl-C or SIGTERM: the command must be gone (and reaped) before the steps' undo touches its files.
        _stop(process)
        raise
    return "\n".join(collected)


def _stop(process: sh.RunningCommand) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            process.signal(signum)
            process.wait(timeout=15)
            return
        except sh.TimeoutException:
            continue
        except (sh.ErrorReturnCode, sh.SignalException, ProcessLookupError, OSError):
            return


def in_private_namespace(argv: Sequence[str | Path]) -> list[str | Path]:
    """Wrap a command so its mounts and processes live in namespaces of their own.

    Whatever it mounts (debootstrap's /proc, a chroot's bind mounts) vanishes when it exits, and if it is
    killed (Ctrl-C) every process it started dies with it: no stale mount, no process left in a chroot.
    """
    return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", *argv]

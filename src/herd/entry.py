"""The zipapp's entry point: one file, two commands, chosen by the name it is run as (herdd, herdctl)."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    if Path(sys.argv[0]).name.startswith("herdctl"):
        from herd.ctl import main as ctl

        return ctl()
    from herd.daemon.main import main as daemon

    return daemon()


if __name__ == "__main__":
    sys.exit(main())

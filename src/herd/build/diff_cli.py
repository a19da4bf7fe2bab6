"""`build.py diff OLD_MANIFEST NEW_MANIFEST [--json]`: what changed between two releases (see manifest_diff).

Exit 0 whatever the differences (it is a report, not a test); 2 when a file is missing or not a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from herd.build.manifest_diff import ManifestError, check, diff, text

EXIT_BAD_INPUT = 2


def load(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "manifest.json"  # out/<release>/ is accepted too
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not a herd manifest (not JSON: {exc})") from None
    return check(data, str(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="build.py diff", description="What changed between two releases: per role, packages added, removed "
        "and upgraded, the kernel, herdd, config files, image sizes. Exit 0, or 2 for a bad manifest.")
    p.add_argument("old", type=Path, help="the older release's manifest.json (or its out/<release>/ directory)")
    p.add_argument("new", type=Path, help="the newer release's manifest.json (or its directory)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    try:
        result = diff(load(args.old), load(args.new))
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        sys.stdout.write(text(result))
    return 0

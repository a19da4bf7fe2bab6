"""The spec's reader: walks parsed TOML for the section parsers and collects every problem, each with its key path
and the file:line where it is; and the forms of value that several sections read.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------
# Finding a key's line: tomllib gives none, so map key paths to lines from the text itself. It understands
# what specs are written with (tables, arrays of tables, `key = value`); anything fancier just gets no line.

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def key_lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = ".".join(p.strip().strip('"') for p in header.group(2).split("."))
            if header.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = f"{name}[{counts[name]}]"
                lines.setdefault(name, number)  # the array as a whole: where its first table is
            else:
                # `[service.check]` after `[[service]]` belongs to the latest service
                parts = name.split(".")
                prefix = parts[0]
                table = f"{prefix}[{counts[prefix]}]" if prefix in counts else prefix
                if len(parts) > 1:
                    table += "." + ".".join(parts[1:])
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            key = assign.group(1).strip('"')
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


_ELEMENT = re.compile(r"^(.+)\[\d+\]$")
_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
          dict: "a table"}


class Reader:
    """Walks the parsed TOML, collecting every problem instead of stopping at the first. Each section's parser
    reads its keys through one of these: a value of the wrong type, an unknown or missing key, becomes a problem
    that names the key's path (`node[3].address`) and the file:line where it is."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = key_lines(text)
        self.problems: list[str] = []

    def where(self, path: str) -> str:
        probe = path
        while probe:
            if probe in self.lines:
                return f"{self.file}:{self.lines[probe]}"
            element = _ELEMENT.match(probe)
            probe = element.group(1) if element else probe.rpartition(".")[0]
        return self.file

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{self.where(path)}: {path}: {message}")

    def table(self, data: Mapping[str, Any], path: str, known: set[str]) -> Mapping[str, Any]:
        for key in data:
            if key not in known:
                hint = ", ".join(sorted(known))
                self.fail(f"{path}.{key}" if path else key, f"unknown key; expected one of: {hint}")
        return data

    def get(self, data: Mapping[str, Any], path: str, key: str, kind: type[T], default: T | None = None,
            *, required: bool = False) -> T | None:
        full = f"{path}.{key}" if path else key
        if key not in data:
            if required:
                hint = f"a [{full}] table" if kind is dict else f"`{key} = …` here"
                self.fail(full, f"missing; add {hint}")
            return default
        value = data[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            want = _KINDS.get(kind, kind.__name__)
            self.fail(full, f"must be {want}, got {type(value).__name__} {value!r}")
            return default
        if kind is float and not math.isfinite(value):
            # TOML has nan and inf: every range check (x <= 0, x < 2 * y) is false for nan, so it would pass.
            self.fail(full, f"must be a finite number, got {value}")
            return default
        return value  # type: ignore[no-any-return]

    def value(self, data: Mapping[str, Any], path: str, key: str, kind: type[T], default: T) -> T:
        """Like get() with a default, keeping given values that are falsy (0, 0.0, "") so they get checked."""
        got = self.get(data, path, key, kind, default)
        return default if got is None else got

    def convert(self, path: str, value: Any, parse: Callable[[Any], T], what: str) -> T | None:
        if value is None:  # missing or of the wrong type: get() has said so already
            return None
        try:
            return parse(value)
        except (ValueError, TypeError):
            self.fail(path, f"{value!r} is not {what}")
            return None

    def enum(self, data: Mapping[str, Any], path: str, key: str, kind: type[enum.StrEnum], default: Any) -> Any:
        raw = self.get(data, path, key, str)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            choices = ", ".join(m.value for m in kind)
            self.fail(f"{path}.{key}", f"{raw!r} is not one of: {choices}")
            return default


# ---------------------------------------------------------------------------------------------------------
# Forms of value that several sections read.

# A host name (cluster.name, node names): matched with fullmatch(), as `$` also matches before a final newline,
# and "web1\n" is no host name.
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def ipv4_text(value: Any) -> ipaddress.IPv4Address:
    """An address written as one, in quotes: TOML's 3405803786 would otherwise be taken for 203.0.113.10."""
    if not isinstance(value, str):
        raise TypeError(value)
    return ipaddress.IPv4Address(value)


def network_text(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network or a single address, from a string only (ipaddress would take 1 for 0.0.0.1/32)."""
    if not isinstance(value, str):
        raise ValueError(value)
    return ipaddress.ip_network(value, strict=False)

"""Recipes in `image/`: what goes into the base and into each role. Pure: reading and checking files."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from herd.spec import Role


class RecipeError(Exception):
    pass


@dataclass(frozen=True)
class BaseRecipe:
    packages: tuple[str, ...]
    kernel: str
    initramfs_modules: tuple[str, ...]


@dataclass(frozen=True)
class RoleRecipe:
    role: Role
    packages: tuple[str, ...]
    validate: tuple[str, ...] = ()  # commands run in the finished tree; a failure fails the build


def _load(path: Path, known: set[str]) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - known
    if unknown:
        raise RecipeError(f"{path}: unknown keys {sorted(unknown)}; expected {sorted(known)}")
    return data


def _strings(path: Path, data: dict[str, object], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RecipeError(f"{path}: {key} must be a list of package names")
    return tuple(value)


def load_base(image_dir: Path) -> BaseRecipe:
    path = image_dir / "base.toml"
    data = _load(path, {"packages", "kernel", "initramfs_modules"})
    kernel = data.get("kernel")
    if not isinstance(kernel, str) or not kernel:
        raise RecipeError(f"{path}: kernel must name the kernel package")
    return BaseRecipe(_strings(path, data, "packages"), kernel, _strings(path, data, "initramfs_modules"))


def load_role(image_dir: Path, role: Role) -> RoleRecipe:
    path = image_dir / f"{role.value}.toml"
    data = _load(path, {"packages", "validate"})
    return RoleRecipe(role, _strings(path, data, "packages"), _strings(path, data, "validate"))


def host_requirements(path: Path) -> list[tuple[str, str]]:
    """`command package` pairs from image/host-packages.txt (and test-packages.txt)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            command, package = line.split()
            pairs.append((command, package))
    return pairs

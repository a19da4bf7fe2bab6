"""herd: bootable cluster images (the builder) and the cluster daemon (herdd)."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Looked up when asked, not at import: DRBD's fence-peer handler imports herd on a failover's critical
    # path, and importlib.metadata costs it a fifth of a second on a slow box.
    if name != "__version__":
        raise AttributeError(name)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("herd")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.1.0"

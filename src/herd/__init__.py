"""herd: bootable cluster images (the builder) and the cluster daemon (herdd)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("herd")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

"""The running build's version: pyproject.toml's, read from the installed package's metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _installed() -> str:
    try:
        return version("replicator")
    except PackageNotFoundError:  # a checkout on sys.path that was never pip-installed
        return "0+unknown"


#: What ``replicator --version`` prints and ``replicator_build_info`` carries.
VERSION = _installed()

"""System binaries the tests start: a missing one fails the test with the package to install."""

from __future__ import annotations

import os
import shutil

import pytest

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def require_binary(name: str, debian_package: str) -> str:
    """The path of ``name``; fails the calling test (never skips) when it is not installed."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name!r} is not installed: apt-get install {debian_package}", pytrace=False)
    return found

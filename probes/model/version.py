"""mxlens's own version, from the installed package's metadata (pyproject.toml), so that
`--version`, every JSON document and every ticket say the same thing."""

from __future__ import annotations

from functools import cache


@cache
def mxlens_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mxlens")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"

"""Shared test setup: no test writes the user's own history database."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_STATE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # Set before any test module is imported, because some build a child environment from
    # os.environ at import time.
    path = tempfile.mkdtemp(prefix="mxlens-test-state-")
    _SESSION_STATE.append(path)
    os.environ["MXLENS_STATE_DIR"] = path


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _SESSION_STATE:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test records its checks under a $MXLENS_STATE_DIR of its own (in-process, and in
    children that inherit the environment), so no test sees another's runs."""
    path = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MXLENS_STATE_DIR", str(path))
        yield path

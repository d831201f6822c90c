"""Fixtures shared by the unit tests; the helpers they build on live in tests/support/.

No test writes the user's own history database: $MXLENS_STATE_DIR points at a temporary
directory for the whole session and at a fresh one for each test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.support.dns import DnsResponder
from tests.support.http import Server, http_server
from tests.support.pki import Issued, issue
from tests.support.smtp import FakeSmtp, Peer, write_cert_files

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


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsResponder]:
    """A DNS responder on 127.0.0.1 with an empty zone (NXDOMAIN for every name)."""
    server = await DnsResponder().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def srv() -> Iterator[Server]:
    """A loopback HTTP server; set `srv.routes[path]`, read `srv.hits`."""
    with http_server() as server:
        yield server


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeSmtp]]:
    """Start scripted SMTP servers: serve(handler, host="127.0.0.1"); all close after the test."""
    servers: list[FakeSmtp] = []

    def start(handler: Callable[[Peer], None], host: str = "127.0.0.1") -> FakeSmtp:
        server = FakeSmtp(handler, host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(chain file, key file) of a leaf for mx.test under a test CA; the chain holds both."""
    return write_cert_files(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    """root -> inter -> leaf for mx.example.test (SAN also *.example.test), via issue()."""
    root = issue("Test Root", ca=True)
    inter = issue("Test Intermediate", root, ca=True)
    leaf = issue("mx.example.test", inter, san=("mx.example.test", "*.example.test"))
    return {"root": root, "inter": inter, "leaf": leaf}

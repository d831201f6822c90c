"""The trust store (probes/net/trust.py): certifi, --ca-file and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.model.errors import CheckError
from probes.model.options import Options
from probes.net.trust import load_roots
from tests.support.pki import Issued


def test_load_roots_certifi_and_ca_file(tmp_path: Path, pki: dict[str, Issued]) -> None:
    roots = load_roots(Options())
    assert roots.description == "certifi" and len(roots.certs) > 50
    pem = tmp_path / "roots.pem"
    pem.write_bytes(pki["root"].pem)
    mine = load_roots(Options(ca_file=str(pem)))
    assert mine.description == str(pem)
    assert [c.subject for c in mine.certs] == [pki["root"].cert.subject]
    assert mine.ssl_context().get_ca_certs()[0]["subject"] == ((("commonName", "Test Root"),),)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file"),
        (b"hello", "not a PEM file"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ""),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no certificate"),
    ],
)
def test_bad_ca_file_is_a_check_error(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckError) as info:
        load_roots(Options(ca_file=str(path)))
    message = str(info.value)
    assert message.startswith(f"cannot read --ca-file {path}: ")
    assert reason in message and "\n" not in message

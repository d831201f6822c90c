"""Network text that would drive a terminal: a hostile SMTP server puts C1 controls, bidi
overrides, separators, tag characters and blank letters in its banner and an over-long name
in its certificate. `--json` escapes them, the text report shows stand-ins, and nothing but
the report reaches stdout/stderr (no Python warning)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import warnings
from pathlib import Path

import pytest

from mxlens_lab.smtp_server import Behaviour
from probes.model.safetext import is_hidden, json_escape_hidden, visible
from tests.hostile.peers import HostileWorld, key_pem
from tui.cli import main

pytestmark = pytest.mark.lab

DOMAIN = "hostile.test"
MX = f"mx1.{DOMAIN}"
HIDDEN = [
    "\x1b",
    "\x9b",  # C1 CSI: xterm acts on it in UTF-8 mode
    "\u202e",  # right-to-left override
    "\u2028",
    "\u2029",
    "\u061c",
    "\u00ad",
    "\u2060",
    "\u2064",
    "\U000e0041",  # tag LATIN CAPITAL LETTER A
    "\u3164",  # Hangul filler
    "\u115f",
    "\ufeff",
]
BANNER = ("220 " + MX + " ESMTP " + "x".join(HIDDEN) + " end").encode()


@pytest.mark.parametrize("ch", HIDDEN)
def test_visible_replaces_every_hidden_class(ch: str) -> None:
    assert is_hidden(ch)
    shown = visible(f"a{ch}b")
    assert ch not in shown and shown.startswith("a") and shown.endswith("b")


def test_printable_text_is_untouched() -> None:
    text = "Grüße, 東京, café, ½ – “quoted” ✓"
    assert visible(text) == text
    assert json_escape_hidden(json.dumps(text, ensure_ascii=False)) == json.dumps(
        text, ensure_ascii=False
    )


def test_json_escape_keeps_json_valid_and_the_text_exact() -> None:
    doc = {"k\u202e": "v" + "".join(HIDDEN), "list": ["\n", "\U000e0041"]}
    out = json_escape_hidden(json.dumps(doc, indent=2, ensure_ascii=False))
    assert not any(ch in out for ch in HIDDEN)
    assert json.loads(out) == doc


def long_name_leaf(tmp_path: Path) -> tuple[Behaviour, str]:
    """A leaf whose common name is 83 characters (X.509's upper bound is 64): cryptography
    warns when it reads it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from tests.support.pki import DAY, NOW, ec_key, issue

    root = issue("Hostile Test Root", ca=True)
    key = ec_key()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the very warning the check must not print
        cn = x509.NameAttribute(NameOID.COMMON_NAME, "a" * 70 + ".hostile.test", _validate=False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([cn]))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(MX)]), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    ca_file = tmp_path / "root.pem"
    ca_file.write_bytes(root.pem)
    from cryptography.hazmat.primitives.serialization import Encoding

    chain = cert.public_bytes(Encoding.PEM)
    return Behaviour(hostname=MX, cert_chain_pem=chain, key_pem=key_pem(key)), str(ca_file)


async def _child_stderr(args: list[str], **env: str) -> bytes:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "check",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **env},
    )
    _, err = await asyncio.wait_for(child.communicate(), 60)
    return err


async def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with warnings.catch_warnings():  # main() silences warnings process-wide; undo it after
        code = await asyncio.to_thread(main, ["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_check_output_carries_no_raw_control_and_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    behaviour, ca_file = long_name_leaf(tmp_path)
    behaviour.banner = BANNER
    async with HostileWorld(DOMAIN, [behaviour]) as world:
        ip, port = world.resolver
        common = [
            DOMAIN,
            "--resolver",
            f"{ip}:{port}",
            "--port",
            str(world.smtp_port),
            "--ca-file",
            ca_file,
            "--timeout",
            "2",
            "--no-extra-probes",
            "--no-endpoints",
        ]
        code, out, err = await _check(capsys, *common, "--json")
        assert err == "", err
        assert not [ch for ch in HIDDEN if ch in out]
        assert "\\u009b" in out and "\\u202e" in out and "\\udb40\\udc41" in out
        doc = json.loads(out)
        assert doc["schema"] == "mxlens/1"
        kept = json.dumps(doc, ensure_ascii=False)
        assert all(ch in kept for ch in HIDDEN[1:])  # the document itself keeps them verbatim
        code, out, err = await _check(capsys, *common)
        assert err == "", err
        assert not [ch for ch in HIDDEN if ch in out]
        assert "<U+202E>" in out
        # pytest collects warnings itself: only a separate process shows what stderr gets
        # (with the endpoint checks, which read the long name outside the chain code)
        with_endpoints = [a for a in common if a != "--no-endpoints"]
        err_bytes = await _child_stderr(with_endpoints)
        assert err_bytes == b"", err_bytes.decode()
        debug = await _child_stderr(with_endpoints, MXLENS_DEBUG="1")
        assert b"UserWarning" in debug  # the warning is real; only MXLENS_DEBUG shows it

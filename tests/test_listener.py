"""`mxlens listen`: a real listener on loopback, Python's smtplib as the sending server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from probes.model.options import Options
from probes.ownside.hello import parse_client_hello
from probes.ownside.judge import RECEIVERS
from probes.ownside.listener import (
    ListenOptions,
    ListenReady,
    ListenSession,
    ListenSessionDone,
    listen,
)
from tests.support.ownside import Pki, send
from tests.support.pki import issue

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "schema" / "mxlens-listen-1.json").read_text())
BOTH = (EKU.SERVER_AUTH, EKU.CLIENT_AUTH)


@pytest.fixture
def contoso(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


async def one_session(
    contoso: Pki,
    *,
    files: tuple[str, str] | None,
    tls: bool = True,
    connector: str | None = None,
    expect: str | None = None,
    accepted: tuple[str, ...] = (),
) -> tuple[ListenSession, str]:
    opts = ListenOptions(
        port=0,
        hostname="mx.test.invalid",
        once=True,
        receiver=RECEIVERS[connector] if connector else None,
        accepted_domains=accepted,
        options=Options(ca_file=str(contoso.roots), expect_name=expect, timeout=10),
    )
    reply: asyncio.Future[str] | None = None
    session: ListenSession | None = None
    async for event in listen(opts):
        if isinstance(event, ListenReady):
            reply = asyncio.ensure_future(asyncio.to_thread(send, event.port, files=files, tls=tls))
        elif isinstance(event, ListenSessionDone):
            session = event.session
    assert session is not None and reply is not None
    return session, await reply


def ids(session: ListenSession) -> dict[str, str]:
    return {f.id: f.severity for f in session.findings}


def doc_of(session: ListenSession, connector: str | None = None) -> dict[str, Any]:
    doc = session.to_json(RECEIVERS[connector] if connector else None, "0.0.0")
    jsonschema.validate(doc, SCHEMA)
    return doc


async def test_full_chain_with_the_expected_name(contoso: Pki) -> None:
    leaf = issue("mail.contoso.test", contoso.inter, eku=BOTH)
    session, reply = await one_session(
        contoso,
        files=contoso.client_files(leaf),
        connector="exo-inbound-certificate",
        expect="*.contoso.test",
    )
    assert reply.startswith("250 2.0.0 message discarded")
    assert ids(session) == {}
    assert session.exit_code() == 0
    assert session.verdict.endswith("would accept this sender.")
    doc = doc_of(session, "exo-inbound-certificate")
    assert doc["ehlo"] == "mail.contoso.test"
    assert doc["client_certificate"]["subject"] == "CN=mail.contoso.test"
    assert [c["subject"] for c in doc["chain"]] == [
        "CN=mail.contoso.test",
        "CN=Contoso Test Issuing CA",
    ]
    assert doc["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert doc["client_hello"]["versions"][0] == "TLSv1.3"
    assert doc["client_hello"]["suites"] and doc["client_hello"]["groups"]
    assert doc["messages_discarded"] and doc["rcpt_to"] == ["<someone@fabrikam.test>"]
    assert doc["validation"]["trusted"] is True
    assert {"handshake", "total"} <= set(doc["timings_ms"])


async def test_no_client_certificate(contoso: Pki) -> None:
    session, _ = await one_session(contoso, files=None)
    assert ids(session) == {"listen.no_client_cert": "info"}
    session, _ = await one_session(
        contoso, files=None, connector="exo-inbound-certificate", expect="*.contoso.test"
    )
    assert ids(session) == {"listen.no_client_cert": "error"} and session.exit_code() == 2
    assert doc_of(session)["client_certificate"] is None


async def test_missing_intermediate(contoso: Pki) -> None:
    leaf = issue("mail.contoso.test", contoso.inter, eku=BOTH)
    session, _ = await one_session(contoso, files=contoso.client_files(leaf, intermediate=False))
    assert ids(session) == {"cert.untrusted": "error"}
    assert len(session.chain) == 1
    session, _ = await one_session(
        contoso, files=contoso.client_files(leaf, intermediate=False), connector="postfix-ask-ccert"
    )
    assert ids(session) == {"cert.untrusted": "warning"}  # ask_ccert still delivers


async def test_wrong_name(contoso: Pki) -> None:
    leaf = issue("relay.fabrikam.test", contoso.inter, eku=BOTH)
    session, _ = await one_session(
        contoso,
        files=contoso.client_files(leaf),
        connector="exo-inbound-certificate",
        expect="*.contoso.test",
    )
    assert ids(session) == {"listen.sender_name_mismatch": "error"}
    summary = session.findings[0].summary
    assert "*.contoso.test" in summary and "relay.fabrikam.test" in summary


async def test_server_auth_only_client_certificate(contoso: Pki) -> None:
    leaf = issue("mail.contoso.test", contoso.inter, eku=(EKU.SERVER_AUTH,))
    session, _ = await one_session(
        contoso, files=contoso.client_files(leaf), connector="postfix-req-ccert"
    )
    assert ids(session) == {"cert.not_client_auth": "error"}


async def test_clear_text_delivery(contoso: Pki) -> None:
    session, reply = await one_session(
        contoso, files=None, tls=False, connector="exo-inbound-require-tls"
    )
    assert reply.startswith("250 2.0.0 message discarded")
    assert ids(session) == {"listen.no_tls": "error"}
    assert doc_of(session)["tls"] is None


def test_client_hello_parser_reads_a_real_hello() -> None:
    """Captured from Python's own client: a memory BIO handshake's first flight."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="mx.fabrikam.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    from probes.ownside.hello import handshake_messages

    messages, _ = handshake_messages(outgoing.read())
    offer = parse_client_hello(messages[0])
    assert offer is not None
    assert offer.sni == "mx.fabrikam.test"
    assert offer.versions[0] == "TLSv1.3" and "TLSv1.2" in offer.versions
    assert "TLS_AES_256_GCM_SHA384" in offer.suites and "x25519" in offer.groups
    assert parse_client_hello(b"\x02\x00\x00\x00") is None


def test_cli_once_json_names_the_certificate(contoso: Pki, tmp_path: Path) -> None:
    """`mxlens listen --once --json`: one JSON line, then the session's exit code."""
    leaf = issue("mail.contoso.test", contoso.inter, eku=BOTH)
    files = contoso.client_files(leaf)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "listen",
            "--port",
            "0",
            "--once",
            "--json",
            "--ca-file",
            str(contoso.roots),
            "--hostname",
            "mx.test.invalid",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        match = re.search(r"on 127\.0\.0\.1:(\d+) ", first)
        assert match, first
        send(int(match.group(1)), files=files)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    jsonschema.validate(doc, SCHEMA)
    assert doc["client_certificate"]["subject"] == "CN=mail.contoso.test"
    assert [c["subject"] for c in doc["chain"]][1] == "CN=Contoso Test Issuing CA"
    assert doc["ehlo"] == "mail.contoso.test" and doc["tls"]["version"] == "TLSv1.3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "--port must be a port number"),
        (["--address", "nowhere"], "bad --address"),
        (["--connector", "exo-inbound-certificate"], "needs --expect-name"),
        (["--connector", "nope"], "unknown connector"),
        (["--connector", "exo-inbound-onpremises"], "needs --accepted-domain"),
        (["--accepted-domain", "bad domain"], "bad --accepted-domain"),
        (["--cert", "/nonexistent.pem"], "--cert and --key go together"),
    ],
)
def test_bad_input_is_one_line_exit_3(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import main

    assert main(["listen", *args]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def _raw_dialogue(port: int, lines: list[bytes], *, after_starttls: bytes = b"") -> bytes:
    """Speak SMTP by hand (for what smtplib will not do); returns everything received."""
    import socket

    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        got += sock.recv(4096)
        for line in lines:
            sock.sendall(line)
            got += sock.recv(65536)
        if after_starttls:
            sock.sendall(after_starttls)
            try:
                while chunk := sock.recv(4096):
                    got += chunk
            except OSError:
                pass
    return got


async def _serve_one(contoso: Pki, talk: Any) -> tuple[ListenSession, Any]:
    opts = ListenOptions(port=0, once=True, options=Options(ca_file=str(contoso.roots), timeout=5))
    session: ListenSession | None = None
    result: Any = None
    async for event in listen(opts):
        if isinstance(event, ListenReady):
            result = asyncio.ensure_future(asyncio.to_thread(talk, event.port))
        elif isinstance(event, ListenSessionDone):
            session = event.session
    assert session is not None and result is not None
    return session, await result


async def test_a_failed_handshake_is_reported_with_the_offer_seen(contoso: Pki) -> None:
    def talk(port: int) -> bytes:
        # Clear text where the ClientHello should be: OpenSSL refuses it.
        return _raw_dialogue(
            port, [b"EHLO broken.test\r\n", b"STARTTLS\r\n"], after_starttls=b"HELO again\r\n"
        )

    session, _ = await _serve_one(contoso, talk)
    assert ids(session) == {"listen.handshake_failed": "error"}
    assert session.outcome == "handshake" and session.handshake_error
    assert doc_of(session)["handshake_error"] == session.handshake_error


async def test_message_size_cap(contoso: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    import probes.ownside.listener as listener

    monkeypatch.setattr(listener, "MAX_MESSAGE", 1000)

    def talk(port: int) -> bytes:
        body = b"".join(b"x" * 70 + b"\r\n" for _ in range(40)) + b".\r\n"
        return _raw_dialogue(
            port,
            [
                b"HELO big.test\r\n",
                b"MAIL FROM:<a@big.test>\r\n",
                b"RCPT TO:<b@x.test>\r\n",
                b"DATA\r\n",
                body,
                b"QUIT\r\n",
            ],
        )

    session, got = await _serve_one(contoso, talk)
    assert b"552 5.3.4 message larger than 1000 bytes" in got
    assert session.messages == []  # nothing was taken, nothing kept
    assert ids(session) == {"listen.no_tls": "warning"}


async def test_sessions_beyond_the_cap_get_421(
    contoso: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import probes.ownside.listener as listener

    monkeypatch.setattr(listener, "MAX_SESSIONS", 1)
    opts = ListenOptions(port=0, options=Options(ca_file=str(contoso.roots), timeout=5))
    gen = listen(opts)
    ready = await gen.__anext__()
    assert isinstance(ready, ListenReady)

    def two(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
            first.recv(4096)  # the first session is open and waiting
            with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
                return second.recv(4096)

    try:
        got = await asyncio.to_thread(two, ready.port)
    finally:
        await gen.aclose()
    assert got.startswith(b"421 4.3.2")


def test_the_schema_refuses_a_wrong_document() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": "mxlens/listen/1", "session": 0}, SCHEMA)


async def test_tls12_sender_names_its_group_and_suite(contoso: Pki) -> None:
    """Up to TLS 1.2 the group is read from our ServerKeyExchange, not the ServerHello."""
    leaf = issue("mail.contoso.test", contoso.inter, eku=BOTH)
    files = contoso.client_files(leaf)

    def talk(port: int) -> str:
        import smtplib

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
        ctx.load_cert_chain(*files)
        with smtplib.SMTP("127.0.0.1", port, local_hostname="old.contoso.test") as smtp:
            smtp.starttls(context=ctx)
            smtp.ehlo("old.contoso.test")
            return str(smtp.noop()[0])

    session, _ = await _serve_one(contoso, talk)
    assert session.negotiated is not None
    assert session.negotiated.version == "TLSv1.2"
    assert session.negotiated.cipher.startswith("ECDHE-") and session.negotiated.group
    assert session.offer is not None and session.offer.versions == ("TLSv1.2",)
    assert len(session.chain) == 2 and ids(session) == {}


async def test_our_own_certificate_with_cert_and_key(contoso: Pki, tmp_path: Path) -> None:
    """--cert/--key: the sender sees (and can verify) the certificate we were given."""
    server = issue("mx.test.invalid", contoso.inter)
    chain, key = contoso.client_files(server)
    opts = ListenOptions(
        port=0,
        hostname="mx.test.invalid",
        cert_file=chain,
        key_file=key,
        once=True,
        options=Options(ca_file=str(contoso.roots), timeout=5),
    )

    def talk(port: int) -> str:
        import smtplib

        ctx = ssl.create_default_context(cafile=str(contoso.roots))
        ctx.check_hostname = False  # smtplib would check 127.0.0.1; the chain is still verified
        with smtplib.SMTP("127.0.0.1", port, local_hostname="mail.contoso.test") as smtp:
            smtp.starttls(context=ctx)
            return str(smtp.noop()[0])

    presented = None
    reply: Any = None
    async for event in listen(opts):
        if isinstance(event, ListenReady):
            presented = event.certificate
            reply = asyncio.ensure_future(asyncio.to_thread(talk, event.port))
    assert presented is not None and presented.common_name == "mx.test.invalid"
    assert await reply == "250"  # the verifying client accepted our chain


async def test_onpremises_connector_wants_an_accepted_domain(contoso: Pki) -> None:
    """The 2023-11 rule: the certificate's or the MAIL FROM domain must be accepted."""
    leaf = issue("relay.fabrikam.test", contoso.inter, eku=BOTH)
    files = contoso.client_files(leaf)
    onprem = "exo-inbound-onpremises"
    # MAIL FROM postmaster@contoso.test: accepted, whatever the certificate says.
    session, _ = await one_session(
        contoso, files=files, connector=onprem, accepted=("contoso.test",)
    )
    assert ids(session) == {}
    # The certificate's domain: relay.fabrikam.test is below fabrikam.test.
    session, _ = await one_session(
        contoso, files=files, connector=onprem, accepted=("fabrikam.test",)
    )
    assert ids(session) == {}
    session, _ = await one_session(
        contoso, files=files, connector=onprem, accepted=("northwind.test",)
    )
    assert ids(session) == {"listen.not_accepted_domain": "error"}
    summary = session.findings[0].summary
    assert "relay.fabrikam.test" in summary and "postmaster@contoso.test" in summary

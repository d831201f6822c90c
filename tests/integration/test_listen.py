"""Real sending servers deliver through `mxlens listen`: Postfix (smtp_tls_chain_files), Exim
(tls_certificate on its smtp transport) and swaks (--tls-cert).

Each sender delivers four times, presenting: a matching certificate with its intermediate, a
certificate with a wrong name, a leaf without its intermediate, and no certificate. One
listener per sender runs in a thread for the whole module and is judged as an Exchange Online
inbound connector with TlsSenderCertificateName *.contoso.test, so every case has one exact
set of findings. The private PKI is made here; nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import queue
import shutil
import smtplib
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from probes.model.options import Options
from probes.ownside.judge import RECEIVERS
from probes.ownside.listener import (
    ListenOptions,
    ListenReady,
    ListenSession,
    ListenSessionDone,
    listen,
)
from tests.integration import exim
from tests.integration.postfix import Postfix, PostfixError
from tests.integration.postfix import unavailable_reason as postfix_unavailable
from tests.support.pki import Issued, issue

EXPECT = "*.contoso.test"
CONNECTOR = "exo-inbound-certificate"
# case -> the findings (id: severity) the inbound connector's view must show, exactly
CASES: dict[str, dict[str, str]] = {
    "matching": {},
    "wrong-name": {"listen.sender_name_mismatch": "error"},
    "no-intermediate": {"cert.untrusted": "error"},
    "no-certificate": {"listen.no_client_cert": "error"},
}
WAIT = 60.0


@dataclass
class Material:
    """The PKI and one PEM file per case (key, leaf, and for some the intermediate)."""

    root: Issued
    inter: Issued
    dir: Path
    files: dict[str, Path | None]
    leaves: dict[str, Issued]

    @property
    def roots(self) -> Path:
        return self.dir / "roots.pem"


@pytest.fixture(scope="module")
def material() -> Iterator[Material]:
    # Readable by the peers' own users (postfix, Debian-exim): not under pytest's 0700 tmp.
    base = Path(tempfile.mkdtemp(prefix="mxlens-listen-"))
    os.chmod(base, 0o755)
    root = issue("Contoso Test Root", ca=True)
    inter = issue("Contoso Test Issuing CA", root, ca=True)
    (base / "roots.pem").write_bytes(root.pem)
    both = (EKU.SERVER_AUTH, EKU.CLIENT_AUTH)
    leaves = {
        "matching": issue("mail.contoso.test", inter, eku=both),
        "wrong-name": issue("relay.fabrikam.test", inter, eku=both),
        "no-intermediate": issue("mail.contoso.test", inter, eku=both),
        # swaks 20201014 sends only the first certificate of --tls-cert (it loads the file
        # with SSL_CTX_use_certificate_file), so its cases that must carry a complete chain
        # use leaves issued by the root itself.
        "swaks-matching": issue("mail.contoso.test", root, eku=both),
        "swaks-wrong-name": issue("relay.fabrikam.test", root, eku=both),
    }
    files: dict[str, Path | None] = {"no-certificate": None}
    for name, leaf in leaves.items():
        key = leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        extra = b"" if name == "no-intermediate" else inter.pem
        for part, data in (
            ("key", key),
            ("certs", leaf.pem + extra),
            ("all", key + leaf.pem + extra),
        ):
            path = base / f"{name}.{part}.pem"
            path.write_bytes(data)
            os.chmod(path, 0o644)  # a throwaway test key, read by the peers' unprivileged users
        if name in CASES:
            files[name] = base / f"{name}.all.pem"
    try:
        yield Material(root, inter, base, files, leaves)
    finally:
        shutil.rmtree(base, ignore_errors=True)


class ListenerThread:
    """`mxlens listen`'s engine in a thread of its own; sessions arrive on a queue."""

    def __init__(self, material: Material) -> None:
        self.opts = ListenOptions(
            address="127.0.0.1",
            port=0,
            hostname="mx.listen.invalid",
            receiver=RECEIVERS[CONNECTOR],
            options=Options(ca_file=str(material.roots), expect_name=EXPECT, timeout=20),
        )
        self.sessions: queue.Queue[ListenSession] = queue.Queue()
        self.ready: queue.Queue[int] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            async for event in listen(self.opts):
                if isinstance(event, ListenReady):
                    self.ready.put(event.port)
                elif isinstance(event, ListenSessionDone):
                    self.sessions.put(event.session)

        self.task = self.loop.create_task(main())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        finally:
            self.loop.close()

    def __enter__(self) -> ListenerThread:
        self.thread.start()
        self.port = self.ready.get(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=10)

    def next_session(self, what: str) -> ListenSession:
        try:
            return self.sessions.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(
                f"no session reached mxlens listen within {WAIT:.0f} s: {what}"
            ) from None


def _judged(session: ListenSession) -> dict[str, str]:
    return {f.id: f.severity for f in session.findings}


def _describe(session: ListenSession) -> str:
    lines = [f"{f.severity} {f.id}: {f.summary}" for f in session.findings]
    lines += [f"{t.dir} {t.text}" for t in session.transcript]
    return "\n".join(lines)


LISTEN_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "schema" / "mxlens-listen-1.json").read_text()
)


def _assert_case(
    case: str,
    session: ListenSession,
    material: Material,
    ehlo: str,
    *,
    leaf_name: str | None = None,
    sends_chain: bool = True,
) -> None:
    assert _judged(session) == CASES[case], _describe(session)
    doc = session.to_json(RECEIVERS[CONNECTOR], "test", EXPECT)
    jsonschema.validate(doc, LISTEN_SCHEMA)
    assert doc["exit"] == (2 if CASES[case] else 0)
    assert session.starttls and session.negotiated is not None, _describe(session)
    assert session.ehlo and session.ehlo[-1] == ehlo
    assert session.messages, "the message was not transferred"
    assert session.offer is not None and session.offer.suites
    if case == "no-certificate":
        assert session.chain == ()
        return
    leaf = material.leaves[leaf_name or case]
    assert session.chain[0].sha256 == leaf.info.sha256
    want = 2 if sends_chain and case != "no-intermediate" else 1
    assert len(session.chain) == want, [c.subject for c in session.chain]


# --------------------------------------------------------------------------- swaks


def _swaks() -> str:
    path = shutil.which("swaks")
    if path is None:
        pytest.skip("swaks is not installed (run scripts/install-peers-swaks as root)")
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_swaks_delivers_through_listen(case: str, material: Material) -> None:
    swaks = _swaks()
    with ListenerThread(material) as listener:
        args = [swaks, "--server", "127.0.0.1", "--port", str(listener.port), "--tls"]
        args += ["--ehlo", "mail.contoso.test", "--from", "a@contoso.test", "--to", "b@x.test"]
        name = f"swaks-{case}" if case in ("matching", "wrong-name") else case
        if material.files[case] is not None:
            args += ["--tls-cert", str(material.dir / f"{name}.certs.pem")]
            args += ["--tls-key", str(material.dir / f"{name}.key.pem")]
        done = subprocess.run(args, capture_output=True, text=True, timeout=WAIT, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "message discarded by mxlens listen" in done.stdout
        session = listener.next_session(f"swaks {case}")
    _assert_case(case, session, material, "mail.contoso.test", leaf_name=name, sends_chain=False)


# --------------------------------------------------------------------------- Postfix


def _postfix_transports(material: Material) -> str:
    lines = []
    for case, path in material.files.items():
        chain = (
            f"-o smtp_tls_chain_files={path}" if path is not None else "-o smtp_tls_chain_files="
        )
        lines.append(f"{case} unix - - n - - smtp {chain}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def postfix_sender(material: Material) -> Iterator[tuple[Postfix, ListenerThread]]:
    reason = postfix_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with ListenerThread(material) as listener:
        routes = ", ".join(
            f"{case}.test={case}:[127.0.0.1]:{listener.port}" for case in material.files
        )
        pf = Postfix(
            "sender",
            address="127.0.0.1",
            port=exim.free_port("127.0.0.1"),
            hostname="mail.contoso.test",
            chain_pem=None,
            key_pem=None,
            main={
                "smtpd_tls_security_level": "none",
                "smtp_tls_security_level": "encrypt",
                "smtp_tls_loglevel": "1",
                "smtp_helo_name": "mail.contoso.test",
                "transport_maps": f"inline:{{{routes}}}",
                "relay_domains": ", ".join(f"{c}.test" for c in material.files),
                "smtpd_relay_restrictions": "permit_mynetworks, reject",
            },
            master_extra=_postfix_transports(material),
        )
        try:
            pf.start()
        except PostfixError as exc:
            pf.cleanup()
            pytest.skip(f"a private Postfix instance does not start here: {exc}")
        try:
            yield pf, listener
        finally:
            pf.cleanup()


@pytest.mark.parametrize("case", list(CASES))
def test_postfix_delivers_through_listen(
    case: str, material: Material, postfix_sender: tuple[Postfix, ListenerThread]
) -> None:
    pf, listener = postfix_sender
    with smtplib.SMTP(pf.address, pf.port, local_hostname="client.contoso.test", timeout=20) as s:
        s.sendmail("postmaster@contoso.test", [f"someone@{case}.test"], b"Subject: t\r\n\r\nhi\r\n")
    try:
        session = listener.next_session(f"postfix {case}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- postfix log ---\n{pf.log()}") from None
    _assert_case(case, session, material, "mail.contoso.test")


# --------------------------------------------------------------------------- Exim


def _exim_config(binary: str, work: Path, material: Material, port: int) -> str:
    routers = []
    transports = []
    for case, path in material.files.items():
        name = case.replace("-", "_")
        routers.append(
            f"to_{name}:\n  driver = manualroute\n  domains = {case}.test\n"
            f"  route_list = * 127.0.0.1\n  self = send\n  transport = t_{name}\n"
        )
        cert = (
            f"  tls_certificate = {material.dir}/{case}.certs.pem\n"
            f"  tls_privatekey = {material.dir}/{case}.key.pem\n"
            if path is not None
            else ""
        )
        transports.append(
            f"t_{name}:\n  driver = smtp\n  port = {port}\n  allow_localhost\n"
            f"  hosts_require_tls = *\n  helo_data = mail.contoso.test\n{cert}"
        )
    return (
        f"exim_path = {binary}\nprimary_hostname = mail.contoso.test\n"
        f"spool_directory = {work}/spool\nlog_file_path = {work}/log/%slog\n"
        "keep_environment =\nrfc1413_hosts =\nhost_lookup =\n"
        "begin routers\n"
        + "".join(routers)
        + "begin transports\n"
        + "".join(transports)
        + "begin retry\n* * F,1m,1m\n"
    )


@pytest.fixture(scope="module")
def exim_sender(material: Material) -> Iterator[tuple[str, Path, ListenerThread]]:
    reason = exim.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    binary = exim.exim_binary()
    assert binary is not None
    work = Path(tempfile.mkdtemp(prefix="mxlens-exim-sender-"))
    os.chmod(work, 0o755)
    user = pwd.getpwnam(exim.EXIM_USER)
    for sub in ("spool", "log"):
        (work / sub).mkdir()
        os.chown(work / sub, user.pw_uid, user.pw_gid)
    try:
        with ListenerThread(material) as listener:
            conf = work / "exim.conf"
            conf.write_text(_exim_config(binary, work, material, listener.port))
            yield binary, conf, listener
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("case", list(CASES))
def test_exim_delivers_through_listen(
    case: str, material: Material, exim_sender: tuple[str, Path, ListenerThread]
) -> None:
    binary, conf, listener = exim_sender
    # -odf: deliver in the foreground, so the session is over when the command returns.
    done = subprocess.run(
        [binary, "-C", str(conf), "-odf", "-oi", "-f", "postmaster@contoso.test", f"b@{case}.test"],
        input=b"Subject: t\n\nhi\n",
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    try:
        session = listener.next_session(f"exim {case}")
    except AssertionError as exc:
        log = conf.parent / "log" / "mainlog"
        text = log.read_text(errors="replace") if log.exists() else "(no mainlog)"
        raise AssertionError(
            f"{exc}\n{done.stderr!r}\n--- exim mainlog ---\n{text[-3000:]}"
        ) from None
    _assert_case(case, session, material, "mail.contoso.test")

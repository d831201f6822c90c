"""`mxlens cert FILE`: PEM, DER and PKCS#12 files judged through the real command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from probes.ownside.certfile import exchange_name_matches
from tests.support.http import Route, closed_port, http_server
from tests.support.pki import Issued, ec_key, issue
from tui.cli import main

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "schema" / "mxlens-cert-1.json").read_text())
BOTH = (EKU.SERVER_AUTH, EKU.CLIENT_AUTH)


def _key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class Pki:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = issue("Contoso Test Root", ca=True)
        self.inter = issue("Contoso Test Issuing CA", self.root, ca=True)
        self.roots = tmp / "roots.pem"
        self.roots.write_bytes(self.root.pem)

    def leaf(self, **kw: Any) -> Issued:
        kw.setdefault("eku", BOTH)
        return issue(kw.pop("cn", "mail.contoso.test"), self.inter, **kw)

    def write(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def pfx(self, leaf: Issued, password: bytes, *, legacy: bool = False) -> str:
        if legacy:
            # What older Windows exports ("TripleDES-SHA1"); newer ones use AES256-SHA256.
            enc = (
                serialization.PrivateFormat.PKCS12.encryption_builder()
                .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                .hmac_hash(hashes.SHA1())
                .build(password)
            )
        else:
            enc = serialization.BestAvailableEncryption(password)
        data = pkcs12.serialize_key_and_certificates(
            b"mail.contoso.test", leaf.key, leaf.cert, [self.inter.cert], enc
        )
        return self.write("export.pfx", data)


@pytest.fixture
def contoso(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["cert", *args, "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out) if out.strip() else {}
    if doc:
        jsonschema.validate(doc, SCHEMA)
        assert doc["exit"] == code
    return code, doc, err


def ids(doc: dict[str, Any]) -> set[str]:
    return {f["id"] for f in doc["findings"]}


@pytest.mark.parametrize("legacy", [False, True], ids=["aes256-sha256", "3des-sha1"])
def test_pfx_exported_with_a_password(
    contoso: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str], legacy: bool
) -> None:
    leaf = contoso.leaf()
    pfx = contoso.pfx(leaf, b"Pa55 word!", legacy=legacy)
    pw = contoso.write("pw.txt", b"Pa55 word!\r\n")
    code, doc, err = run(capsys, pfx, "--password-file", pw, "--ca-file", str(contoso.roots))
    assert doc["format"] == "pkcs12"
    assert doc["key"] == {
        "present": True,
        "source": "file",
        "matches": True,
        "type": "EC secp256r1",
    }
    assert [c["subject"] for c in doc["certificates"]] == [
        "CN=mail.contoso.test",
        "CN=Contoso Test Issuing CA",
    ]
    assert doc["validation"]["trusted"] is True
    # The test PKI names no OCSP/CRL: the only thing left to say.
    assert ids(doc) == {"ca.no_revocation_info"} and code == 1


def test_pfx_without_its_password_is_one_line_and_exit_3(
    contoso: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    pfx = contoso.pfx(contoso.leaf(), b"secret")
    code, doc, err = run(capsys, pfx, "--ca-file", str(contoso.roots))
    assert code == 3 and doc == {}
    assert err.count("\n") == 1 and "password-protected PKCS#12" in err
    assert "--password-file" in err


def test_pfx_with_a_wrong_password(contoso: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    pfx = contoso.pfx(contoso.leaf(), b"secret")
    pw = contoso.write("pw.txt", b"not it\n")
    code, _, err = run(capsys, pfx, "--password-file", pw)
    assert code == 3 and err.count("\n") == 1 and "wrong password" in err


def test_leaf_without_its_intermediate_exits_2(
    contoso: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = contoso.leaf()
    path = contoso.write("leaf.pem", leaf.pem + _key_pem(leaf.key))
    code, doc, _ = run(capsys, path, "--ca-file", str(contoso.roots), "--no-endpoints")
    assert code == 2
    assert ids(doc) == {"cert.untrusted"}
    assert "missing issuer: CN=Contoso Test Issuing CA" in doc["findings"][0]["summary"]


def test_leaf_without_intermediate_but_caissuers_is_incomplete(
    contoso: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exchange Online does not fetch intermediates: complete only via AIA is still an error."""
    with http_server() as srv:
        srv.routes["/ca.der"] = Route(body=contoso.inter.der)
        leaf = contoso.leaf(ca_issuers=(srv.url("/ca.der"),))
        path = contoso.write("leaf.pem", leaf.pem + _key_pem(leaf.key))
        code, doc, _ = run(
            capsys,
            path,
            "--ca-file",
            str(contoso.roots),
            "--no-endpoints",
            "--allow-private-endpoints",  # the test's CA serves on 127.0.0.1
        )
    assert code == 2
    assert ids(doc) == {"cert.incomplete_chain"}
    assert "the file did not send" in doc["findings"][0]["summary"]


def test_a_key_that_does_not_match_exits_2(
    contoso: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = contoso.leaf()
    path = contoso.write("chain.pem", leaf.pem + contoso.inter.pem + _key_pem(ec_key()))
    code, doc, _ = run(capsys, path, "--ca-file", str(contoso.roots), "--no-endpoints")
    assert code == 2
    assert ids(doc) == {"cert.key_mismatch"}
    assert doc["key"]["matches"] is False


def test_separate_key_file_and_der_certificate(
    contoso: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = contoso.leaf()
    der = contoso.write("leaf.cer", leaf.der)
    key = contoso.write("leaf.key", _key_pem(leaf.key))
    code, doc, _ = run(capsys, der, "--key", key, "--ca-file", str(contoso.roots), "--no-endpoints")
    assert doc["format"] == "der" and doc["key"]["matches"] is True
    assert doc["key"]["source"] == f"--key {key}"
    assert ids(doc) == {"cert.untrusted"}  # a lone DER leaf has no intermediate either
    code, doc, _ = run(capsys, der, "--ca-file", str(contoso.roots), "--no-endpoints")
    assert "cert.no_key" in ids(doc)


def test_server_auth_only_cannot_send(contoso: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    leaf = contoso.leaf(eku=(EKU.SERVER_AUTH,))
    path = contoso.write("chain.pem", leaf.pem + contoso.inter.pem + _key_pem(leaf.key))
    code, doc, _ = run(capsys, path, "--ca-file", str(contoso.roots), "--no-endpoints")
    assert ids(doc) == {"cert.not_client_auth"} and code == 1
    code, doc, _ = run(
        capsys,
        path,
        "--ca-file",
        str(contoso.roots),
        "--no-endpoints",
        "--connector",
        "postfix-req-ccert",
    )
    assert code == 2 and doc["connector"]["name"] == "postfix-req-ccert"


@pytest.mark.parametrize(
    ("expect", "found"),
    [
        ("mail.contoso.test", set()),
        ("*.contoso.test", set()),
        ("mail.fabrikam.test", {"cert.expected_name_mismatch"}),
        ("<I>CN=Contoso Test Issuing CA<S>CN=mail.contoso.test", set()),
        ("<I>CN=Someone Else CA<S>CN=mail.contoso.test", {"cert.expected_name_mismatch"}),
    ],
)
def test_expected_names_including_exchange_form(
    contoso: Pki, capsys: pytest.CaptureFixture[str], expect: str, found: set[str]
) -> None:
    leaf = contoso.leaf()
    path = contoso.write("chain.pem", leaf.pem + contoso.inter.pem + _key_pem(leaf.key))
    _, doc, _ = run(
        capsys, path, "--ca-file", str(contoso.roots), "--no-endpoints", "--expect-name", expect
    )
    assert ids(doc) == found


def test_exchange_name_form_parsing(contoso: Pki) -> None:
    cert = contoso.leaf().cert
    ok = exchange_name_matches("<I>CN=Contoso Test Issuing CA<S>CN=mail.contoso.test", cert)
    assert ok == (True, "")
    assert exchange_name_matches("mail.contoso.test", cert) is None
    bad = exchange_name_matches("<I>CN=Contoso Test Issuing CA<S>CN=smtp.contoso.test", cert)
    assert bad is not None and not bad[0] and "subject is CN=mail.contoso.test" in bad[1]


def test_endpoints_are_checked_from_here(contoso: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/ca.crl"
    leaf = contoso.leaf(crl=(dead,))
    path = contoso.write("chain.pem", leaf.pem + contoso.inter.pem + _key_pem(leaf.key))
    code, doc, _ = run(
        capsys,
        path,
        "--ca-file",
        str(contoso.roots),
        "--timeout",
        "3",
        "--allow-private-endpoints",
    )
    assert [(e["kind"], e["url"], e["ok"]) for e in doc["endpoints"]] == [("crl", dead, False)]
    assert {"ca.crl_unreachable", "ca.revocation_unavailable"} <= ids(doc)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\x00garbage" * 10, "not PEM, DER or PKCS#12")],
)
def test_unreadable_files_give_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    assert main(["cert", str(path)]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err


def test_missing_file_and_bad_connector(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "/nonexistent/x.pfx"]) == 3
    assert "cannot read certificate file" in capsys.readouterr().err
    assert main(["cert", "/nonexistent/x.pfx", "--connector", "exo-inbound-certificate"]) == 3
    assert "needs --expect-name" in capsys.readouterr().err


def test_encrypted_pem_key_needs_the_password(
    contoso: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = contoso.leaf()
    key = leaf.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"k3y"),
    )
    path = contoso.write("chain.pem", leaf.pem + contoso.inter.pem + key)
    code, _, err = run(capsys, path, "--no-endpoints")
    assert code == 3 and "is encrypted" in err and err.count("\n") == 1
    pw = contoso.write("pw", b"k3y")
    code, doc, _ = run(
        capsys, path, "--password-file", pw, "--ca-file", str(contoso.roots), "--no-endpoints"
    )
    assert code == 0 and doc["key"]["matches"] is True and ids(doc) == set()


def test_the_schema_refuses_a_wrong_document() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": "mxlens/cert/1", "format": "p7b"}, SCHEMA)


def test_password_asked_on_a_terminal(contoso: Pki) -> None:
    """No --password-file, but a terminal: getpass asks on it, and the PFX opens."""
    import os
    import pty
    import subprocess
    import sys

    pfx = contoso.pfx(contoso.leaf(), b"typed at the prompt")
    leader, follower = pty.openpty()

    def controlling_tty() -> None:
        import fcntl
        import termios

        os.setsid()
        fcntl.ioctl(follower, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "cert", pfx, "--ca-file", str(contoso.roots), "--json"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
        preexec_fn=controlling_tty,
        cwd=ROOT,
    )
    os.close(follower)
    seen = b""
    try:
        while b"Password for" not in seen:
            chunk = os.read(leader, 1024)
            assert chunk, seen
            seen += chunk
        os.write(leader, b"typed at the prompt\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    assert doc["format"] == "pkcs12" and doc["key"]["matches"] is True
    assert b"typed at the prompt" not in seen  # getpass does not echo it


@pytest.mark.parametrize("encoding", ["der", "pem"])
def test_p7b_chain_without_key(
    contoso: Pki, capsys: pytest.CaptureFixture[str], encoding: str
) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs7

    leaf = contoso.leaf()
    enc = serialization.Encoding.DER if encoding == "der" else serialization.Encoding.PEM
    data = pkcs7.serialize_certificates([contoso.inter.cert, leaf.cert], enc)
    path = contoso.write("chain.p7b", data)
    code, doc, _ = run(capsys, path, "--ca-file", str(contoso.roots), "--no-endpoints")
    assert doc["format"] == "pkcs7"
    assert doc["certificates"][0]["subject"] == "CN=mail.contoso.test"  # the leaf first
    assert ids(doc) == {"cert.no_key"} and doc["validation"]["trusted"] is True


def test_private_endpoints_are_not_fetched_unless_allowed(
    contoso: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate chooses its URLs: one on loopback is left alone by default, as in check."""
    dead = f"http://127.0.0.1:{closed_port()}/ca.crl"
    leaf = contoso.leaf(crl=(dead,))
    path = contoso.write("chain.pem", leaf.pem + contoso.inter.pem + _key_pem(leaf.key))
    _, doc, _ = run(capsys, path, "--ca-file", str(contoso.roots), "--timeout", "3")
    assert "ca.endpoint_not_fetched" in ids(doc)
    assert "ca.crl_unreachable" not in ids(doc)

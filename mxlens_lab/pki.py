"""The lab's private PKI: root and intermediate CAs, leaf certificates, OCSP answers and CRLs.

Everything is generated in memory at start-up with EC P-256 keys (fast: a whole lab's PKI
takes milliseconds); RSA only where a scenario asks for it (weak keys, RSA chains).

URL layout under `http_base` (served by lab.http_server):
    /ocsp/<ca-name>        OCSP responder for certificates issued by <ca-name>
    /crl/<ca-name>.crl     the CRL of <ca-name>
    /aia/<ca-name>.der     the certificate of <ca-name> (caIssuers)

A CA's `ocsp_url`, `crl_url` and `aia_url` are the URLs it writes into the certificates it
issues; they are plain attributes, so a scenario may point them elsewhere before issuing.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_EKU = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}

_SignHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
_HASHES: dict[str, type[_SignHash]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def new_key(kind: str = "ec") -> PrivateKey:
    """A fresh private key: "ec" (P-256), "ec384", "rsa2048", "rsa3072", "rsa1024"."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind.startswith("rsa") and kind[3:].isdigit():
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(f"unknown key kind {kind!r}")


def _hash(name: str) -> _SignHash:
    try:
        return _HASHES[name]()
    except KeyError:
        raise ValueError(f"unknown signature hash {name!r}") from None


def _name(common_name: str, org: str = "mxlens lab") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(eq=False)
class CA:
    """A certificate authority of the lab."""

    name: str
    cert: x509.Certificate
    key: PrivateKey
    parent: CA | None
    ocsp_url: str | None
    crl_url: str | None
    aia_url: str | None
    revoked: dict[int, datetime] = field(default_factory=dict)
    trusted: bool = True  # roots only: whether PKI.roots_pem() includes it

    def revoke(self, cert: x509.Certificate, when: datetime | None = None) -> None:
        """Mark a certificate this CA issued as revoked (OCSP and the CRL report it)."""
        self.revoked[cert.serial_number] = when or _now() - timedelta(minutes=5)

    def chain_to_root(self) -> list[CA]:
        """This CA and its parents, this one first, the root last."""
        out: list[CA] = []
        ca: CA | None = self
        while ca is not None:
            out.append(ca)
            ca = ca.parent
        return out


@dataclass(eq=False)
class Issued:
    """A certificate and what goes with it: its key and the CA that issued it."""

    cert: x509.Certificate
    key: PrivateKey
    issuer: CA | None

    def pem_chain(self, *, include_intermediates: bool = True) -> bytes:
        """The leaf, then (unless told not to) the intermediates; never the root."""
        parts = [self.cert.public_bytes(serialization.Encoding.PEM)]
        if include_intermediates and self.issuer is not None:
            for ca in self.issuer.chain_to_root():
                if ca.parent is None:  # the root: senders have it, servers should not send it
                    break
                parts.append(ca.cert.public_bytes(serialization.Encoding.PEM))
        return b"".join(parts)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _url_extensions(
    builder: x509.CertificateBuilder,
    issuer: CA,
    *,
    ocsp_on: bool,
    crl_on: bool,
    aia_on: bool,
    url_overrides: dict[str, str] | None,
) -> x509.CertificateBuilder:
    urls = dict(url_overrides or {})
    ocsp_url = urls.get("ocsp", issuer.ocsp_url) if ocsp_on else None
    crl_url = urls.get("crl", issuer.crl_url) if crl_on else None
    aia_url = urls.get("aia", issuer.aia_url) if aia_on else None
    access: list[x509.AccessDescription] = []
    if ocsp_url:
        access.append(
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(ocsp_url),
            )
        )
    if aia_url:
        access.append(
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(aia_url),
            )
        )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    return builder


def _san_entries(names: list[str]) -> list[x509.GeneralName]:
    import ipaddress

    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


class PKI:
    """All the CAs of one lab. URLs in certificates are built from `http_base`."""

    def __init__(self, http_base: str) -> None:
        self.http_base = http_base.rstrip("/")
        self.cas: dict[str, CA] = {}
        # Signs the "bad-signature" answers: a key no certificate in the lab belongs to.
        self._rogue_key = new_key("ec")

    # ---- CAs ------------------------------------------------------------------------------
    def _urls(self, name: str) -> tuple[str, str, str]:
        return (
            f"{self.http_base}/ocsp/{name}",
            f"{self.http_base}/crl/{name}.crl",
            f"{self.http_base}/aia/{name}.der",
        )

    def _check_new(self, name: str) -> None:
        if name in self.cas:
            raise ValueError(f"CA {name!r} exists already")
        if not name or "/" in name or any(c.isspace() for c in name):
            raise ValueError(f"CA name {name!r} must be one URL path segment")

    def ca(self, name: str) -> CA:
        """The CA called name (KeyError if there is none)."""
        return self.cas[name]

    def root(self, name: str, *, key: str = "ec", trusted: bool = True) -> CA:
        """A self-signed root CA. trusted=False keeps it out of roots_pem() (an unknown CA)."""
        self._check_new(name)
        priv = new_key(key)
        now = _now()
        subject = _name(name)
        ski = x509.SubjectKeyIdentifier.from_public_key(priv.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(priv.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ca_key_usage(), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(priv, hashes.SHA256())
        )
        o, c, a = self._urls(name)
        ca = CA(name, cert, priv, None, o, c, a, trusted=trusted)
        self.cas[name] = ca
        return ca

    def intermediate(
        self,
        name: str,
        parent: CA,
        *,
        ocsp: bool = True,
        crl: bool = True,
        aia: bool = True,
        url_overrides: dict[str, str] | None = None,
        key: str = "ec",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> CA:
        """An intermediate CA (pathlen 0) issued by parent.

        ocsp/crl/aia/url_overrides shape the intermediate's own certificate (the URLs of
        parent, as any certificate parent issues); the intermediate's URLs for what it
        issues are its own /ocsp/<name> etc.
        """
        self._check_new(name)
        priv = new_key(key)
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(parent.cert.subject)
            .public_key(priv.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(ca_key_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(priv.public_key()), critical=False
            )
            .add_extension(_aki(parent), critical=False)
        )
        builder = _url_extensions(
            builder, parent, ocsp_on=ocsp, crl_on=crl, aia_on=aia, url_overrides=url_overrides
        )
        cert = builder.sign(parent.key, hashes.SHA256())
        o, c, a = self._urls(name)
        ca = CA(name, cert, priv, parent, o, c, a)
        self.cas[name] = ca
        return ca

    # ---- leaves ---------------------------------------------------------------------------
    def leaf(
        self,
        issuer: CA | None,
        names: list[str],
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key: str = "ec",
        sig_hash: str = "sha256",
        san: bool = True,
        eku: list[str] | None = ["serverAuth"],  # noqa: B006 - never mutated; None = no EKU
        ocsp: bool = True,
        crl: bool = True,
        aia: bool = True,
        url_overrides: dict[str, str] | None = None,
        self_signed: bool = False,
    ) -> Issued:
        """A server certificate for names (names[0] is also the CN).

        self_signed=True (or issuer=None) makes a self-signed certificate with no AIA/CRL
        and Issued.issuer None. Names that are IP addresses go into the SAN as iPAddress.
        """
        if not names:
            raise ValueError("a leaf needs at least one name")
        priv = new_key(key)
        now = _now()
        self_signed = self_signed or issuer is None
        subject = _name(names[0], org="mxlens lab server")
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(priv.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(priv, rsa.RSAPrivateKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(priv.public_key()), critical=False
            )
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_san_entries(names)), critical=False
            )
        if eku is not None:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([_EKU[e] for e in eku]), critical=False
            )
        signer: PrivateKey
        if self_signed:
            builder = builder.issuer_name(subject)
            signer = priv
            owner: CA | None = None
        else:
            assert issuer is not None
            builder = builder.issuer_name(issuer.cert.subject).add_extension(
                _aki(issuer), critical=False
            )
            builder = _url_extensions(
                builder, issuer, ocsp_on=ocsp, crl_on=crl, aia_on=aia, url_overrides=url_overrides
            )
            signer = issuer.key
            owner = issuer
        if sig_hash == "sha1":
            cert = sign_sha1(builder, signer)
        else:
            cert = builder.sign(signer, _hash(sig_hash))
        return Issued(cert, priv, owner)

    # ---- OCSP, CRL, AIA -------------------------------------------------------------------
    def _rogue_cert(self, ca: CA) -> x509.Certificate:
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(ca.cert.subject)
            .issuer_name(ca.cert.subject)
            .public_key(self._rogue_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self._rogue_key, hashes.SHA256())
        )

    def ocsp_response(self, ca_name: str, request_der: bytes, *, mode: str = "good") -> bytes:
        """The DER OCSP response of CA ca_name to a DER request.

        mode "good": the real status from ca.revoked (unknown if the request names another
        issuer); "bad-signature": signed by an unrelated key; "stale": nextUpdate in the past.
        A malformed request gets malformedRequest, an unknown CA unauthorized.
        """
        try:
            req = ocsp.load_der_ocsp_request(request_der)
            serial = req.serial_number
            name_hash, key_hash, req_alg = (
                req.issuer_name_hash,
                req.issuer_key_hash,
                req.hash_algorithm,
            )
        except Exception:  # cryptography raises ValueError or its own errors for garbage
            return _ocsp_error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        ca = self.cas.get(ca_name)
        if ca is None:
            return _ocsp_error(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        now = _now()
        this_update = now - timedelta(minutes=1)
        next_update = now + timedelta(days=1)
        if mode == "stale":
            this_update = now - timedelta(days=3)
            next_update = now - timedelta(days=2)
        own_name_hash, own_key_hash = _issuer_hashes(ca.cert, req_alg)
        revocation_time = None
        if (name_hash, key_hash) != (own_name_hash, own_key_hash):
            status = ocsp.OCSPCertStatus.UNKNOWN
        elif serial in ca.revoked:
            status = ocsp.OCSPCertStatus.REVOKED
            revocation_time = ca.revoked[serial]
        else:
            status = ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=req_alg,
            cert_status=status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=revocation_time,
            revocation_reason=None,
        )
        for ext in req.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                builder = builder.add_extension(ext.value, critical=False)
        # By name, so the "bad-signature" answer claims to come from the CA itself: cryptography
        # wants a certificate matching the signing key, so that mode uses a stand-in
        # certificate with the CA's subject and the rogue key.
        if mode == "bad-signature":
            builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, self._rogue_cert(ca))
            resp = builder.sign(self._rogue_key, hashes.SHA256())
        else:
            builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, ca.cert)
            resp = builder.sign(ca.key, hashes.SHA256())
        return resp.public_bytes(serialization.Encoding.DER)

    def crl_der(self, ca_name: str, *, mode: str = "good") -> bytes:
        """The DER CRL of CA ca_name. mode: "good", "expired" (lastUpdate and nextUpdate in
        the past), "bad-signature" (signed by an unrelated key)."""
        ca = self.cas[ca_name]
        now = _now()
        last, nxt = now - timedelta(hours=1), now + timedelta(days=1)
        if mode in ("expired", "stale"):
            last, nxt = now - timedelta(days=3), now - timedelta(days=1)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(last)
            .next_update(nxt)
            .add_extension(_aki(ca), critical=False)
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        for serial, when in ca.revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        signer = self._rogue_key if mode == "bad-signature" else ca.key
        return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def aia_der(self, ca_name: str) -> bytes:
        """The certificate of CA ca_name, DER (what a caIssuers URL serves)."""
        return self.cas[ca_name].cert.public_bytes(serialization.Encoding.DER)

    def roots_pem(self) -> bytes:
        """Every trusted root of the lab, PEM (what --ca-file gets)."""
        return b"".join(
            ca.cert.public_bytes(serialization.Encoding.PEM)
            for ca in self.cas.values()
            if ca.parent is None and ca.trusted
        )


def ca_key_usage() -> x509.KeyUsage:
    """keyCertSign and cRLSign (plus digitalSignature, for OCSP signing by the CA itself)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _aki(issuer: CA) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())


def _issuer_hashes(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """The CertID hashes (RFC 6960) of an issuer certificate: of its subject DER, and of
    the contents of its subjectPublicKey BIT STRING."""
    name_hash = hashlib.new(algorithm.name, cert.subject.public_bytes()).digest()
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, _, inner = _der_read(spki, 0)
    alg = _der_read(inner, 0)
    bits = _der_read(inner, alg[1])
    if bits[0] != 0x03:
        raise ValueError("SPKI without a BIT STRING")
    key_hash = hashlib.new(algorithm.name, bits[2][1:]).digest()  # skip the unused-bits byte
    return name_hash, key_hash


# ---- SHA-1 signatures ---------------------------------------------------------------------
# cryptography (>= 4x) refuses to sign certificates with SHA-1, but the lab needs such a
# certificate to show cert.weak_signature. So: build the certificate normally, swap the
# signature AlgorithmIdentifier inside the TBS for the SHA-1 one, sign the new TBS bytes with
# the raw key API (which still accepts SHA-1), and assemble the DER by hand.
_SHA1_RSA_ALG = bytes.fromhex("300d06092a864886f70d0101050500")  # sha1WithRSAEncryption
_SHA1_ECDSA_ALG = bytes.fromhex("300906072a8648ce3d0401")  # ecdsa-with-SHA1


def _der_read(data: bytes, at: int) -> tuple[int, int, bytes]:
    """Read one DER TLV at offset `at`: (tag, offset after it, contents)."""
    tag = data[at]
    length = data[at + 1]
    pos = at + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    return tag, pos + length, data[pos : pos + length]


def _der_tlv(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        return bytes([tag, n]) + contents
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents


def _der_children(contents: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(contents):
        _, end, _ = _der_read(contents, pos)
        out.append(contents[pos:end])
        pos = end
    return out


def sign_sha1(builder: x509.CertificateBuilder, signer: PrivateKey) -> x509.Certificate:
    draft = builder.sign(signer, hashes.SHA256())
    _, _, tbs_contents = _der_read(draft.tbs_certificate_bytes, 0)
    parts = _der_children(tbs_contents)
    idx = 2 if parts[0][0] == 0xA0 else 1  # [0] version, serialNumber, then the signature AlgId
    if isinstance(signer, rsa.RSAPrivateKey):
        alg = _SHA1_RSA_ALG
        parts[idx] = alg
        tbs = _der_tlv(0x30, b"".join(parts))
        sig = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    else:
        alg = _SHA1_ECDSA_ALG
        parts[idx] = alg
        tbs = _der_tlv(0x30, b"".join(parts))
        sig = signer.sign(tbs, ec.ECDSA(hashes.SHA1()))
    der = _der_tlv(0x30, tbs + alg + _der_tlv(0x03, b"\x00" + sig))
    return x509.load_der_x509_certificate(der)


def _ocsp_error(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def server_context(issued: Issued, *, include_intermediates: bool = True) -> ssl.SSLContext:
    """A TLS server context presenting issued (and its intermediates unless told not to).

    The security level is 0 so that the weak certificates scenarios need (SHA-1 signatures,
    RSA-1024) load at all: OpenSSL at its default level refuses them ("ca md too weak",
    "ee key too small"). Callers tighten versions and ciphers on the returned context.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    # ssl loads certificates only from files: write them to a private temporary directory
    # and remove it at once.
    with tempfile.TemporaryDirectory(prefix="mxlens-lab-") as tmp:
        cert_path = os.path.join(tmp, "chain.pem")
        key_path = os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(issued.pem_chain(include_intermediates=include_intermediates))
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(issued.key_pem())
        ctx.load_cert_chain(cert_path, key_path)
    return ctx

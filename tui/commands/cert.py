"""`mxlens cert FILE`: check a certificate file (PEM, DER, PKCS#12/PFX) before it is used.

The PFX password comes from --password-file or, on a terminal, from a prompt; never from the
command line, where every user of the machine could read it in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from probes.history.store import mxlens_version
from probes.model.errors import CheckError
from probes.model.findings import sort_findings
from probes.model.safetext import visible
from probes.ownside.certfile import (
    CertFile,
    CertReport,
    PasswordNeeded,
    check_cert_file,
    read_cert_file,
)
from tui.commands.ownside_args import add_trust_options, receiver_from, trust_options_from


def parser(
    parser_class: type[argparse.ArgumentParser], add_probe_options: Callable[..., None]
) -> argparse.ArgumentParser:
    """The parser of `mxlens cert` (tui/cli.py's registry); probe options are not ours."""
    del add_probe_options
    p = parser_class(
        prog="mxlens cert",
        description="Check a certificate file before it is installed or named in a connector: "
        "key match, chain completeness, trust, dates, names, key and signature strength, EKU "
        "(serverAuth and clientAuth) and its OCSP/CRL/caIssuers URLs from here.",
    )
    p.add_argument(
        "file",
        metavar="FILE",
        help="PEM (chain, perhaps with key), DER, PKCS#7 (.p7b) or PKCS#12/PFX",
    )
    p.add_argument("--key", metavar="FILE", help="the private key, when it is not in FILE")
    p.add_argument(
        "--password-file",
        metavar="F",
        help="read the PFX / key password from the first line of F (else asked on a terminal)",
    )
    add_trust_options(p)
    p.add_argument("--no-endpoints", action="store_true", help="skip the OCSP/CRL/caIssuers checks")
    p.add_argument(
        "--timeout", default="10", help="per-request network timeout in seconds (default 10)"
    )
    return p


def _password_from_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            first = f.readline(65536)
    except OSError as exc:
        raise CheckError(f"cannot read --password-file {path}: {exc.strerror or exc}") from None
    return first.rstrip(b"\r\n")


def _ask(path: str) -> bytes | None:
    """A password from the terminal, or None when there is none to ask on."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    import getpass

    try:
        return getpass.getpass(f"Password for {path}: ").encode("utf-8")
    except (EOFError, KeyboardInterrupt):
        raise CheckError("no password given") from None


def load(ns: argparse.Namespace) -> CertFile:
    password = _password_from_file(ns.password_file) if ns.password_file else None
    try:
        return read_cert_file(ns.file, password=password, key_path=ns.key)
    except PasswordNeeded:
        if password is not None:
            raise
        asked = _ask(ns.file)
        if asked is None:
            raise
        return read_cert_file(ns.file, password=asked, key_path=ns.key)


def report_text(report: CertReport) -> str:
    v = visible
    out = [v(report.verdict), "", f"{v(report.file.path)} ({report.file.format})"]
    for i, cert in enumerate(report.chain):
        role = "leaf" if i == 0 else f"cert {i}"
        out.append(f"  {role}: {v(cert.subject)}")
        out.append(f"        issuer {v(cert.issuer)}; {cert.not_before} .. {cert.not_after}")
        if i == 0:
            out.append(
                f"        SAN {v(', '.join(cert.san) or '(none)')}; EKU {', '.join(cert.eku) or '(any)'}"
            )
            out.append(
                f"        key {cert.key_type} {cert.key_bits}; signature {cert.signature_hash}"
            )
    key = report.file.key
    if key is None:
        out.append("  private key: none in the file")
    else:
        match = "matches the leaf" if report.key_matches else "does NOT match the leaf"
        out.append(f"  private key ({v(report.file.key_source or '')}): {match}")
    if report.validation is not None:
        from probes.report import trust_summary

        out.append(f"  chain: {v(trust_summary(report.validation))}")
    for e in report.endpoints:
        state = "ok" if e.ok else f"FAIL {v(e.error or '')}"
        out.append(f"  {e.kind:10} {v(e.url)}: {state}")
    out.append("")
    for f in sort_findings(report.findings):
        if f.severity != "ok":
            out.append(f"  {f.severity.upper():7} {f.id:28} {v(f.summary)}")
    return "\n".join(out) + "\n"


def run(ns: argparse.Namespace, options_from_args: Callable[..., Any]) -> int:
    """`mxlens cert FILE`; its options are its own, not the probe options of check."""
    del options_from_args
    options = trust_options_from(ns, endpoints=not ns.no_endpoints)
    receiver = receiver_from(ns)
    cert_file = load(ns)
    report = asyncio.run(
        check_cert_file(cert_file, options, receiver=receiver, endpoints=not ns.no_endpoints)
    )
    if ns.json:
        sys.stdout.write(
            json.dumps(report.to_json(mxlens_version()), indent=2, ensure_ascii=False) + "\n"
        )
    else:
        sys.stdout.write(report_text(report))
    return report.exit_code()

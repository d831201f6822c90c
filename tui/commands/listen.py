"""`mxlens listen`: receive test mail from your own sending server and judge what it presents.

Prints one JSON document per session (JSON lines, schema mxlens/listen/1) with --json, else a
short text block per session. --once exits after the first session with its exit code;
otherwise it runs until Ctrl+C and exits with the worst session's code.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
from collections.abc import Callable
from typing import Any

from probes.history.store import mxlens_version
from probes.model.errors import CheckError
from probes.model.findings import sort_findings
from probes.model.safetext import visible
from probes.ownside.listener import ListenOptions, ListenReady, ListenSession, ListenSessionDone
from tui.cli import _port
from tui.commands.ownside_args import add_trust_options, receiver_from, trust_options_from


def parser(
    parser_class: type[argparse.ArgumentParser], add_probe_options: Callable[..., None]
) -> argparse.ArgumentParser:
    """The parser of `mxlens listen` (tui/cli.py's registry); probe options are not ours."""
    del add_probe_options
    p = parser_class(
        prog="mxlens listen",
        description="Receive test mail from your own sending server over STARTTLS, ask for its "
        "client certificate and judge it as an inbound connector would. Messages are discarded.",
    )
    p.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    p.add_argument("--port", default="2525", help="port to listen on (default 2525; 0 = any free)")
    p.add_argument(
        "--hostname", metavar="NAME", help="name in the greeting (default this host's FQDN)"
    )
    p.add_argument(
        "--cert",
        metavar="PEM",
        help="our server certificate chain (default: a throwaway self-signed one)",
    )
    p.add_argument("--key", metavar="PEM", help="the key of --cert")
    add_trust_options(p)
    p.add_argument(
        "--accepted-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="an accepted domain of your tenant (repeatable): the certificate's or the MAIL FROM "
        "domain must be one, as Exchange Online's OnPremises connector demands since 2023-11",
    )
    p.add_argument(
        "--once", action="store_true", help="exit after the first session, with its exit code"
    )
    p.add_argument(
        "--timeout", default="30", help="seconds to wait for each line from the sender (default 30)"
    )
    return p


def _hostname(text: str | None) -> str:
    if text is not None:
        if not text or any(ch.isspace() or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in text):
            raise CheckError(f"bad --hostname {text!r}: give a host name")
        return text
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn else "mxlens.invalid"


def options_from(ns: argparse.Namespace) -> ListenOptions:

    try:
        address = str(ipaddress.ip_address(ns.address))
    except ValueError:
        raise CheckError(f"bad --address {ns.address!r}: give an IP address") from None
    port = 0 if ns.port == "0" else _port(ns.port, "--port")
    options = trust_options_from(ns)
    from probes.model.names import canonical
    from probes.net.dns import to_ascii

    accepted: list[str] = []
    for domain in ns.accepted_domain:
        try:
            accepted.append(canonical(to_ascii(domain.strip())))
        except CheckError as exc:
            raise CheckError(f"bad --accepted-domain {domain!r}: {exc}") from None
    receiver = receiver_from(ns)
    if receiver is not None and receiver.needs_accepted and not accepted:
        raise CheckError(
            f"--connector {receiver.name} needs --accepted-domain DOMAIN (your tenant's accepted domains)"
        )
    return ListenOptions(
        address=address,
        port=port,
        hostname=_hostname(ns.hostname),
        cert_file=ns.cert,
        key_file=ns.key,
        once=ns.once,
        receiver=receiver,
        accepted_domains=tuple(accepted),
        options=options,
    )


def session_text(session: ListenSession) -> str:
    """The human form of one session, every network string made visible-safe."""
    v = visible
    out = [f"session {session.number} from {session.peer}:{session.peer_port} at {session.started}"]
    out.append(f"  {v(session.verdict)}")
    out.append(f"  EHLO {v(session.ehlo[-1]) if session.ehlo else '(none)'}")
    if session.offer is not None:
        o = session.offer
        out.append(
            f"  offered: {', '.join(o.versions)}; {len(o.suites)} suites; groups "
            f"{', '.join(o.groups[:6]) or 'none'}; SNI {v(o.sni or 'none')}"
        )
    if session.negotiated is not None:
        n = session.negotiated
        out.append(f"  TLS: {n.version} {n.cipher}" + (f" ({n.group})" if n.group else ""))
    elif session.handshake_error:
        out.append(f"  TLS handshake failed: {v(session.handshake_error)}")
    else:
        out.append("  TLS: not used")
    if session.chain:
        out.append("  client chain as presented:")
        for i, cert in enumerate(session.chain):
            out.append(
                f"    {i}: {v(cert.subject)}  (issuer {v(cert.issuer)}, until {cert.not_after})"
            )
    elif session.starttls:
        out.append("  client certificate: none")
    if session.messages:
        out.append(
            f"  messages discarded: {', '.join(str(n) + ' bytes' for n in session.messages)}"
        )
    for f in sort_findings(session.findings):
        if f.severity in ("error", "warning", "info"):
            out.append(f"  {f.severity.upper():7} {f.id:28} {v(f.summary)}")
    return "\n".join(out) + "\n\n"


async def _serve(opts: ListenOptions, as_json: bool, codes: list[int]) -> int:
    from probes.ownside.listener import listen

    version = mxlens_version()
    async for event in listen(opts):
        if isinstance(event, ListenReady):
            sys.stderr.write(
                f"mxlens listen: on {event.address}:{event.port} as {event.hostname}; STARTTLS asks "
                "for a client certificate; messages are discarded"
                + ("; exits after one session" if opts.once else "; Ctrl+C stops")
                + "\n"
            )
            if not ipaddress.ip_address(event.address).is_loopback:
                sys.stderr.write(
                    f"mxlens listen: {event.address} is not a loopback address: anyone who can "
                    "reach it can talk to this test receiver\n"
                )
            sys.stderr.flush()
        elif isinstance(event, ListenSessionDone):
            session = event.session
            codes.append(session.exit_code())
            if as_json:
                doc = session.to_json(opts.receiver, version, opts.options.expect_name)
                sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(session_text(session))
            sys.stdout.flush()
    return codes[-1] if codes else 0


def run(ns: argparse.Namespace, options_from_args: Callable[..., Any]) -> int:
    """`mxlens listen`; its options are its own, not the probe options of check."""
    del options_from_args
    opts = options_from(ns)
    codes: list[int] = []
    try:
        return asyncio.run(_serve(opts, ns.json, codes))
    except KeyboardInterrupt:
        return max(codes) if codes else 0

"""Flags shared by `listen` and `cert`: the trust store, the expected name, the receiver."""

from __future__ import annotations

import argparse
import os
from typing import Any

from probes.model.errors import CheckError
from probes.model.options import Options
from probes.ownside.judge import RECEIVERS, ReceiverProfile, get_receiver
from tui.cli import _positive_float, add_trust_store_options


def add_trust_options(p: argparse.ArgumentParser) -> None:
    add_trust_store_options(p)
    p.add_argument(
        "--expect-name",
        metavar="NAME",
        help="the name the receiver expects in the certificate (Exchange Online "
        "TlsSenderCertificateName, wildcards allowed; for cert also <I>issuer<S>subject)",
    )
    p.add_argument(
        "--connector",
        metavar="NAME",
        help="judge as this receiver: " + ", ".join(RECEIVERS),
    )
    p.add_argument(
        "--resolver", metavar="IP[:PORT]", help="DNS server for the CA endpoint host names"
    )
    p.add_argument(
        "--allow-private-endpoints",
        action="store_true",
        help="also fetch caIssuers/OCSP/CRL URLs on private, loopback or link-local addresses "
        "and other ports (an internal PKI)",
    )
    p.add_argument("--json", action="store_true", help="JSON on stdout")


def trust_options_from(ns: argparse.Namespace, **more: Any) -> Options:
    """The Options the flags above (and --timeout) give `listen` and `cert`, `more` added.

    One place so both commands refuse a missing --ca-file and read --timeout alike."""
    from probes.net.dns import parse_resolver

    if ns.ca_file is not None and not os.path.isfile(ns.ca_file):
        raise CheckError(f"cannot read --ca-file {ns.ca_file}: no such file")
    return Options(
        ca_file=ns.ca_file,
        trust=ns.trust,
        expect_name=ns.expect_name,
        timeout=_positive_float(ns.timeout, "--timeout"),
        resolver=parse_resolver(ns.resolver) if ns.resolver else None,
        private_endpoints=ns.allow_private_endpoints,
        **more,
    )


def receiver_from(ns: argparse.Namespace) -> ReceiverProfile | None:
    if not ns.connector:
        return None
    profile = get_receiver(ns.connector)
    if profile.needs_name and not ns.expect_name:
        raise CheckError(
            f"--connector {profile.name} needs --expect-name NAME (its TlsSenderCertificateName)"
        )
    return profile

"""Flags shared by `listen` and `cert`: the trust store, the expected name, the receiver."""

from __future__ import annotations

import argparse

from probes.model.errors import CheckError
from probes.ownside.judge import RECEIVERS, ReceiverProfile, get_receiver
from tui.cli import add_trust_store_options


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


def receiver_from(ns: argparse.Namespace) -> ReceiverProfile | None:
    if not ns.connector:
        return None
    profile = get_receiver(ns.connector)
    if profile.needs_name and not ns.expect_name:
        raise CheckError(
            f"--connector {profile.name} needs --expect-name NAME (its TlsSenderCertificateName)"
        )
    return profile

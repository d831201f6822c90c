"""`python -m mxlens_lab [--scenario NAME ...]`: run the lab in the foreground until Ctrl+C.

Prints where the lab listens and, per scenario, the domain, what is wrong with it and the
exact `mxlens check` command line that diagnoses it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .scenarios import SCENARIOS
from .world import Lab, serve_forever


def describe(lab: Lab) -> str:
    """The text the foreground runner prints once the lab is up."""
    ip, port = lab.resolver
    out = [
        f"mxlens lab on 127.{lab.net}.0.0/16",
        f"  resolver    {ip}:{port}  (UDP and TCP)",
        f"  SMTP port   {lab.smtp_port}  (every MX host)",
        f"  HTTP        {lab.http_port}  (OCSP, CRL, caIssuers at pki.lab.test)",
        f"  HTTPS port  {lab.https_port}  (MTA-STS policies)",
        f"  CA file     {lab.ca_file}",
        "",
    ]
    partners = [s for s in lab.scenarios.values() if s.name.startswith("partner-")]
    if partners:
        out.append(
            f"{len(partners)} synthetic partners: {partners[0].domain} ... {partners[-1].domain}"
            " (mxlens_lab.partners: most healthy, one in five with a fault)"
        )
        out.append("")
    width = max((len(s.domain) for s in lab.scenarios.values()), default=0)
    for s in lab.scenarios.values():
        if s.name.startswith("partner-"):
            continue
        expect = ", ".join(sorted(s.expect)) or "no finding"
        out.append(f"{s.domain:<{width}}  {s.description}")
        out.append(f"{'':<{width}}  expect: {expect}")
        out.append(f"{'':<{width}}  $ {lab.check_command(s.name)}")
    out.append("")
    out.append("Ready. Press Ctrl+C to stop the lab.")
    return "\n".join(out)


def run_foreground(scenarios: list[str] | None = None, partners: int = 0) -> int:
    """Run the lab until Ctrl+C. Returns the process exit status."""
    if scenarios:
        unknown = [n for n in scenarios if n not in SCENARIOS]
        if unknown:
            sys.stderr.write(
                f"mxlens lab: unknown scenario {', '.join(unknown)}; "
                f"known: {', '.join(SCENARIOS)}\n"
            )
            return 3

    def ready(lab: Lab) -> None:
        sys.stdout.write(describe(lab) + "\n")
        sys.stdout.flush()

    try:
        serve_forever(scenarios or None, on_ready=ready, partners=partners)
    except OSError as exc:
        sys.stderr.write(f"mxlens lab: cannot start: {exc}\n")
        return 3
    sys.stdout.write("Lab stopped.\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mxlens_lab", description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help=f"only this scenario (repeatable); one of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--partners",
        type=int,
        default=0,
        metavar="N",
        help="also stage N synthetic partner domains partner-00001.lab.test ... (scale runs)",
    )
    ns = parser.parse_args(argv)
    if not 0 <= ns.partners <= 20_000:
        parser.error("--partners must be from 0 to 20000")
    return run_foreground(ns.scenario or None, ns.partners)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m mxlens_lab [--scenario NAME ...]`: run the lab in the foreground until Ctrl+C.

Prints where the lab listens and, per scenario, the domain, what is wrong with it and the
exact `mxlens check` command line that diagnoses it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence

from .scenarios import SCENARIOS
from .world import Lab, serve_forever


def describe(lab: Lab, width: int | None = None) -> str:
    """The text the foreground runner prints once the lab is up: where it listens (resolver
    first), then one line per domain, cut to the terminal's width, then the command line
    again, so that on a small terminal what scrolled off is repeated at the bottom."""
    if width is None:
        width = shutil.get_terminal_size((100, 24)).columns
    ip, port = lab.resolver
    command = f"mxlens check DOMAIN {lab.lab_flags()}"
    out = [
        f"resolver  {ip}:{port} (UDP and TCP)   mxlens lab on 127.{lab.net}.0.0/16",
        f"ports     SMTP {lab.smtp_port}, HTTP {lab.http_port} (OCSP, CRL, caIssuers), "
        f"HTTPS {lab.https_port} (MTA-STS)",
        f"CA file   {lab.ca_file}",
        "",
    ]
    partners = [s for s in lab.scenarios.values() if s.name.startswith("partner-")]
    if partners:
        out.append(
            _cut(
                f"{len(partners)} synthetic partners: {partners[0].domain} ... "
                f"{partners[-1].domain} (mxlens_lab.partners: most healthy, one in five with a "
                "fault)",
                width,
            )
        )
        out.append("")
    column = max((len(s.domain) for s in lab.scenarios.values()), default=6)
    out.append(_cut(f"{'DOMAIN':<{column}}  WHAT IS WRONG", width))
    for s in lab.scenarios.values():
        if s.name.startswith("partner-"):
            continue
        extra = " ".join(lab.scenario_flags(s.name))
        about = f"[{extra}] {s.description}" if extra else s.description
        out.append(_cut(f"{s.domain:<{column}}  {about}", width))
    out.append("")
    out.append(f"check:  {command}")
    out.append("or the UI on a lab of its own:  mxlens demo [DOMAIN]")
    out.append("Ready. Press Ctrl+C to stop the lab.")
    return "\n".join(out)


def _cut(line: str, width: int) -> str:
    """One table row per line: cut what does not fit, with an ellipsis."""
    return line if len(line) <= width else line[: max(width - 1, 1)] + "\u2026"


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

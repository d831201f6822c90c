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

LAB_SUFFIX = ".lab.test"
# Names sit on tab stops this wide: true columns (each as wide as its longest name) would
# need 26 rows for the 76 scenarios at 80 columns, and the screen has 24.
NAME_TAB = 4


def describe(lab: Lab, width: int | None = None, *, listing: bool | None = None) -> str:
    """The text the foreground runner prints once the lab is up, resolver first.

    listing: one line per domain with what is wrong with it (`--list`). By default only when
    some scenarios were chosen: all of them in that form scroll the resolver off the screen,
    so then the names go in columns under the command line instead."""
    if width is None:
        width = shutil.get_terminal_size((100, 24)).columns
    if listing is None:
        listing = any(name not in lab.scenarios for name in SCENARIOS)
    if not listing:
        return _compact(lab, width)
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


def _compact(lab: Lab, width: int) -> str:
    """Resolver, command line, then the short names packed on tab stops to the width."""
    ip, port = lab.resolver
    out = [
        f"resolver  {ip}:{port} (UDP and TCP)   mxlens lab on 127.{lab.net}.0.0/16",
        f"check:  mxlens check NAME{LAB_SUFFIX} {lab.lab_flags()}",
    ]
    names = sorted(
        s.domain.removesuffix(LAB_SUFFIX)
        for s in lab.scenarios.values()
        if not s.name.startswith("partner-")
    )
    out.extend(_pack(names, width))
    partners = [s for s in lab.scenarios.values() if s.name.startswith("partner-")]
    if partners:
        out.append(_cut(f"and {len(partners)} synthetic partners {partners[0].domain} ...", width))
    out.append(
        _cut("Ready (Ctrl+C stops). `mxlens lab --list`: what each breaks; UI: mxlens demo", width)
    )
    return "\n".join(out)


def _pack(names: list[str], width: int) -> list[str]:
    """Lines of names two spaces apart at least, each starting on a multiple of NAME_TAB."""
    lines: list[str] = []
    line = ""
    for name in names:
        if line and len(line) + len(name) > width:
            lines.append(line.rstrip())
            line = ""
        cell = len(name) + 2
        line += name.ljust(-(-cell // NAME_TAB) * NAME_TAB)
    if line:
        lines.append(line.rstrip())
    return lines


def _cut(line: str, width: int) -> str:
    """One table row per line: cut what does not fit, with an ellipsis."""
    return line if len(line) <= width else line[: max(width - 1, 1)] + "\u2026"


def run_foreground(
    scenarios: list[str] | None = None, partners: int = 0, *, listing: bool = False
) -> int:
    """Run the lab until Ctrl+C. Returns the process exit status.

    listing: print what each domain breaks, one line each (`--list`)."""
    if scenarios:
        unknown = [n for n in scenarios if n not in SCENARIOS]
        if unknown:
            sys.stderr.write(
                f"mxlens lab: unknown scenario {', '.join(unknown)}; "
                f"known: {', '.join(SCENARIOS)}\n"
            )
            return 3

    def ready(lab: Lab) -> None:
        sys.stdout.write(describe(lab, listing=listing or None) + "\n")
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
    add_list_option(parser)
    ns = parser.parse_args(argv)
    if not 0 <= ns.partners <= 20_000:
        parser.error("--partners must be from 0 to 20000")
    return run_foreground(ns.scenario or None, ns.partners, listing=ns.list)


def add_list_option(parser: argparse.ArgumentParser) -> None:
    """`--list`, shared with `mxlens lab`."""
    parser.add_argument(
        "--list",
        action="store_true",
        help="print one line per domain saying what is wrong with it (the default with "
        "--scenario; with all scenarios only their names, to fit the screen)",
    )


if __name__ == "__main__":
    sys.exit(main())

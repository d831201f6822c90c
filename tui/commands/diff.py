"""`mxlens diff DOMAIN [RUN_A [RUN_B]] [--json]`: what changed between two recorded runs.

Without run ids it compares the domain's last two runs; with one, that run and the newest.
Exit 0 when nothing changed, 1 when something did, 3 when the runs cannot be compared.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from probes.history.diff import diff_runs
from probes.history.store import HistoryStore, Run
from probes.model.errors import CheckError
from probes.model.safetext import json_escape_hidden

from .history import domain_arg, open_store


def parser(
    parser_class: type[argparse.ArgumentParser], add_probe_options: Callable[..., None]
) -> argparse.ArgumentParser:
    p = parser_class(
        prog="mxlens diff",
        description="Compare two recorded checks of DOMAIN (default: its last two). "
        "Exit 0 no change, 1 changed, 3 cannot compare.",
    )
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("run_a", nargs="?", metavar="RUN_A", help="the older run id (`mxlens history`)")
    p.add_argument(
        "run_b", nargs="?", metavar="RUN_B", help="the newer run id (default: the newest)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document (mxlens/diff/1)")
    return p


def _run_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise CheckError(f"a run id is a whole number (see `mxlens history`), not {text!r}")
    return int(text)


def _of_domain(store: HistoryStore, run_id: int, domain: str) -> Run:
    found = store.run(run_id)
    if found.domain != domain:
        raise CheckError(f"run {run_id} is a check of {found.domain}, not of {domain}")
    return found


def pick_runs(
    store: HistoryStore, domain: str, run_a: str | None, run_b: str | None
) -> tuple[Run, Run]:
    """The two runs to compare, older first; CheckError when there are not two."""
    if run_a is None:
        runs = store.latest(domain, 2)
        if len(runs) < 2:
            have = "no check" if not runs else "only one check"
            raise CheckError(
                f"{have} of {domain} recorded; diff needs two (`mxlens check {domain}`)"
            )
        return runs[1], runs[0]
    a = _of_domain(store, _run_id(run_a), domain)
    if run_b is not None:
        b = _of_domain(store, _run_id(run_b), domain)
    else:
        b = store.latest(domain, 1)[0]
    if a.id == b.id:
        raise CheckError(f"run {a.id} is the newest check of {domain}; give a second run id")
    return (a, b) if a.id < b.id else (b, a)


def run(ns: argparse.Namespace, options_from_args: Callable[..., Any]) -> int:
    domain = domain_arg(ns.domain)
    with open_store() as store:
        a, b = pick_runs(store, domain, ns.run_a, ns.run_b)
    result = diff_runs(a, b)
    if ns.json:
        sys.stdout.write(
            json_escape_hidden(json.dumps(result.to_json(), indent=2, ensure_ascii=False)) + "\n"
        )
    else:
        sys.stdout.write(result.to_text())
    return result.exit_code()

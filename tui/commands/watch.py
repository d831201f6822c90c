"""`mxlens watch DOMAIN [--every S] [--until ok|change] [check options]`: re-check until the
partner's fix is live (`ok`, the default) or until anything changes (`change`).

One line per check on stdout (`--json`: one mxlens/watch/1 document per check, JSON lines);
each check is recorded in the history unless --no-history. When the condition holds it rings
the terminal bell (only when stdout is a terminal) and exits with the last check's exit code.
A check that cannot be made (exit 3) ends the watch only when it is the first: later ones are
reported and retried, since a route that fails for a moment is what one watches through.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from probes.history.store import mxlens_version
from probes.model.errors import CheckError
from probes.model.options import Options
from probes.model.safetext import json_escape_hidden, visible

from .recording import add_history_option, record_check

WATCH_SCHEMA = "mxlens/watch/1"
MAX_EVERY_S = 86_400.0


def parser(
    parser_class: type[argparse.ArgumentParser], add_probe_options: Callable[..., None]
) -> argparse.ArgumentParser:
    p = parser_class(
        prog="mxlens watch",
        description="Re-check DOMAIN every --every seconds until it is OK (--until ok) or until "
        "anything changed (--until change); exits with the last check's status.",
    )
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--every", default="60", metavar="S", help="seconds between checks (default 60)")
    p.add_argument(
        "--until",
        choices=("ok", "change"),
        default="ok",
        help="stop when the check is OK (default) or when anything changed since the last check",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON document per check (JSON lines, mxlens/watch/1)",
    )
    add_history_option(p)
    add_probe_options(p)
    return p


def every_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CheckError(f"--every must be a number of seconds, not {text!r}") from None
    if not 0 < value <= MAX_EVERY_S:
        raise CheckError(
            f"--every must be more than 0 and at most {MAX_EVERY_S:g} seconds, not {text}"
        )
    return value


def run(ns: argparse.Namespace, options_from_args: Callable[[argparse.Namespace], Options]) -> int:
    every = every_arg(ns.every)
    options = options_from_args(ns)
    return asyncio.run(_watch_maybe_lab(ns, options, every))


async def _watch_maybe_lab(ns: argparse.Namespace, options: Options, every: float) -> int:
    if not ns.lab:
        return await watch(
            ns.domain,
            options,
            every=every,
            until=ns.until,
            as_json=ns.json,
            record=not ns.no_history,
        )
    from mxlens_lab.scenarios import find_scenario
    from mxlens_lab.world import Lab

    scenario = find_scenario(ns.domain)
    if scenario is None:
        raise CheckError(f"{ns.domain} is not a lab domain (`mxlens lab` lists them)")
    async with Lab(scenarios=[scenario.name]) as lab:
        return await watch(
            ns.domain,
            lab.options_for(ns.domain, options),
            every=every,
            until=ns.until,
            as_json=ns.json,
            record=not ns.no_history,
        )


async def watch(
    domain: str, options: Options, *, every: float, until: str, as_json: bool, record: bool
) -> int:
    from probes.diagnose import diagnose
    from probes.history.diff import diff_reports
    from probes.history.snapshot import snapshot
    from probes.report import VERDICT_TEXT, Report

    previous: dict[str, Any] | None = None
    number = 0
    while True:
        number += 1
        started = datetime.now(timezone.utc)
        report = Report(domain, options)
        try:
            async for event in diagnose(domain, options):
                report.add(event)
        except CheckError as exc:
            if number == 1:
                raise  # bad input, or nothing to watch: exit 3 at once
            # Later, a resolver or route that fails for a moment is what one watches through.
            _say_failed(number, started, str(exc), as_json, domain)
            await asyncio.sleep(every)
            continue
        doc = report.to_json()
        code = report.exit_code()
        run_id = record_check(report, started, source="watch").run_id if record else None
        changes = diff_reports(snapshot(previous), snapshot(doc)) if previous is not None else []
        done = code == 0 if until == "ok" else bool(changes)
        if as_json:
            _write_json_line(
                domain,
                number,
                started,
                run=run_id,
                code=code,
                verdict=VERDICT_TEXT[code],
                changes=[c.to_json() for c in changes],
                stopped=done,
            )
        else:
            recorded = f"  [run {run_id}]" if run_id is not None else ""
            sys.stdout.write(
                f"{started.strftime('%H:%M:%S')} check {number}: {VERDICT_TEXT[code]}{recorded}\n"
            )
            for change in changes:
                sys.stdout.write(f"    changed {visible(change.where)}: {change.text()}\n")
        if done:
            if not as_json:
                what = "is OK" if until == "ok" else "changed"
                sys.stdout.write(f"mxlens watch: {visible(domain)} {what}; stopping.\n")
                if sys.stdout.isatty():
                    sys.stdout.write("\a")
            sys.stdout.flush()
            return code
        sys.stdout.flush()
        previous = doc
        await asyncio.sleep(every)


def _write_json_line(
    domain: str,
    number: int,
    started: datetime,
    *,
    run: int | None,
    code: int,
    verdict: str,
    changes: list[Any],
    stopped: bool,
) -> None:
    """One mxlens/watch/1 document: a check that could not be made has the shape of one made."""
    line = {
        "schema": WATCH_SCHEMA,
        "version": mxlens_version(),
        "target": domain,
        "check": number,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run": run,
        "exit": code,
        "verdict": verdict,
        "changes": changes,
        "stopped": stopped,
    }
    sys.stdout.write(json_escape_hidden(json.dumps(line, ensure_ascii=False)) + "\n")


def _say_failed(number: int, started: datetime, error: str, as_json: bool, domain: str) -> None:
    if as_json:
        _write_json_line(
            domain,
            number,
            started,
            run=None,
            code=3,
            verdict=f"could not check: {error}",
            changes=[],
            stopped=False,
        )
    else:
        sys.stdout.write(
            f"{started.strftime('%H:%M:%S')} check {number}: could not check: {visible(error)}; "
            "trying again\n"
        )
    sys.stdout.flush()

"""`check --nagios` and `check --prometheus FILE`: the flags and what they do with a report.

The engine (probes/monitoring) renders; this module only parses the flags, writes the output
where it was asked for, and turns a failed check into the plugin line a scheduler records.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from probes.model.errors import CheckError, NetworkError


def add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nagios",
        action="store_true",
        help="monitoring-plugin output: 'MXLENS STATE - text | perfdata', then one line per finding",
    )
    p.add_argument(
        "-w",
        "--warn-days",
        default=None,
        metavar="DAYS",
        help="with --nagios: WARNING when a chain element expires within DAYS (default 20)",
    )
    p.add_argument(
        "-c",
        "--crit-days",
        default=None,
        metavar="DAYS",
        help="with --nagios: CRITICAL when a chain element expires within DAYS (default 15)",
    )
    add_prometheus_option(p)


def add_prometheus_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus",
        metavar="FILE",
        help="write Prometheus text-format metrics to FILE (node_exporter textfile collector; - = stdout)",
    )


def _days(text: str | None, flag: str, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise CheckError(f"{flag} must be a number of days, not {text!r}") from None
    if not 0 <= value <= 36500:
        raise CheckError(f"{flag} must be between 0 and 36500 days, not {text}")
    return value


def thresholds(ns: argparse.Namespace) -> Any:
    from probes.monitoring.nagios import DEFAULT_CRIT_DAYS, DEFAULT_WARN_DAYS, Thresholds

    warn = _days(ns.warn_days, "--warn-days", DEFAULT_WARN_DAYS)
    crit = _days(ns.crit_days, "--crit-days", DEFAULT_CRIT_DAYS)
    if crit > warn:
        raise CheckError(f"--crit-days ({crit:g}) must not be more than --warn-days ({warn:g})")
    return Thresholds(warn, crit)


def validate(ns: argparse.Namespace) -> None:
    """Flag combinations that cannot both own stdout, and the threshold values."""
    stdout_owners = [
        name
        for name, on in (
            ("--json", ns.json),
            ("--nagios", ns.nagios),
            ("--prometheus -", ns.prometheus == "-"),
        )
        if on
    ]
    if len(stdout_owners) > 1:
        raise CheckError(f"{' and '.join(stdout_owners)} both write to stdout: choose one")
    if (ns.warn_days is not None or ns.crit_days is not None) and not ns.nagios:
        raise CheckError("--warn-days/--crit-days only apply with --nagios")
    if ns.nagios and (ns.walk or ns.connector or ns.ticket or ns.ticket_to):
        raise CheckError("--nagios prints only the plugin output: drop --walk/--connector/--ticket")
    thresholds(ns)


def wanted(ns: argparse.Namespace | None) -> bool:
    return ns is not None and bool(getattr(ns, "nagios", False) or getattr(ns, "prometheus", None))


def write_prometheus(target: str, facts: list[Any]) -> None:
    from probes.monitoring.prometheus import metrics_for, write_atomic

    text = metrics_for(facts, finished_at=time.time()).text()
    if target == "-":
        sys.stdout.write(text)
    else:
        write_atomic(target, text)


def after_check(report: Any, ns: argparse.Namespace) -> int | None:
    """Write what --prometheus/--nagios ask for. The exit code when that was the whole output;
    None when the normal report still follows."""
    from probes.monitoring.facts import check_facts

    if ns.prometheus:
        write_prometheus(ns.prometheus, [check_facts(report)])
    if ns.nagios:
        from probes.monitoring.nagios import render

        text, state = render(report, thresholds(ns))
        sys.stdout.write(text)
        return state
    if ns.prometheus == "-":
        return int(report.exit_code())
    return None


def after_failure(exc: CheckError, ns: argparse.Namespace | None) -> int | None:
    """A check that raised: the scheduler still gets a status line, the textfile still says
    the domain is down. None when neither flag was given."""
    if not wanted(ns):
        return None
    assert ns is not None
    started = isinstance(exc, NetworkError)
    if getattr(ns, "prometheus", None) and ns.prometheus != "-":
        from probes.monitoring.facts import CheckFacts

        try:
            write_prometheus(ns.prometheus, [CheckFacts(domain=ns.domain, exit=3, elapsed_s=None)])
        except CheckError:
            pass  # the check's own error is the line worth showing
    if ns.nagios:
        from probes.monitoring.nagios import failure

        text, state = failure(str(exc), started=started)
        sys.stdout.write(text)
        return state
    return None

"""One audit row per domain, judged exactly as `mxlens check` judges it alone.

The row's `exit` is what `check` with the same options would exit with: the report's findings,
re-graded by the row's connector when it names one (as `check --connector` does).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import Any

from probes.audit.inputs import Item
from probes.interpret.walk import build_walk, choose_route, leaf_cert
from probes.model.errors import CheckError
from probes.model.findings import sort_findings
from probes.model.options import Options
from probes.monitoring.facts import now_utc, parse_time
from probes.report import Report

VERDICTS: dict[int, str] = {0: "OK", 1: "WARNING", 2: "ERROR", 3: "UNKNOWN"}
COLUMNS: tuple[str, ...] = (
    "domain",
    "exit",
    "verdict",
    "worst",
    "first_failure",
    "mx",
    "tls_version",
    "leaf_days_left",
)


def item_options(base: Options, item: Item, default_connector: str | None) -> Options:
    """The options `check` would run this row with: the audit's, then the row's own
    expect_name / policy / connector (a connector sets the policy, as `check --connector`)."""
    from probes.interpret.connectors import get_profile

    options = base
    given = set(base.given)
    if item.expect_name:
        options = replace(options, expect_name=item.expect_name)
        given.add("expect_name")
    connector = item.connector or default_connector
    if item.policy:
        options = replace(options, policy=item.policy)  # type: ignore[arg-type]
        given.add("policy")
    elif connector:
        profile = get_profile(connector)
        policy = profile.policy
        if policy == "domain" and not options.expect_name:
            policy = "verify"  # as check: the connector re-grades with the name it is given
        options = replace(options, policy=policy)
        given.add("policy")
        if profile.needs_name and not options.expect_name:
            raise CheckError(
                f"connector {profile.name} needs an expect_name ({profile.name_label})"
            )
    if options.policy == "domain" and not options.expect_name:
        raise CheckError("policy domain needs an expect_name (the connector's TlsDomain)")
    return replace(options, given=frozenset(given))


def _days_left(not_after: str, now: datetime) -> int | None:
    try:
        return math.trunc((parse_time(not_after) - now).total_seconds() / 86400)
    except ValueError:
        return None


def judge(report: Report, connector: str | None) -> tuple[dict[str, Any], str | None]:
    """Re-grade for the connector if any (report.findings is replaced, as check does);
    returns (walk JSON, connector verdict)."""
    if connector:
        from probes.interpret.connectors import judge as judge_connector

        result = judge_connector(report, connector, report.options.expect_name)
        report.findings = list(result.findings)
        return result.walk.to_json(), result.verdict
    return build_walk(report).to_json(), None


def row_for(item: Item, report: Report, connector: str | None) -> dict[str, Any]:
    walk, connector_verdict = judge(report, connector)
    code = report.exit_code()
    findings = [f for f in sort_findings(report.findings) if f.severity in ("error", "warning")]
    _, session = choose_route(report)
    leaf = leaf_cert(session)
    version = session.tls.version if session is not None and session.tls is not None else None
    if connector_verdict:
        detail = connector_verdict
    elif findings:
        detail = findings[0].summary
    else:
        detail = "no problems found"
    return {
        "domain": item.domain,
        "exit": code,
        "verdict": VERDICTS[code],
        "worst": findings[0].id if findings else None,
        "first_failure": walk.get("first_failure"),
        "mx": [mx.host for mx in report.mx_in_order()],
        "tls_version": version,
        "leaf_days_left": _days_left(leaf.not_after, now_utc()) if leaf is not None else None,
        "detail": detail,
        "line": item.line,
        "connections": sum(
            s.connections for mx in report.mx.values() for s in mx.sessions.values()
        ),
        "policy": report.options.policy,
        "connector": connector,
    }


def failed_row(item: Item, message: str) -> dict[str, Any]:
    """The row of a domain that could not be checked (bad line, resolver down): exit 3."""
    return {
        "domain": item.domain,
        "exit": 3,
        "verdict": VERDICTS[3],
        "worst": None,
        "first_failure": None,
        "mx": [],
        "tls_version": None,
        "leaf_days_left": None,
        "detail": message,
        "line": item.line,
        "connections": 0,
        "policy": item.policy,
        "connector": item.connector,
    }

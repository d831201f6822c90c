"""diff_reports: every kind of change the issue names, and nothing for identical reports."""

from __future__ import annotations

import copy
from typing import Any

from probes.history.diff import KINDS, diff_reports


def report() -> dict[str, Any]:
    return {
        "schema": "mxlens/1",
        "target": "partner.example",
        "target_ascii": "partner.example",
        "mx": [
            {
                "host": "mx1.partner.example",
                "addresses": ["192.0.2.10"],
                "sessions": [
                    {
                        "address": "192.0.2.10",
                        "port": 25,
                        "outcome": "ok",
                        "starttls": True,
                        "tls": {"version": "TLSv1.3"},
                        "chain": [
                            {
                                "sha256": "aa",
                                "issuer": "CN=Old CA",
                                "not_after": "2027-01-01T00:00:00Z",
                                "subject": "CN=mx1",
                            }
                        ],
                        "validation": {"trusted": True},
                        "dane": {"status": "NODATA", "usable": 0, "matched": None},
                    }
                ],
            }
        ],
        "policies": {
            "mta_sts": {"record": "v=STSv1; id=1", "record_id": "1", "mode": "testing"},
            "tls_rpt": {"record": "v=TLSRPTv1; rua=mailto:a@partner.example"},
        },
        "findings": [
            {
                "id": "tls.no_tls13",
                "severity": "info",
                "where": "mx1",
                "host": "mx1.partner.example",
            },
            {
                "id": "cert.expires_soon",
                "severity": "warning",
                "where": "mx1",
                "host": "mx1.partner.example",
            },
        ],
    }


def test_identical_reports_have_no_change() -> None:
    assert diff_reports(report(), copy.deepcopy(report())) == []


def test_every_change_is_named() -> None:
    a, b = report(), report()
    s = b["mx"][0]["sessions"][0]
    s["chain"][0] = {
        "sha256": "bb",
        "issuer": "CN=New CA",
        "not_after": "2026-12-10T00:00:00Z",
        "subject": "CN=mx1",
    }
    s["tls"]["version"] = "TLSv1.2"
    s["starttls"] = True
    s["dane"] = {
        "status": "NOERROR",
        "usable": 1,
        "matched": {"usage": 3, "selector": 1, "mtype": 1},
    }
    b["mx"][0]["addresses"] = ["192.0.2.10", "192.0.2.11"]
    b["mx"].append({"host": "mx2.partner.example", "addresses": [], "sessions": []})
    b["policies"]["mta_sts"] = {"record": "v=STSv1; id=2", "record_id": "2", "mode": "enforce"}
    b["policies"]["tls_rpt"] = {"record": None}
    b["findings"] = [
        {
            "id": "tls.no_tls13",
            "severity": "warning",
            "where": "mx1",
            "host": "mx1.partner.example",
        },
        {
            "id": "cert.untrusted",
            "severity": "error",
            "where": "mx1",
            "host": "mx1.partner.example",
        },
    ]
    changes = {c.kind: c for c in diff_reports(a, b)}
    assert set(changes) == {
        "finding.added",
        "finding.removed",
        "finding.regraded",
        "cert.fingerprint",
        "cert.issuer",
        "cert.not_after",
        "tls.version",
        "mx.added",
        "address.added",
        "mta_sts.mode",
        "mta_sts.id",
        "tls_rpt.record",
        "dane.status",
    }
    assert changes["finding.added"].finding == "cert.untrusted"
    assert changes["finding.removed"].finding == "cert.expires_soon"
    assert (changes["finding.regraded"].before, changes["finding.regraded"].after) == (
        "info",
        "warning",
    )
    assert changes["cert.issuer"].text() == "leaf issuer changed from CN=Old CA to CN=New CA"
    assert (
        changes["cert.fingerprint"].address == "192.0.2.10"
        and changes["cert.fingerprint"].port == 25
    )
    assert changes["mta_sts.mode"].text() == "MTA-STS mode changed from testing to enforce"
    assert changes["address.added"].after == "192.0.2.11"
    assert changes["mx.added"].after == "mx2.partner.example"
    # Worst news first: findings, then certificates, then the rest.
    order = [c.kind for c in diff_reports(a, b)]
    assert order == sorted(order, key=KINDS.index)


def test_removed_mx_and_sessions_and_hostile_text() -> None:
    a, b = report(), report()
    b["mx"] = []
    kinds = {c.kind for c in diff_reports(a, b)}
    assert {"mx.removed", "session.removed"} <= kinds
    b = report()
    b["mx"][0]["sessions"][0]["chain"][0]["issuer"] = "CN=evil\x1b[2J"
    change = next(c for c in diff_reports(a, b) if c.kind == "cert.issuer")
    assert change.after == "CN=evil\x1b[2J"  # kept as recorded
    assert "\x1b" not in change.text()  # but never sent raw to a terminal

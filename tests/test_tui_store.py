"""The panes show the engine's store (the Report): a kept connector re-grades it and every
view follows; the endpoints pane counts its rows and says why it is empty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from probes.interpret.connectors import PROFILES
from probes.model.events import (
    AddressesResolved,
    DiagnosisFinished,
    Event,
    MxHost,
    MxResolved,
    SessionFinished,
    SessionStarted,
    TranscriptLine,
    Where,
)
from probes.model.options import Options
from tests.support.ui import LARGE, SMALL, WIDE, finish, make_app, screen_text
from tui.screens.connector_form import ConnectorForm

pytestmark = pytest.mark.ui


def severity_of(app: object, fid: str, host: str) -> set[str]:
    bar = app.findings_bar  # type: ignore[attr-defined]
    return {f.severity for f in bar.findings if f.id == fid and f.where.host == host}


async def test_a_kept_connector_regrades_findings_marks_and_top_line(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        assert severity_of(app, "cert.name_mismatch", "mx2.example.org") == {"error"}
        assert app.domain_pane.status(("mx2.example.org", "192.0.2.20")) == "error"
        top = screen_text(app).splitlines()[0]
        assert "FAIL smtp.connect_timeout" in top  # the cause, not only counts
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, ConnectorForm)
        for _ in range(list(PROFILES).index("postfix-encrypt")):
            await pilot.press("down")
        await pilot.press("enter")
        await pilot.pause()
        assert app.connector is not None and app.connector.profile.name == "postfix-encrypt"
        # An encrypting sender checks no names: the mismatch no longer fails, in every view.
        assert severity_of(app, "cert.name_mismatch", "mx2.example.org") - {"error"}
        assert "error" not in severity_of(app, "cert.name_mismatch", "mx2.example.org")
        assert app.domain_pane.status(("mx2.example.org", "192.0.2.20")) != "error"
        assert app.report is not None
        assert list(app.report.findings) == list(app.connector.findings)
        assert "as postfix-encrypt" in screen_text(app).splitlines()[0]
        # Opening the form again and leaving it keeps the connector's grading.
        await pilot.press("o")
        await pilot.pause()
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert "error" not in severity_of(app, "cert.name_mismatch", "mx2.example.org")


async def test_endpoints_pane_counts_rows_not_results(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await finish(pilot, app)
        pane = app.endpoints_pane
        rows = pane.table.row_count
        note = str(pane.query_one("#endpoints-note").render())
        assert rows > 0 and note.startswith(f"{rows} URLs for ")
        # Detail is the third column, visible before the table scrolls at 80 columns.
        labels = [str(c.label) for c in pane.table.ordered_columns]
        assert labels[:3] == ["Result", "Kind", "Detail"]


async def stops_before_tls(target: str, options: Options) -> AsyncIterator[Event]:
    host = f"mx1.{target}"
    where = Where(host, "192.0.2.7", 25)
    yield MxResolved(target, target, (MxHost(host, 10),))
    yield AddressesResolved(host, ("192.0.2.7",))
    yield SessionStarted(where, "main")
    yield TranscriptLine(where, "main", 1.0, "S", "554 no service", 0)
    yield SessionFinished(where, "main", "greeting", None)
    await asyncio.sleep(0)
    yield DiagnosisFinished(target, 5.0, "error")


async def test_endpoints_pane_says_why_it_stays_empty(tmp_path: Path) -> None:
    app = make_app(tmp_path, source=stops_before_tls)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("4")
        await pilot.pause()
        text = screen_text(app)
        assert "no CA endpoints checked yet" not in text
        assert "stopped at greeting, before a certificate" in text


async def test_firewall_list_comes_from_the_report(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await finish(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        assert app.last_export is not None and app.report is not None
        saved = app.last_export.read_text("utf-8").splitlines()[1:]
        assert saved == app.report.firewall_list()
        hosts = {line.rsplit(":", 1)[0] for line in saved}
        assert hosts == set(app.report.to_json()["providers"]["ca_endpoint_hosts"])


async def test_a_check_that_cannot_be_made_says_why_in_full_at_80_columns(
    tmp_path: Path,
) -> None:
    from probes.model.errors import CheckError

    message = (
        "the resolver 192.0.2.53 port 53 does not answer (timeout after 10 s): use --resolver "
        "with one that answers from here"
    )

    async def no_resolver(target: str, options: Options) -> AsyncIterator[Event]:
        raise CheckError(message)
        yield  # pragma: no cover

    app = make_app(tmp_path, source=no_resolver)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.pause()
        assert app.active_pane == 5
        text = " ".join(screen_text(app).replace("┃", " ").split())
        assert "The check could not be made." in text
        assert "use --resolver with one that answers from here" in text  # not cut
        await pilot.press("1")
        await pilot.pause()
        assert "not checked yet" not in screen_text(app)


async def through_mx(target: str, options: Options) -> AsyncIterator[Event]:
    host = "mx.given.test"
    yield MxResolved(target, target, (MxHost(host, 0),), overridden=True)
    yield AddressesResolved(host, ("192.0.2.8",), authenticated=True)
    await asyncio.sleep(0)
    yield DiagnosisFinished(target, 5.0, None)


async def test_a_check_through_mx_invents_no_dns_facts(tmp_path: Path) -> None:
    from probes.interpret.walk import build_walk

    app = make_app(tmp_path, source=through_mx)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        text = screen_text(app)
        assert "MX answer not validated" not in text
        assert "MX not looked up (--mx names the hosts)" in text
        assert app.report is not None
        step = build_walk(app.report).step("resolve_mx")
        assert step.status == "skip" and "no MX lookup" in step.evidence[0]
        assert not any(e.startswith("MX 0") for e in step.evidence)


async def silent_after_ehlo(target: str, options: Options) -> AsyncIterator[Event]:
    from probes.model.events import Waiting

    host = f"mx1.{target}"
    where = Where(host, "192.0.2.9", 25)
    yield MxResolved(target, target, (MxHost(host, 10),))
    yield AddressesResolved(host, ("192.0.2.9",))
    yield SessionStarted(where, "main")
    yield TranscriptLine(where, "main", 1.0, "S", "220 hello", 0)
    yield TranscriptLine(where, "main", 2.0, "C", "EHLO mxlens.invalid", 1)
    yield Waiting(where, "main", "EHLO reply", 2.0)
    await asyncio.sleep(3600)


async def test_the_transcript_says_what_the_engine_waits_for(tmp_path: Path) -> None:
    import re

    app = make_app(tmp_path, source=silent_after_ehlo)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        for _ in range(60):
            await pilot.pause(0.05)
            if "waiting" in screen_text(app):
                break
        assert re.search(r"waiting \d+ s for the EHLO reply", screen_text(app))
        await pilot.press("c")
        await pilot.pause()
        assert "waiting for the EHLO reply" in screen_text(app)


async def test_notices_are_short_lived_and_name_paths_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 80x24 a 10 s toast with a full path sat over pane 5's why/fix and the key bar.
    from tui.app import NOTICE_SECONDS

    monkeypatch.setenv("HOME", str(tmp_path))
    app = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await finish(pilot, app)
        await pilot.press("m")
        await pilot.pause()
        notice = list(app._notifications)[-1]
        assert notice.timeout == NOTICE_SECONDS <= 5
        assert "saved it to ~/export/ticket-example.org-" in notice.message


def transcript_rows(app: object) -> list[str]:
    lines = app.transcript_pane.lines  # type: ignore[attr-defined]
    return [str(lines.get_option_at_index(i).prompt) for i in range(lines.option_count)]


async def test_transcript_and_chain_show_what_the_report_holds(tmp_path: Path) -> None:
    from probes.model.safetext import visible

    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        report = app.report
        assert report is not None
        for host, address in [(h.host, a) for h in report.mx_in_order() for a in h.addresses]:
            app.domain_pane.choose((host, address))
            await pilot.pause()
            said = [
                visible(e.text)
                for e in report.dialogue(host, address)
                if isinstance(e, TranscriptLine) and e.purpose == "main"
            ]
            rows = transcript_rows(app)
            # every main line the report holds, in its order, and each once
            shown = [r for r in rows if any(r.endswith(text) for text in said)]
            assert said and len(shown) == len(said)
            assert all(row.endswith(text) for row, text in zip(shown, said, strict=True))
            session = report.session_at(host, address)
            chain = app.chain_pane.path((host, address))
            if session is not None and session.validation is not None and session.validation.path:
                assert chain == list(session.validation.path)
            elif session is not None and session.chain is not None:
                assert [link.cert for link in chain] == list(session.chain.certs)
            else:
                assert chain == []


async def test_panes_keep_no_copy_of_the_events(tmp_path: Path) -> None:
    # Replace the store under the panes: what they show must follow it, so they hold
    # nothing the events said besides what the Report holds.
    from probes.model.events import PtrResolved
    from probes.report import Report

    app = make_app(tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await finish(pilot, app)
        assert app.report is not None and app.selected is not None
        host, address = app.selected
        assert app.chain_pane.path(app.selected)  # the fake run has a chain here
        assert transcript_rows(app)
        other = Report("example.org", app.report.options)
        where = Where(host, address, 25)
        for event in (
            MxResolved("example.org", "example.org", (MxHost(host, 10),)),
            AddressesResolved(host, (address,)),
            PtrResolved(address, ("replaced.example.net",), True),
            SessionStarted(where, "main"),
            TranscriptLine(where, "main", 1.0, "S", "421 replaced store says bye", 0),
            SessionFinished(where, "main", "greeting", None),
        ):
            other.add(event)
        assert "replaced.example.net" not in screen_text(app)
        assert "MTA-STS: not checked yet" not in screen_text(app)
        for n in (1, 2, 3):
            app.pane(n).report = other
        app.domain_pane.regraded()
        app.transcript_pane.show_address(app.selected)
        app.chain_pane.show_address(app.selected)
        await pilot.pause()
        rows = transcript_rows(app)
        assert rows[0].endswith("421 replaced store says bye")
        assert not any("EHLO" in row for row in rows)
        assert app.chain_pane.path(app.selected) == []
        assert "no certificate chain" in str(app.chain_pane.chain_tree.root.label)
        pane1 = app.domain_pane
        address_row = str(pane1._addr_nodes[(host, address)].label)
        assert "PTR replaced.example.net (confirmed)" in address_row
        assert "MTA-STS: not checked yet" in str(pane1._policy_node.children[0].label)

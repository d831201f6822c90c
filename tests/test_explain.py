"""The bounce decoder: the corpus of real and representative texts, the data file's integrity,
the `mxlens explain` command (exit codes, JSON contract, stdin), `--run` against the lab, and
the paste prompt in the UI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from probes.interpret.explain import SCHEMA, confirmed_cause, explain, knowledge, rules, to_text
from probes.interpret.walk import STEPS
from probes.model.errors import CheckError
from probes.model.findings import catalog
from tests.support.ui import LARGE, make_app, wait_decoded, wait_done
from tui.cli import main

CORPUS_FILE = Path(__file__).parent / "data" / "bounce_corpus.json"
CORPUS: list[dict[str, Any]] = json.loads(CORPUS_FILE.read_text("utf-8"))["corpus"]
CONTRACT_KEYS = {
    "schema",
    "recognised",
    "status_code",
    "reply_code",
    "host",
    "address",
    "domain",
    "stage",
    "candidates",
    "source",
}


# ------------------------------------------------------------------ the corpus


def test_corpus_is_big_enough_and_sourced() -> None:
    assert len(CORPUS) >= 40
    for entry in CORPUS:
        assert entry["source"].strip(), entry["text"]
        assert entry["expect"].get("rule"), entry["text"]


def is_real(entry: dict[str, Any]) -> bool:
    """A text copied from public material, not one written for mxlens."""
    return "representative" not in entry["source"].lower()


def test_corpus_holds_at_least_40_real_world_texts() -> None:
    # The acceptance criterion: real bounces and log lines collected from public documentation,
    # each kept with its source. Texts written for mxlens say "representative" and do not count.
    real = [e for e in CORPUS if is_real(e)]
    assert len(real) >= 40, f"only {len(real)} real-world texts"
    assert len({e["text"] for e in real}) == len(real), "a real text is listed twice"
    # A real source says where the text was found: an address, a repository, a list or a document.
    for entry in real:
        assert len(entry["source"]) >= 20, entry["source"]


@pytest.mark.parametrize(
    "entry", CORPUS, ids=[f"{i:02d}-{e['expect']['rule']}" for i, e in enumerate(CORPUS)]
)
def test_corpus_text_is_decoded(entry: dict[str, Any]) -> None:
    got = explain(entry["text"])
    want = entry["expect"]
    assert got.recognised, entry["text"]
    assert got.rule == want["rule"], f"{entry['text']}\nmatched {got.matched!r}"
    for key in ("status_code", "reply_code", "host", "address", "domain", "stage"):
        if key in want:
            assert getattr(got, key) == want[key], f"{key}: {entry['text']}"
    if "cause" in want:
        assert want["cause"] in got.candidates
    assert got.candidates, "a recognised text names at least one candidate finding"


def test_every_rule_is_exercised_by_the_corpus_or_its_own_example() -> None:
    covered = {e["expect"]["rule"] for e in CORPUS}
    for rule in rules():
        if rule.example:
            assert explain(rule.example).rule == rule.id, (
                f"{rule.id}: its example matches another rule first"
            )
            covered.add(rule.id)
    missing = [r.id for r in rules() if r.id not in covered]
    assert not missing, f"rules no text exercises: {missing}"


# ------------------------------------------------------------------ the data file


def test_rules_name_real_findings_steps_and_sources() -> None:
    ids = set(catalog())
    seen: set[str] = set()
    for rule in rules():
        assert rule.id not in seen, f"duplicate rule id {rule.id}"
        seen.add(rule.id)
        unknown = [c for c in rule.candidates if c not in ids]
        assert not unknown, f"{rule.id}: unknown finding ids {unknown}"
        assert rule.stage is None or rule.stage in STEPS, f"{rule.id}: stage {rule.stage}"
        assert rule.source.strip() and rule.meaning.strip()
    assert knowledge().updated


def test_exchange_codes_and_postfix_texts_from_the_brief_are_known() -> None:
    texts = {
        "450 4.4.316 Connection refused": "smtp.connect_refused",
        "450 4.4.315 Connection timed out": "smtp.connect_timeout",
        "450 4.4.318 Connection was closed abruptly": "smtp.timeout",
        "450 4.4.312 DNS query failed": "dns.lookup_failed",
        "451 4.7.320 Certificate validation failed": "cert.untrusted",
        "4.7.321 starttls-not-supported": "tls.starttls_not_offered",
        "4.7.322 certificate-expired": "cert.expired",
        "4.7.323 tlsa-invalid": "dane.tlsa_mismatch",
        "4.7.324 dnssec-invalid": "dane.lookup_failed",
        "4.7.325 certificate-host-mismatch": "cert.name_mismatch",
        "TLS is required, but host mx.x.example[192.0.2.1] refused to start TLS: 454 4.7.0 TLS not available": "tls.starttls_refused",
        "no TLSA records found": "dane.dnssec_unsigned",
    }
    for text, cause in texts.items():
        got = explain(text)
        assert got.recognised and cause in got.candidates, text


def test_the_outer_exchange_code_wins_over_the_inner_one() -> None:
    got = explain(
        "450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail]"
    )
    assert (got.reply_code, got.status_code) == ("450", "4.4.317")
    assert got.candidates[0] == "tls.starttls_not_offered"


# Every Exchange Online text of provider-facts.md ("Exchange Online texts", 2026-12).
EXO_FACT_CODES = {
    "4.4.317", "4.4.318", "4.7.320", "4.4.8", "5.4.8", "4.7.5", "5.7.5", "4.4.0",
    *(f"{c}.7.{n}" for c in "45" for n in range(321, 326)),
}  # fmt: skip
EXO_4_4_317_DETAILS = {"UntrustedRoot", "SubjectMismatch", "CertificateExpired", "451 5.7.3"}


def test_every_exchange_online_text_of_the_provider_facts_is_in_the_corpus() -> None:
    facts = [e for e in CORPUS if e.get("provider_fact")]
    assert {e["expect"]["status_code"] for e in facts} >= EXO_FACT_CODES
    details = " ".join(e["text"] for e in facts if e["expect"]["status_code"] == "4.4.317")
    assert all(f"[Message={d}" in details for d in EXO_4_4_317_DETAILS)
    for entry in facts:
        want = entry["expect"]
        assert {"status_code", "host", "domain", "stage", "cause"} <= set(want), entry["text"]
        got = explain(entry["text"])
        assert got.candidates and got.candidates[0] == want["cause"], entry["text"]


def test_the_message_detail_decides_the_cause_whatever_the_code() -> None:
    for code in ("450 4.4.317 Cannot connect to remote server", "451 4.7.320", "451 4.4.318"):
        got = explain(f"{code} [Message=SubjectMismatch] [LastAttemptedServerName=mx.p.example]")
        assert got.stage == "name_match" and got.candidates[0] == "cert.name_mismatch", code
        assert got.detail == "SubjectMismatch"
        untrusted = explain(f"{code} [Message=UntrustedRoot]")
        assert untrusted.stage == "chain_trusted"
        assert untrusted.candidates[0] == "cert.incomplete_chain"  # EXO fetches no intermediate
    # An unknown detail leaves the rule's own reading.
    got = explain(
        "450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 Security status IllegalMessage]"
    )
    assert got.rule == "exo.4.4.317" and got.stage == "greeting"


def test_the_inner_reply_of_primary_target_decides() -> None:
    got = explain(
        '451 4.4.0 Primary target IP address responded with: "421 4.7.0 Too many connections,'
        ' try again later." Attempted failover to alternate host, but that did not succeed.'
    )
    assert (got.reply_code, got.status_code) == ("451", "4.4.0")
    assert got.inner_reply is not None and got.inner_reply.startswith("421 4.7.0")
    assert got.candidates == ("smtp.rate_limited",)


def test_ip_addresses_are_not_taken_for_status_codes() -> None:
    got = explain("connect to mx.partner.example[4.4.4.4]:25: Connection refused")
    assert got.status_code is None
    assert got.address == "4.4.4.4"


def test_ipv6_address_in_brackets() -> None:
    got = explain("TLS is required, but was not offered by host mx.partner.example[2001:db8::25]")
    assert (got.host, got.address) == ("mx.partner.example", "2001:db8::25")


def test_the_sender_address_is_not_the_recipient_domain() -> None:
    got = explain(
        "postfix/qmgr[1]: ABC: from=<alice@sender.example>, size=100\n"
        "postfix/smtp[2]: ABC: to=<bob@partner.example>, relay=mx.partner.example[192.0.2.7]:25, "
        "dsn=4.7.4, status=deferred (TLS is required, but was not offered by host mx.partner.example[192.0.2.7])"
    )
    assert got.domain == "partner.example"


def test_unknown_text_is_not_recognised_but_still_yields_a_domain() -> None:
    got = explain("Delivery to bob@partner.example failed for reasons nobody wrote down.")
    assert not got.recognised
    assert got.candidates == () and got.stage is None and got.source is None
    assert got.domain == "partner.example"
    assert got.target() == ("partner.example", None)


def test_unknown_text_without_domain_has_no_target() -> None:
    got = explain("something went wrong")
    assert not got.recognised and got.target() is None
    assert "nothing to check" in to_text(got)


def test_empty_text_is_bad_input() -> None:
    with pytest.raises(CheckError):
        explain("  \n ")


def test_hostile_text_cannot_drive_the_terminal() -> None:
    text = "TLS is required, but was not offered by host mx.\x1b]0;pwned\x07evil.example[192.0.2.7] to=<a@b\x1b[31m.example>"
    out = to_text(explain(text))
    assert "\x1b" not in out and "\x07" not in out


def test_confirmed_cause_takes_the_first_candidate_found() -> None:
    e = explain("Server certificate not verified")
    assert confirmed_cause(e, ["cert.expired", "cert.untrusted"]) == "cert.untrusted"
    assert confirmed_cause(e, ["tls.no_tls13"]) is None


def test_a_huge_paste_is_capped_not_fatal() -> None:
    got = explain("x" * 5_000_000 + " TLS is required, but was not offered")
    assert not got.recognised  # the cap cut the tail: no hang, no crash


# ------------------------------------------------------------------ the command


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_follows_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys,
        "to=<u@partner.example>, relay=mx.partner.example[192.0.2.7]:25, dsn=4.7.4, status=deferred "
        "(TLS is required, but was not offered by host mx.partner.example[192.0.2.7])",
        "--json",
    )
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert CONTRACT_KEYS <= set(doc)
    assert doc["schema"] == SCHEMA == "mxlens/explain/1"
    assert doc["recognised"] is True
    assert (doc["status_code"], doc["reply_code"]) == ("4.7.4", None)
    assert (doc["host"], doc["address"], doc["domain"]) == (
        "mx.partner.example",
        "192.0.2.7",
        "partner.example",
    )
    assert doc["stage"] == "starttls_offered"
    assert doc["candidates"] == ["tls.starttls_not_offered"]
    assert "check" not in doc


def test_cli_text_output_and_not_recognised_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "the printer is on fire")
    assert code == 1
    assert out.startswith("Not recognised")
    code, out, _ = run_cli(capsys, "450 4.4.316 Connection refused")
    assert code == 0 and "smtp.connect_refused" in out


def test_cli_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"Cannot start TLS: handshake failure\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run_cli(capsys, "-", "--json")
    assert code == 0 and json.loads(out)["candidates"][0] == "tls.handshake_failed"


def test_cli_bad_input_exits_3_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run_cli(capsys, "")
    assert code == 3 and out == "" and err.count("\n") == 1

    class Broken:
        @property
        def buffer(self) -> Any:
            raise OSError("stdin is closed")

    monkeypatch.setattr("sys.stdin", Broken())
    code, out, err = run_cli(capsys, "-")
    assert code == 3 and err.startswith("mxlens: cannot read") and err.count("\n") == 1


def test_cli_run_without_a_target_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "the printer is on fire", "--run", "--json")
    assert code == 3
    assert json.loads(out)["check"] is None
    assert "nothing to check" in err


# ------------------------------------------------------------------ --run against the lab


@pytest.mark.lab
@pytest.mark.parametrize(
    ("text", "cause", "exit_code"),
    [
        (
            "postfix/smtp[9]: 1A: to=<bob@no-starttls.lab.test>, relay=mx1.no-starttls.lab.test[127.0.0.9]:25, "
            "dsn=4.7.4, status=deferred (TLS is required, but was not offered by host mx1.no-starttls.lab.test[127.0.0.9])",
            "tls.starttls_not_offered",
            2,
        ),
        (
            "postfix/smtp[9]: certificate verification failed for mx1.untrusted.lab.test[127.0.0.9]:25: "
            "untrusted issuer /CN=somebody",
            "cert.untrusted",
            2,
        ),
        (
            "450 4.4.316 Connection refused [Message=Socket error code 10061] "
            "[LastAttemptedServerName=mx1.connect-refused.lab.test] [LastAttemptedServerIP=127.0.0.9:25]",
            "smtp.connect_refused",
            2,
        ),
        (
            "TLS negotiation failed with error RevocationCheckFailure; recipient ann@revocation-unavailable.lab.test",
            "ca.revocation_unavailable",
            1,
        ),
    ],
)
def test_run_against_the_lab_confirms_the_cause(
    capsys: pytest.CaptureFixture[str], text: str, cause: str, exit_code: int
) -> None:
    code, out, _ = run_cli(capsys, text, "--run", "--lab", "--json", "--no-extra-probes")
    doc = json.loads(out)
    assert doc["cause"] == cause
    assert doc["check"]["schema"] == "mxlens/1"
    assert code == exit_code == doc["check"]["exit_code"]


@pytest.mark.lab
def test_run_on_unrecognised_text_checks_the_domain_found(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys, "mail to bob@healthy.lab.test bounced, no idea why", "--run", "--lab", "--json"
    )
    doc = json.loads(out)
    assert doc["recognised"] is False and doc["cause"] is None
    assert doc["check"]["target"] == "healthy.lab.test"
    assert [m["host"] for m in doc["check"]["mx"]] == ["mx1.healthy.lab.test"]
    assert code == 0


@pytest.mark.lab
def test_run_text_output_names_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "TLS is required, but was not offered by host mx1.no-starttls.lab.test[127.0.0.9]",
        "--run",
        "--lab",
    )
    assert code == 2
    assert "Confirmed cause: tls.starttls_not_offered" in out


# ------------------------------------------------------------------ the paste prompt


@pytest.mark.ui
async def test_paste_prompt_decodes_and_offers_the_check(tmp_path: Path) -> None:
    from textual.widgets import Static, TextArea

    from tui.screens.explain_prompt import ExplainPrompt

    app = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        prompt = app.screen
        assert isinstance(prompt, ExplainPrompt)
        area = prompt.query_one(TextArea)
        area.load_text(
            "to=<bob@partner.example>, dsn=4.7.4, status=deferred (TLS is required, but was not offered "
            "by host mx.partner.example[192.0.2.7]) \x1b[2J"
        )
        await wait_decoded(pilot)
        shown = str(prompt.query_one("#explain-result", Static).render())
        assert "tls.starttls_not_offered" in shown
        assert "mx.partner.example [192.0.2.7]" in shown
        assert "\x1b" not in shown
        keys = str(prompt.query_one("#explain-keys", Static).render())
        assert "check partner.example via mx.partner.example" in keys
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not isinstance(app.screen, ExplainPrompt)
        assert app.target == "partner.example"
        # the host the bounce names is probed, as `mxlens explain --run` does (--mx host)
        assert [o.host for o in app.options.mx] == ["mx.partner.example"]
        assert app.report is not None and app.report.options.mx == app.options.mx
        app.start("other.example")  # a new target ("/") drops the bounce's host again
        assert app.options.mx == ()


@pytest.mark.ui
@pytest.mark.lab
async def test_paste_prompt_in_lab_mode_probes_the_named_host(tmp_path: Path) -> None:
    """A bounce naming mx2 of a two-MX lab domain: only mx2 is checked, with the lab's
    plumbing (resolver, port, trust store), so mx1's expired certificate is not reported."""
    from textual.widgets import TextArea

    from tui.screens.explain_prompt import ExplainPrompt

    domain = "pool-inconsistent.lab.test"
    app = make_app(tmp_path, domain, source=None, lab=True)
    async with app.run_test(size=LARGE) as pilot:
        await wait_done(pilot, app, after=0, polls=400, settle=None)
        assert app.report is not None
        assert set(app.report.mx) == {f"mx1.{domain}", f"mx2.{domain}"}  # the domain's own MX
        first = app.run_id
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ExplainPrompt)
        app.screen.query_one(TextArea).load_text(
            f"postfix/smtp[4711]: 0123456789: to=<bob@{domain}>, relay=mx2.{domain}[127.0.0.2]:25,"
            " delay=1, status=deferred (TLS is required, but was not offered by host"
            f" mx2.{domain}[127.0.0.2])"
        )
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_done(pilot, app, after=first, polls=400, settle=None)
        report = app.report
        assert report is not None and app.error is None
        assert app.target == domain
        assert list(report.mx) == [f"mx2.{domain}"]
        assert report.mx[f"mx2.{domain}"].sessions, "no session at the named host"
        assert all(s.outcome == "ok" for s in report.mx[f"mx2.{domain}"].sessions.values())
        assert "cert.expired" not in {f.id for f in report.findings}
        # rerun checks the same host again
        again = app.run_id
        await pilot.press("r")
        await wait_done(pilot, app, after=again, polls=400, settle=None)
        assert list(app.report.mx) == [f"mx2.{domain}"]


@pytest.mark.ui
async def test_paste_prompt_without_target_stays_open(tmp_path: Path) -> None:
    from textual.app import App

    from tui.screens.explain_prompt import ExplainPrompt

    results: list[str | None] = []

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(ExplainPrompt("nothing useful here"), results.append)

    app = Host()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, ExplainPrompt) and results == []
        await pilot.press("escape")
        await pilot.pause()
        assert results == [None]

"""History, diff and watch against the lab's real sockets, with servers switched at run time."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mxlens_lab.scenarios import CertSpec
from mxlens_lab.world import Lab, LabThread
from probes.history.store import HistoryStore
from tui.cli import main

pytestmark = pytest.mark.lab
HISTORY_SCHEMA = json.loads(
    (Path(__file__).parent.parent / "docs/schema/mxlens-history-1.json").read_text("utf-8")
)


def lab_args(lab: Lab, name: str) -> list[str]:
    """`DOMAIN --resolver ... --port ...` for scenario `name` (check_command without `mxlens check`)."""
    return shlex.split(lab.check_command(name))[2:]


def child(*args: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.getcwd()}


def check(lab: Lab, name: str, capsys: pytest.CaptureFixture[str]) -> int:
    code = main(["check", *lab_args(lab, name), "--json"])
    out = capsys.readouterr()
    assert "not recorded" not in out.err, out.err
    json.loads(out.out)
    return code


def diff_json(
    domain: str, capsys: pytest.CaptureFixture[str], *runs: str
) -> tuple[int, dict[str, Any]]:
    code = main(["diff", domain, *runs, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out)


def test_certificate_change_is_named_by_diff(
    capsys: pytest.CaptureFixture[str], _private_state_dir: Path
) -> None:
    with LabThread(["healthy"]) as lab:
        domain = lab.domain("healthy")
        assert check(lab, "healthy", capsys) == 0
        # The partner renews: another intermediate, a leaf that expires in 5 days.
        lab.switch("healthy", cert=CertSpec(not_after_days=5), new_ca="healthy-renewed-ca")
        ticket = _private_state_dir / "ticket.md"
        assert main(["check", *lab_args(lab, "healthy"), "--ticket-to", str(ticket)]) == 1
        capsys.readouterr()
    code, doc = diff_json(domain, capsys)
    assert code == 1
    assert doc["schema"] == "mxlens/diff/1" and doc["changed"] is True
    kinds = {c["kind"]: c for c in doc["changes"]}
    for kind in ("cert.fingerprint", "cert.issuer", "cert.not_after"):
        assert kind in kinds, doc["changes"]
        assert kinds[kind]["before"] != kinds[kind]["after"]
    assert "healthy-renewed-ca" in kinds["cert.issuer"]["after"]
    assert "healthy-renewed-ca" not in kinds["cert.issuer"]["before"]
    added = [c for c in doc["changes"] if c["kind"] == "finding.added"]
    assert [c["finding"] for c in added] == ["cert.expires_soon"]
    assert added[0]["after"] == "warning"
    # The same in words, and the run ids given explicitly.
    assert main(["diff", domain, str(doc["a"]["id"]), str(doc["b"]["id"])]) == 1
    text = capsys.readouterr().out
    assert "leaf issuer changed from" in text and "leaf notAfter changed from" in text
    assert "new finding cert.expires_soon (warning)" in text
    # The ticket of the second check says what changed since the first.
    md = ticket.read_text("utf-8")
    assert "## Changes since the last check" in md
    since = f"since {doc['a']['started'][:10]} {doc['a']['started'][11:16]} UTC: leaf issuer changed from"
    assert since in md


def test_two_identical_runs_diff_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    with LabThread(["healthy"]) as lab:
        domain = lab.domain("healthy")
        assert check(lab, "healthy", capsys) == 0
        assert check(lab, "healthy", capsys) == 0
    code, doc = diff_json(domain, capsys)
    assert (code, doc["changed"], doc["changes"]) == (0, False, [])
    assert main(["diff", domain]) == 0
    assert "No change." in capsys.readouterr().out


def test_no_history_records_nothing(
    capsys: pytest.CaptureFixture[str], _private_state_dir: Path
) -> None:
    with LabThread(["healthy"]) as lab:
        assert main(["check", *lab_args(lab, "healthy"), "--no-history"]) == 0
    capsys.readouterr()
    with HistoryStore(_private_state_dir / "history.sqlite3") as store:
        assert store.count() == 0


def test_unwritable_state_dir_still_checks_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MXLENS_STATE_DIR", str(blocker / "mxlens"))
    with LabThread(["healthy"]) as lab:
        code = main(["check", *lab_args(lab, "healthy"), "--json"])
    out = capsys.readouterr()
    assert code == 0
    assert json.loads(out.out)["exit_code"] == 0  # the report is whole
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "this check was not recorded in the history" in lines[0]
    assert "cannot create the state directory" in lines[0]


def test_eight_concurrent_checks_are_all_recorded_once(_private_state_dir: Path) -> None:
    with LabThread(["healthy"]) as lab:
        # A generous timeout: on a loaded machine 8 checks at once must not time out, since
        # what is tested here is the recording, not the lab's speed.
        args = [*lab_args(lab, "healthy"), "--timeout", "20", "--no-extra-probes"]
        procs = [
            subprocess.Popen(
                child("check", *args, "--json"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=child_env(),
            )
            for _ in range(8)
        ]
        results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode in (0, 1, 2), err  # a finished check, whatever it found
        assert "locked" not in err and "not recorded" not in err, err
        json.loads(out)
    with HistoryStore(_private_state_dir / "history.sqlite3") as store:
        runs = store.runs(limit=100)
    assert len(runs) == 8
    assert len({r.id for r in runs}) == 8
    assert {r.domain for r in runs} == {"healthy.lab.test"}


def _integrity(path: Path) -> tuple[str, int, list[int]]:
    conn = sqlite3.connect(path)
    try:
        status = conn.execute("PRAGMA integrity_check").fetchone()[0]
        count = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id")]
        for (report,) in conn.execute("SELECT report FROM runs"):
            json.loads(report)
    finally:
        conn.close()
    return status, count, ids


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_kill_9_during_checks_leaves_an_intact_database(
    capsys: pytest.CaptureFixture[str], _private_state_dir: Path
) -> None:
    db = _private_state_dir / "history.sqlite3"
    with LabThread(["healthy", "silent"]) as lab:
        for _ in range(3):
            assert check(lab, "healthy", capsys) == 0
        # 1. Killed in the middle of a check (a server that never answers).
        proc = subprocess.Popen(
            child("check", *lab_args(lab, "silent"), "--timeout", "30"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env(),
        )
        time.sleep(1.0)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _integrity(db) == ("ok", 3, [1, 2, 3])
        # 2. Killed while it records run after run (watch re-checks with no pause): the kill
        # lands at an arbitrary point, often inside a write transaction.
        proc = subprocess.Popen(
            child("watch", *lab_args(lab, "healthy"), "--every", "0.001", "--until", "change"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env(),
        )
        try:
            assert _wait_for(lambda: _integrity(db)[1] >= 6, 60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    status, count, ids = _integrity(db)
    assert status == "ok"
    assert ids[:3] == [1, 2, 3] and count >= 6
    # The next writer carries on as if nothing happened.
    with HistoryStore(db) as store:
        assert store.notices == []
        assert store.latest("healthy.lab.test", 1)[0].id == ids[-1]


def test_watch_stops_when_the_scenario_is_fixed(_private_state_dir: Path) -> None:
    with LabThread(["expired"]) as lab:
        proc = subprocess.Popen(
            child("watch", *lab_args(lab, "expired"), "--every", "0.2", "--until", "ok"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "check 1: ERROR" in first, first
        assert proc.poll() is None  # still watching a broken route
        lab.switch("expired", cert=CertSpec())  # the partner installs a valid certificate
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert "is OK; stopping." in out
    assert "changed mx1.expired.lab.test" in out and "finding cert.expired (error) is gone" in out
    assert "\a" not in out  # not a terminal: no bell
    with HistoryStore(_private_state_dir / "history.sqlite3") as store:
        runs = store.runs("expired.lab.test")
    assert len(runs) >= 2 and {r.source for r in runs} == {"watch"}
    assert runs[0].exit == 0 and runs[-1].exit == 2


def test_watch_until_change_json_lines(_private_state_dir: Path) -> None:
    with LabThread(["healthy"]) as lab:
        proc = subprocess.Popen(
            child(
                "watch", *lab_args(lab, "healthy"), "--every", "0.2", "--until", "change", "--json"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        jsonschema.validate(first, HISTORY_SCHEMA)
        assert first["schema"] == "mxlens/watch/1" and first["stopped"] is False
        lab.switch("healthy", server={"offer_starttls": False})
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    last = json.loads(out.strip().splitlines()[-1])
    jsonschema.validate(last, HISTORY_SCHEMA)
    assert last["stopped"] is True and last["exit"] == 2
    kinds = {c["kind"] for c in last["changes"]}
    assert "smtp.starttls" in kinds and "finding.added" in kinds


def test_watch_rings_the_bell_on_a_terminal(_private_state_dir: Path) -> None:
    import pty

    with LabThread(["healthy"]) as lab:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            child("watch", *lab_args(lab, "healthy"), "--every", "0.2"),
            stdout=follower,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        os.close(follower)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        out = b""
        with contextlib.suppress(OSError):  # EIO once the child's side is closed
            while chunk := os.read(leader, 4096):
                out += chunk
        os.close(leader)
    assert b"is OK; stopping." in out and out.rstrip().endswith(b"\a")


def test_explain_run_is_recorded_unless_no_history(
    capsys: pytest.CaptureFixture[str], _private_state_dir: Path
) -> None:
    text = "mail to bob@healthy.lab.test bounced, no idea why"
    assert main(["explain", text, "--run", "--lab", "--json", "--no-history"]) == 0
    assert not (_private_state_dir / "history.sqlite3").exists()
    assert main(["explain", text, "--run", "--lab", "--json"]) == 0
    capsys.readouterr()
    with HistoryStore(_private_state_dir / "history.sqlite3") as store:
        runs = store.runs()
    assert [(r.domain, r.source, r.exit) for r in runs] == [("healthy.lab.test", "explain", 0)]


async def test_lab_switch_on_its_own_loop_and_bad_requests() -> None:
    async with Lab(["healthy"]) as lab:
        [plan] = lab.host_plans("healthy")
        assert plan.server is not None and plan.server.behaviour.offer_starttls
        old_chain = plan.server.behaviour.cert_chain_pem
        lab.switch("healthy", server={"offer_starttls": False})
        assert plan.server.behaviour.offer_starttls is False
        assert plan.server.behaviour.cert_chain_pem == old_chain  # no new leaf asked for
        lab.switch("healthy", cert=CertSpec(not_after_days=3))
        assert plan.server.behaviour.cert_chain_pem != old_chain
        assert plan.server.behaviour.offer_starttls is False  # the earlier switch stays
        with pytest.raises(KeyError, match="no running SMTP server"):
            lab.switch("healthy", label="mx9")

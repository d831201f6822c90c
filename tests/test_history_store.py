"""The history database: location, round trip, pruning, migrations, damage, audits, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from probes.history import store as store_module
from probes.history.store import (
    HistoryError,
    HistoryStore,
    UnknownAudit,
    UnknownRun,
    default_path,
    max_runs_setting,
    state_dir,
)

T0 = datetime(2026, 11, 28, 14, 2, 5, tzinfo=timezone.utc)


def doc(target: str = "Partner.Example", exit_code: int = 0, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": "mxlens/1",
        "target": target,
        "target_ascii": target.lower(),
        "policy": "strict",
        "mx": [
            {
                "host": "mx1.partner.example",
                "preference": 10,
                "addresses": ["192.0.2.10"],
                "sessions": [
                    {
                        "address": "192.0.2.10",
                        "port": 25,
                        "transcript": [{"t_ms": 1.0, "dir": "S", "text": "220 secret banner"}],
                        "tls": {"version": "TLSv1.3"},
                        "chain": [{"sha256": "aa", "issuer": "CN=A", "not_after": "2027"}],
                    }
                ],
            }
        ],
        "dns": [{"name": "partner.example", "rtype": "MX"}],
        "findings": [],
        "exit_code": exit_code,
    }
    base.update(extra)
    return base


def test_location_follows_the_contract(tmp_path: Path) -> None:
    assert state_dir({"MXLENS_STATE_DIR": "/s", "XDG_STATE_HOME": "/x"}) == Path("/s")
    assert state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/mxlens")
    assert state_dir({}) == Path.home() / ".local/state/mxlens"
    assert default_path({"MXLENS_STATE_DIR": "/s"}) == Path("/s/history.sqlite3")


def test_round_trip_keeps_the_report_but_not_the_transcript(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite3") as store:
        run_id = store.record_run(doc(), started=T0, source="check", options={"policy": "strict"})
        run = store.run(run_id)
    assert (run.domain, run.target, run.started, run.exit) == (
        "partner.example",
        "Partner.Example",
        "2026-11-28T14:02:05Z",
        0,
    )
    assert run.options == {"policy": "strict"}
    session = run.report["mx"][0]["sessions"][0]
    assert session["chain"][0]["sha256"] == "aa" and session["tls"]["version"] == "TLSv1.3"
    assert "transcript" not in session and "dns" not in run.report
    files = [p for p in tmp_path.iterdir() if p.name.startswith("h.sqlite3")]
    assert files and all(b"secret banner" not in p.read_bytes() for p in files)


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    HistoryStore(tmp_path / "h.sqlite3").close()
    conn = sqlite3.connect(tmp_path / "h.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    conn.close()


def test_queries_newest_first_and_by_domain(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite3") as store:
        a = store.record_run(doc("a.example"), started=T0)
        b = store.record_run(doc("b.example", 2), started=T0)
        c = store.record_run(doc("a.example", 1), started=T0)
        assert [r.id for r in store.runs()] == [c, b, a]
        assert [r.id for r in store.runs("A.Example.")] == [c, a]
        assert [r.id for r in store.latest("a.example", 2)] == [c, a]
        prev = store.previous(store.run(c))
        assert prev is not None and prev.id == a
        assert store.previous(store.run(a)) is None
        with pytest.raises(UnknownRun, match="no run 99"):
            store.run(99)


def test_pruning_keeps_the_newest_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MXLENS_HISTORY_MAX_RUNS", "3")
    assert max_runs_setting() == 3
    with HistoryStore(tmp_path / "h.sqlite3") as store:
        ids = [store.record_run(doc(), started=T0) for _ in range(5)]
        assert [r.id for r in store.runs()] == ids[:1:-1]
        assert store.count() == 3
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv("MXLENS_HISTORY_MAX_RUNS", bad)
        with pytest.raises(HistoryError, match="MXLENS_HISTORY_MAX_RUNS"):
            max_runs_setting()


def test_corrupt_database_is_moved_aside_never_deleted(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    garbage = b"this is not a database\n" * 200
    path.write_bytes(garbage)
    with HistoryStore(path) as store:
        assert len(store.notices) == 1 and "corrupt" in store.notices[0]
        moved = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        assert len(moved) == 1 and moved[0].read_bytes() == garbage
        assert str(moved[0]) in store.notices[0]
        store.record_run(doc(), started=T0)  # a fresh database in its place
        assert store.count() == 1


def test_database_damaged_inside_is_moved_aside_when_read(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with HistoryStore(path) as store:
        for _ in range(30):
            store.record_run(doc(), started=T0)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data), page):  # keep the header page, wreck the rest
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(HistoryError, match="moved aside") as err:
        store = HistoryStore(path)
        store.latest("partner.example", 30)
    assert "\n" not in str(err.value)
    assert any(".corrupt-" in p.name for p in tmp_path.iterdir())


def test_unreadable_database_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.mkdir()  # something that no one can open as a database, root included
    with pytest.raises(HistoryError, match="cannot use the history database"):
        HistoryStore(path)
    assert path.is_dir()  # not moved, not deleted: it is not ours to judge


def test_state_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HistoryError, match="cannot create the state directory"):
        HistoryStore(blocker / "state" / "history.sqlite3")


def test_database_from_a_newer_mxlens_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {store_module.SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="newer than this mxlens"):
        HistoryStore(path)
    assert path.read_bytes() == before


def test_migrations_upgrade_an_old_file_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "history.sqlite3"
    with HistoryStore(path) as store:
        run_id = store.record_run(doc(), started=T0)
    extra = ("ALTER TABLE runs ADD COLUMN note TEXT", "UPDATE runs SET note = 'migrated'")
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, extra))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(store_module.MIGRATIONS))
    with HistoryStore(path) as store:
        assert store.run(run_id).domain == "partner.example"
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert store.conn.execute("SELECT note FROM runs").fetchone()[0] == "migrated"


def test_audit_items_are_recorded_once_and_survive_pruning(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite3", max_runs=2) as store:
        audit_id = store.create_audit(
            [{"domain": "a.example"}, {"domain": "b.example"}], {"jobs": 4}
        )
        first = store.record_audit_item(
            audit_id, 0, "a.example", {"domain": "a.example", "exit": 1}, doc=doc("a.example", 1)
        )
        again = store.record_audit_item(
            audit_id, 0, "a.example", {"domain": "a.example", "exit": 1}, doc=doc("a.example", 1)
        )
        assert first is not None and again == first and store.count() == 1
        audit = store.audit(audit_id)
        assert audit.input[1] == {"domain": "b.example"} and audit.options == {"jobs": 4}
        assert audit.done_seqs() == {0} and audit.items[0].exit == 1
        assert audit.finished is None
        store.finish_audit(audit_id)
        assert store.audit(audit_id).finished is not None
        for _ in range(3):  # push the audit's run out
            store.record_run(doc(), started=T0)
        kept = store.audit(audit_id).items[0]
        assert kept.run_id is None and kept.row == {"domain": "a.example", "exit": 1}
        with pytest.raises(UnknownAudit):
            store.audit("nope")
        with pytest.raises(UnknownAudit):
            store.record_audit_item("nope", 0, "a.example", None)


def _writer(path: str, n: int) -> None:
    with HistoryStore(path) as store:
        for i in range(n):
            store.record_run(doc(f"w{i % 3}.example"), started=datetime.now(timezone.utc))


def test_eight_processes_writing_at_once(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), 25)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    with HistoryStore(path) as store:
        assert store.count() == 200
        assert len({r.id for r in store.runs(limit=1000)}) == 200
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for (report,) in conn.execute("SELECT report FROM runs"):
        assert json.loads(report)["schema"] == "mxlens/1"
    conn.close()

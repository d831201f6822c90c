"""`mxlens history` and `mxlens diff` on a prepared database: output, schema, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from probes.history.store import HistoryStore
from tui.cli import main

SCHEMA = json.loads(
    (Path(__file__).parent.parent / "docs/schema/mxlens-history-1.json").read_text("utf-8")
)
T0 = datetime(2026, 11, 28, 14, 2, 5, tzinfo=timezone.utc)


def doc(target: str, sha: str, findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "schema": "mxlens/1",
        "target": target,
        "target_ascii": target,
        "policy": "strict",
        "mx": [
            {
                "host": f"mx.{target}",
                "addresses": ["192.0.2.1"],
                "sessions": [
                    {
                        "address": "192.0.2.1",
                        "port": 25,
                        "chain": [{"sha256": sha, "issuer": "CN=I", "not_after": "2027"}],
                    }
                ],
            }
        ],
        "findings": findings or [],
        "exit_code": 2 if findings else 0,
    }


@pytest.fixture
def db(_private_state_dir: Path) -> Path:
    path = _private_state_dir / "history.sqlite3"
    with HistoryStore(path) as store:
        store.record_run(doc("a.example", "aa"), started=T0)  # 1
        store.record_run(doc("b.example", "bb"), started=T0)  # 2
        bad = [{"id": "cert.untrusted", "severity": "error", "where": "mx.a.example"}]
        store.record_run(doc("a.example", "cc", bad), started=T0)  # 3
        store.record_run(doc("a.example", "cc", bad), started=T0)  # 4
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors (exit 3 through _Parser.error)
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_history_lists_newest_first(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["history"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "started", "exit"]
    assert [line.split()[0] for line in lines[1:]] == ["4", "3", "2", "1"]
    assert "2026-11-28 14:02 UTC" in lines[1]
    code, out, _ = run(["history", "A.EXAMPLE", "--limit", "2", "--json"], capsys)
    data = json.loads(out)
    jsonschema.validate(data, SCHEMA)
    assert data["schema"] == "mxlens/history/1" and [r["id"] for r in data["runs"]] == [4, 3]
    assert data["runs"][0]["worst"] == "error" and data["runs"][0]["exit"] == 2


def test_history_of_an_unknown_domain_is_empty(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["history", "never.example"], capsys)
    assert code == 0 and "No checks recorded for never.example" in out


def test_diff_defaults_to_the_last_two_runs(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["diff", "a.example", "--json"], capsys)
    data = json.loads(out)
    jsonschema.validate(data, SCHEMA)
    assert code == 0 and (data["a"]["id"], data["b"]["id"], data["changed"]) == (3, 4, False)
    code, out, _ = run(["diff", "a.example", "1", "--json"], capsys)
    data = json.loads(out)
    jsonschema.validate(data, SCHEMA)
    assert code == 1 and (data["a"]["id"], data["b"]["id"]) == (1, 4)
    kinds = [c["kind"] for c in data["changes"]]
    assert kinds == ["finding.added", "cert.fingerprint"]
    code, out, _ = run(["diff", "a.example", "4", "1"], capsys)  # either order
    assert code == 1 and "run 1" in out.splitlines()[0] and "-> run 4" in out.splitlines()[0]
    assert "leaf certificate (SHA-256) changed from aa to cc" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["diff", "a.example", "99"], ["no run 99"]),
        (["diff", "a.example", "2"], ["run 2 is a check of b.example"]),
        (["diff", "a.example", "x1"], ["run id", "'x1'"]),
        (["diff", "a.example", "4"], ["newest", "second run id"]),
        (["diff", "b.example"], ["only one check of b.example"]),
        (["diff", "never.example"], ["no check of never.example"]),
        (["diff", "bad..domain"], ["empty label"]),
        (["history", "--limit", "0"], ["--limit"]),
        (["history", "--limit", "ten"], ["--limit"]),
        (["watch", "a.example", "--every", "0"], ["--every"]),
        (["watch", "a.example", "--every", "soon"], ["--every"]),
        (["watch", "a.example", "--until", "fixed"], ["--until"]),
    ],
)
def test_bad_input_is_one_line_exit_3(
    db: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: list[str]
) -> None:
    code, out, err = run(args, capsys)
    assert code == 3 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def test_corrupt_database_is_moved_aside_and_said_once(
    _private_state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _private_state_dir / "history.sqlite3"
    path.write_bytes(b"\x00garbage" * 500)
    code, out, err = run(["history"], capsys)
    assert code == 0 and "No checks recorded yet" in out
    assert len(err.strip().splitlines()) == 1 and "corrupt" in err and "moved aside" in err
    assert [p.read_bytes()[:8] for p in _private_state_dir.glob("history.sqlite3.corrupt-*")] == [
        b"\x00garbage"
    ]
    code, _, err = run(["history"], capsys)  # the new database is fine
    assert code == 0 and err == ""


def test_unusable_database_exits_3_in_a_child(_private_state_dir: Path) -> None:
    (_private_state_dir / "history.sqlite3").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "history"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "cannot use the history database" in proc.stderr


async def test_watch_goes_on_through_a_check_that_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import probes.diagnose
    from probes.model.errors import CheckError
    from probes.model.events import DiagnosisFinished, Event
    from probes.model.options import Options
    from tests.support.fake_stream import fake_diagnose
    from tui.commands.watch import watch

    calls: list[int] = []

    async def flaky(target: str, options: Options) -> Any:
        calls.append(1)
        if len(calls) == 1:  # broken: the fake stream has errors
            async for event in fake_diagnose(target, options):
                yield event
        elif len(calls) == 2:
            raise CheckError("the resolver 127.0.0.1:9 did not answer")
        else:  # fixed
            done: Event = DiagnosisFinished(target, 1.0, None)
            yield done

    monkeypatch.setattr(probes.diagnose, "diagnose", flaky)
    code = await watch(
        "example.org", Options(), every=0.01, until="ok", as_json=False, record=False
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(calls) == 3
    assert "check 1: ERROR" in out[0]
    assert any(
        "check 2: could not check: the resolver 127.0.0.1:9 did not answer" in line for line in out
    )
    assert "check 3: OK" in [line for line in out if "check 3" in line][0]
    assert out[-1] == "mxlens watch: example.org is OK; stopping."


async def test_watch_whose_first_check_cannot_be_made_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import probes.diagnose
    from probes.model.errors import CheckError
    from probes.model.options import Options
    from tui.commands.watch import watch

    async def failing(target: str, options: Options) -> Any:
        raise CheckError("no such domain")
        yield  # an async generator, like diagnose()

    monkeypatch.setattr(probes.diagnose, "diagnose", failing)
    with pytest.raises(CheckError, match="no such domain"):
        await watch("example.org", Options(), every=0.01, until="ok", as_json=False, record=False)

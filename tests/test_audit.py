"""`mxlens audit` on the real lab: each domain's exit is what `check` alone gives, the history
lets `--resume` continue after `kill -9` without probing a finished domain again, two domains on
one MX host are one server to be gentle with, and bad lines never stop the run."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mxlens_lab.scenarios import SCENARIOS
from mxlens_lab.world import Lab, LabThread
from probes.audit.inputs import parse
from probes.net.gate import ConnectionGate
from tui import cli

pytestmark = [pytest.mark.lab]


def _audit(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["audit", *args, "--json", "--no-ui"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def _schema() -> dict[str, Any]:
    path = Path(cli.__file__).resolve().parent.parent / "docs" / "schema" / "mxlens-audit-1.json"
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


async def _check_exit(domain: str, argv: list[str]) -> int:
    """What `mxlens check DOMAIN --lab [argv]` exits with, through the same code path."""
    parser = cli._parser_for("check")
    ns = parser.parse_args([domain, "--lab", "--json", *argv])
    options = cli._options_from_args(ns)
    from dataclasses import replace

    options = replace(options, given=cli._given_fields(parser, [domain, *argv]))
    return await cli._check(domain, options, as_json=True, use_lab=True, extras=ns)


def test_every_lab_scenario_exits_as_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MXLENS_STATE_DIR", str(tmp_path / "state"))
    names = list(SCENARIOS)
    listing = tmp_path / "domains.txt"
    listing.write_text("".join(f"{SCENARIOS[n].domain}\n" for n in names), encoding="utf-8")
    code, doc, err = _audit(
        # The lab shares the audit's event loop here: a modest --jobs keeps its DNS answers
        # inside the lab's 2 s timeout on a loaded machine.
        [str(listing), "--lab", "--jobs", "6", "--max-connections", "12", "--rate", "0"],
        capsys,
    )
    assert doc["schema"] == "mxlens/audit/1" and err.startswith(f"audit {doc['audit']}\n")
    jsonschema.validate(doc, _schema())
    rows = {row["domain"]: row for row in doc["rows"]}
    assert [row["domain"] for row in doc["rows"]] == [SCENARIOS[n].domain for n in names]

    async def checks() -> dict[str, int]:
        sem = asyncio.Semaphore(8)

        async def one(name: str) -> tuple[str, int]:
            async with sem:
                return name, await _check_exit(SCENARIOS[name].domain, [])

        return dict(await asyncio.gather(*(one(n) for n in names)))

    alone = asyncio.run(checks())
    capsys.readouterr()
    mismatched = {
        n: (rows[SCENARIOS[n].domain]["exit"], alone[n], rows[SCENARIOS[n].domain]["detail"])
        for n in names
        if rows[SCENARIOS[n].domain]["exit"] != alone[n]
    }
    assert mismatched == {}
    assert code == max(alone.values())
    assert {row["exit"] for row in doc["rows"]} >= {0, 1, 2}  # the lab has all three
    expired = rows["expired.lab.test"]
    assert (expired["verdict"], expired["worst"], expired["first_failure"]) == (
        "ERROR",
        "cert.expired",
        "chain_trusted",
    )
    healthy = rows["healthy.lab.test"]
    assert healthy["tls_version"] == "TLSv1.3" and 80 <= healthy["leaf_days_left"] <= 90
    assert healthy["mx"] == ["mx1.healthy.lab.test"]


def test_csv_rows_with_connectors_exit_as_check_connector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MXLENS_STATE_DIR", str(tmp_path / "state"))
    rows = [
        ("untrusted.lab.test", "", "postfix-may", ""),
        ("untrusted.lab.test", "", "exo-certificate-validation", ""),
        ("no-starttls.lab.test", "", "postfix-may", ""),
        ("no-starttls.lab.test", "", "", "encrypt"),
        ("healthy.lab.test", "mx1.healthy.lab.test", "exo-domain-validation", ""),
        ("healthy.lab.test", "www.other.example", "exo-domain-validation", ""),
    ]
    listing = tmp_path / "partners.csv"
    with listing.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["domain", "expect_name", "connector", "policy"])
        w.writerows(rows)
    code, doc, _ = _audit([str(listing), "--lab", "--rate", "0"], capsys)

    async def alone() -> list[int]:
        out = []
        for domain, name, connector, policy in rows:
            argv = (["--expect-name", name] if name else []) + (
                ["--connector", connector] if connector else []
            )
            argv += ["--policy", policy] if policy else []
            out.append(await _check_exit(domain, argv))
        return out

    expected = asyncio.run(alone())
    capsys.readouterr()
    assert [r["exit"] for r in doc["rows"]] == expected
    assert expected[0] != expected[1]  # the connector column really changes the verdict
    assert expected[4] != expected[5]  # and so does expect_name
    assert code == max(expected)


def test_bad_lines_are_rows_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MXLENS_STATE_DIR", str(tmp_path / "state"))
    listing = tmp_path / "domains.txt"
    listing.write_text(
        "# partners\nhealthy.lab.test\nbad..name\ntwo words\n\n-flag\nexpired.lab.test  # x\n"
    )
    code, doc, _ = _audit([str(listing), "--lab", "--rate", "0"], capsys)
    got = [(r["domain"], r["exit"], r["line"]) for r in doc["rows"]]
    assert got == [
        ("healthy.lab.test", 0, 2),
        ("bad..name", 3, 3),
        ("two words", 3, 4),
        ("-flag", 3, 6),
        ("expired.lab.test", 2, 7),
    ]
    assert code == 3
    assert "empty label" in doc["rows"][1]["detail"]
    jsonschema.validate(doc, _schema())


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/list.txt"], "cannot read /nonexistent/list.txt"),
        (["--resume", "no-such-audit"], "no audit 'no-such-audit'"),
        ([], "give the domain list"),
        (["LIST", "--jobs", "0"], "--jobs must be a whole number"),
        (["LIST", "--rate", "fast"], "--rate must be a number"),
        (["LIST", "--connector", "nope"], "unknown connector 'nope'"),
        (["EMPTY"], "has no domain"),
        (["LIST", "--json", "--csv"], "not allowed with argument"),
    ],
)
def test_bad_input_is_one_line_and_exit_3(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MXLENS_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "list.txt").write_text("healthy.lab.test\n")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    args = [
        {"LIST": str(tmp_path / "list.txt"), "EMPTY": str(tmp_path / "empty.txt")}.get(a, a)
        for a in args
    ]
    with pytest.raises(SystemExit) if "--csv" in args else _nothing():
        code = cli.main(["audit", *args, "--no-ui"])
        assert code == 3
    _, err = capsys.readouterr()
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_parse_list_and_csv() -> None:
    items = parse("a.example\n# c\nb.example # d\n")
    assert [(i.domain, i.line, i.error) for i in items] == [
        ("a.example", 1, None),
        ("b.example", 3, None),
    ]
    items = parse("domain,policy,connector\nx.example,verify,\ny.example,bogus,\nz.example,,nope\n")
    assert [i.domain for i in items] == ["x.example", "y.example", "z.example"]
    assert items[0].policy == "verify" and items[0].error is None
    assert "unknown policy" in (items[1].error or "")
    assert "unknown connector" in (items[2].error or "")


# ---------------------------------------------------------------- politeness across domains


@pytest.fixture(scope="module")
def shared_lab() -> Iterator[Lab]:
    with LabThread(["healthy", "idn", "expired", "no-starttls", "silent", "tls-non-fs"]) as lab:
        yield lab


def _lab_flags(lab: Lab) -> list[str]:
    return lab.check_args()


def test_two_domains_on_one_mx_host_are_one_server(
    shared_lab: Lab,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MXLENS_STATE_DIR", str(tmp_path / "state"))
    server = shared_lab.servers("healthy")[0]
    flags = [*_lab_flags(shared_lab), "--mx", "mx1.healthy.lab.test", "--rate", "0"]
    # One domain alone: the most connections a single check has open on this server (the
    # main session alone, then the side probes, which may overlap among themselves).
    alone = tmp_path / "one.txt"
    alone.write_text("healthy.lab.test\n")
    server.log.max_active = 0
    _audit([str(alone), *flags], capsys)
    single = server.log.max_active
    assert single >= 1
    # Four partner domains whose mail all goes to mx1.healthy.lab.test, checked at once.
    before = server.log.connections
    server.log.max_active = 0
    listing = tmp_path / "domains.txt"
    listing.write_text("healthy.lab.test\nidn.lab.test\nexpired.lab.test\nsilent.lab.test\n")
    code, doc, _ = _audit([str(listing), *flags, "--jobs", "4"], capsys)
    assert len(doc["rows"]) == 4 and code in (0, 1, 2)
    assert server.log.connections - before >= 4 * 4  # every domain really probed it
    # ... yet the server never saw more at once than one domain's check opens by itself.
    assert server.log.max_active <= single


async def test_gate_caps_open_connections_across_addresses() -> None:
    gate = ConnectionGate(max_open=2)
    open_now = 0
    peak = 0

    async def use(addr: str) -> None:
        nonlocal open_now, peak
        async with gate.slot(addr, 25):
            open_now += 1
            peak = max(peak, open_now)
            await asyncio.sleep(0.01)
            open_now -= 1

    await asyncio.gather(*(use(f"192.0.2.{i}") for i in range(8)))
    assert peak == 2 and gate.peak_open == 2 and gate.opened == 8


async def test_gate_paces_connection_starts() -> None:
    gate = ConnectionGate(rate=50)
    starts: list[float] = []

    async def use(addr: str) -> None:
        async with gate.slot(addr, 25):
            starts.append(asyncio.get_running_loop().time())

    await asyncio.gather(*(use(f"192.0.2.{i}") for i in range(6)))
    # 6 starts at 50/s are spread over at least 5 intervals of 20 ms.
    assert max(starts) - min(starts) >= 5 * 0.02 * 0.9


# ---------------------------------------------------------------- kill -9 and --resume


def _items_recorded(db: Path, audit_id: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM audit_items WHERE audit_id = ?", (audit_id,)
                ).fetchone()[0]
            )
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_resume_after_kill_9_probes_no_finished_domain_again(
    workers: str,
    shared_lab: Lab,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("MXLENS_STATE_DIR", str(state))
    # One address per domain, so the lab's per-server logs say which domain was probed.
    names = ["healthy", "idn", "expired", "no-starttls", "tls-non-fs", "silent"]
    domains = [shared_lab.domain(n) for n in names]
    listing = tmp_path / "domains.txt"
    listing.write_text("".join(d + "\n" for d in domains), encoding="utf-8")
    env = {**os.environ, "MXLENS_STATE_DIR": str(state)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "audit", str(listing), *_lab_flags(shared_lab)]
        + ["--jobs", workers, "--workers", workers, "--rate", "0", "--json", "--no-ui"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline().decode()
    assert first.startswith("audit ")
    audit_id = first.split()[1]
    db = state / "history.sqlite3"
    deadline = time.monotonic() + 60
    while _items_recorded(db, audit_id) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()
    done_before = _items_recorded(db, audit_id)
    assert 2 <= done_before < len(domains), "kill -9 did not land halfway"
    with sqlite3.connect(db) as conn:
        finished = {
            row[0]
            for row in conn.execute(
                "SELECT domain FROM audit_items WHERE audit_id = ?", (audit_id,)
            )
        }
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    seen = {n: shared_lab.servers(n)[0].log.connections for n in names}

    code, doc, err = _audit(["--resume", audit_id], capsys)
    assert doc["audit"] == audit_id
    assert [r["domain"] for r in doc["rows"]] == domains  # every domain, once, in order
    assert doc["stats"]["domains"] == len(domains) - done_before
    for name, domain in zip(names, domains, strict=True):
        probed_again = shared_lab.servers(name)[0].log.connections > seen[name]
        assert probed_again == (domain not in finished), (domain, finished)
    with sqlite3.connect(db) as conn:
        per_domain = dict(
            conn.execute(
                "SELECT domain, COUNT(*) FROM audit_items WHERE audit_id = ? GROUP BY domain",
                (audit_id,),
            ).fetchall()
        )
        runs = conn.execute("SELECT COUNT(*) FROM runs WHERE source = 'audit'").fetchone()[0]
    assert per_domain == {d: 1 for d in domains}
    assert runs == len(domains)
    # A finished audit resumed again probes nothing and lists the same rows.
    code2, doc2, _ = _audit(["--resume", audit_id], capsys)
    assert doc2["rows"] == doc["rows"] and doc2["stats"]["domains"] == 0 and code2 == code


def test_outputs_csv_md_and_prometheus(
    shared_lab: Lab,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MXLENS_STATE_DIR", str(tmp_path / "state"))
    listing = tmp_path / "domains.txt"
    listing.write_text("healthy.lab.test\nexpired.lab.test\nbad..name\n")
    flags = [str(listing), *_lab_flags(shared_lab), "--rate", "0", "--no-ui"]
    prom = tmp_path / "audit.prom"
    assert cli.main(["audit", *flags, "--csv", "--prometheus", str(prom)]) == 3
    out, _ = capsys.readouterr()
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["domain"] for r in table] == ["healthy.lab.test", "expired.lab.test", "bad..name"]
    assert [r["exit"] for r in table] == ["0", "2", "3"]
    assert list(table[0])[:8] == [
        "domain",
        "exit",
        "verdict",
        "worst",
        "first_failure",
        "mx",
        "tls_version",
        "leaf_days_left",
    ]
    text = prom.read_text()
    assert 'mxlens_exit_code{domain="expired.lab.test"} 2' in text
    assert 'mxlens_up{domain="bad..name"} 0' in text
    assert 'mxlens_tls_version_info{domain="healthy.lab.test",mx="mx1.healthy.lab.test"' in text
    md = tmp_path / "audit.md"
    assert cli.main(["audit", *flags, "--md", "--out", str(md)]) == 3
    lines = md.read_text().splitlines()
    assert lines[2].startswith("| domain | exit | verdict |")
    assert any(line.startswith("| expired.lab.test | 2 | ERROR | cert.expired |") for line in lines)


def test_progress_bar_only_on_a_terminal(shared_lab: Lab, tmp_path: Path) -> None:
    import pty

    listing = tmp_path / "domains.txt"
    listing.write_text("healthy.lab.test\nexpired.lab.test\n")
    env = {**os.environ, "MXLENS_STATE_DIR": str(tmp_path / "state")}
    cmd = [sys.executable, "-m", "tui.cli", "audit", str(listing), *_lab_flags(shared_lab)]
    cmd += ["--rate", "0", "--csv", "--no-ui"]
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=secondary, env=env, timeout=120, check=False
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the pty's other side is closed: all read
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    err = b"".join(chunks).decode()
    assert proc.returncode == 2
    assert "\r[" in err and "2/2 domains" in err and "1 not OK" in err
    # Without a terminal: the audit id, then the summary, nothing else.
    piped = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    lines = piped.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("audit ") and "\r" not in piped.stderr
    assert "2 domains checked" in lines[1]

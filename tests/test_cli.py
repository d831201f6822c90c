"""The command line contract: bad input of any kind exits 3 with one line, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from probes.model.version import mxlens_version

ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "domain, word",
    [
        ("exa mple.org", "spaces"),
        ("bad-.org", "not a valid domain"),
        ("a..b", "empty label"),
        ("user@example.org", "mail address"),
        ("192.0.2.1", "IP address"),
        ("x" * 70 + ".org", "63"),
        ("localhost", "fully qualified"),
        ("exa\x1bmple.org", "control"),
    ],
)
def test_malformed_domain_exits_3(domain: str, word: str) -> None:
    assert_one_line_error(run("check", domain, "--resolver", "127.0.0.1:9"), word)


@pytest.mark.parametrize(
    "flags, word",
    [
        (["--timeout", "abc"], "--timeout"),
        (["--timeout", "-1"], "--timeout"),
        (["--port", "70000"], "--port"),
        (["--port", "smtp"], "--port"),
        (["--policy", "paranoid"], "--policy"),
        (["--policy", "domain"], "--expect-name"),
        (["--resolver", "not-an-ip"], "--resolver"),
        (["--resolver", "127.0.0.1:0"], "port"),
        (["--ca-file", "/nonexistent/roots.pem"], "--ca-file"),
        (["--mx", "mx.example.org:99999"], "--mx"),
        (["--mx", ":25"], "--mx"),
        (["--mx", "a:b:c"], "--mx"),
        (["--mx", "[::1]x"], "--mx"),
        (["--ehlo", "client.example\r\nRSET"], "--ehlo"),
        (["--ehlo", "two words"], "--ehlo"),
        (["--attempts", "0"], "--attempts"),
        (["--bogus-flag"], "unrecognized"),
    ],
)
def test_bad_flags_exit_3(flags: list[str], word: str) -> None:
    assert_one_line_error(run("check", "example.org", *flags), word)


def test_unreadable_ca_file_exits_3(tmp_path) -> None:
    bad = tmp_path / "roots.pem"
    bad.write_text("this is not PEM\n")
    proc = run(
        "check", "example.org", "--ca-file", str(bad), "--resolver", "127.0.0.1:9", "--timeout", "1"
    )
    assert_one_line_error(proc, "--ca-file")


def test_silent_resolver_exits_3() -> None:
    # 127.0.0.1:9 (discard) has nothing listening on UDP: the query times out or is refused.
    proc = run("check", "example.org", "--resolver", "127.0.0.1:9", "--timeout", "1")
    assert_one_line_error(proc, "resolver")


def test_headless_path_never_imports_textual() -> None:
    code = (
        "import sys, tui.cli, probes.diagnose, probes.report;"
        "assert 'textual' not in sys.modules, 'textual imported';"
        "print('clean')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert proc.stdout.strip() == "clean", proc.stderr


def test_error_line_stays_one_line_for_hostile_input() -> None:
    # A newline (or an escape sequence) in what the user typed must not break the one-line
    # rule nor reach the terminal raw.
    proc = run("check", "foo\nbar.test\x1b[2J", "--resolver", "127.0.0.1:9")
    assert_one_line_error(proc)
    assert "\x1b" not in proc.stderr


def test_not_a_lab_domain_exits_3() -> None:
    assert_one_line_error(run("check", "example.org", "--lab"), "not a lab domain")


def test_lab_owns_its_plumbing() -> None:
    proc = run("check", "healthy.lab.test", "--lab", "--resolver", "127.0.0.1")
    assert_one_line_error(proc, "--resolver cannot be used with the lab")


def test_ui_first_paint_does_not_wait_for_the_network_stack() -> None:
    # The app imports the engine's network stack (dnspython, cryptography, httpx) only when
    # the first diagnosis starts, so the window appears at once on a slow jump host.
    code = (
        "import sys, tui.app;"
        "heavy = [m for m in ('httpx', 'cryptography', 'dns') if m in sys.modules];"
        "print(','.join(heavy) or 'light')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert proc.stdout.strip() == "light", proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, flag",
    [
        (["healthy.lab.test", "--json"], "--json"),  # the UI prints no JSON
        (["demo", "--ticket", "md"], "--ticket"),
        (["explain", "some text", "--connector", "exo-default"], "--connector"),
    ],
)
def test_flags_a_command_does_not_use_are_refused(args: list[str], flag: str) -> None:
    assert_one_line_error(run(*args), flag)


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"mxlens {version('mxlens')}"
    assert re.fullmatch(r"mxlens \d+\.\d+\.\d+\S*", proc.stdout.strip())


def test_every_json_document_carries_the_version() -> None:
    proc = run("explain", "550 5.7.1 TLS required", "--json")
    assert json.loads(proc.stdout)["version"] == mxlens_version()
    from probes.model.options import Options
    from probes.report import Report

    assert Report("example.org", Options()).to_json()["version"] == mxlens_version()


def test_top_level_usage_names_the_commands() -> None:
    out = run("--help").stdout
    assert "{check,explain,history,diff,watch,lab,demo}" in out.splitlines()[1]
    assert "--version" in out


def test_check_help_lists_exit_codes_and_the_https_port() -> None:
    out = " ".join(run("check", "--help").stdout.split())
    assert "exit status: 0 no warning or error, 1 warnings, 2 at least one error" in out
    assert "3 the check could not be made" in out
    assert "--https-port" in out
    assert "else mxlens.invalid" in out and "this host's FQDN" not in out


def test_demo_help_offers_only_what_the_lab_leaves_to_the_user() -> None:
    out = run("demo", "--help").stdout
    for flag in ("--resolver", "--port", "--ca-file", "--trust", "--https-port", "--lab"):
        assert f"{flag} " not in out and f"[{flag}" not in out, flag
    assert "--policy" in out and "--walk" in out


def test_lab_help_lists_the_scenarios() -> None:
    out = " ".join(run("lab", "--help").stdout.split())
    assert "scenarios: healthy," in out and "expired" in out


def test_a_mistyped_command_is_named() -> None:
    assert_one_line_error(run("chek", "x"), "unknown command 'chek'", "did you mean check?")


@pytest.mark.parametrize(
    "args, words",
    [
        (["check", "example.org", "--timeout", "0"], ["more than 0 and at most 600", "not 0"]),
        (["check", "https://mx.example.org/"], ["URL", "give the domain (e.g. mx.example.org)"]),
        (["check", "mx.example.org:25"], ["--port 25", "--mx mx.example.org:25"]),
        (["check", "user@example.com", "--lab"], ["mail address"]),
    ],
)
def test_messages_say_what_to_type_instead(args: list[str], words: list[str]) -> None:
    assert_one_line_error(run(*args), *words)


@pytest.mark.parametrize("args", [["demo"], ["example.org"], ["healthy.lab.test", "--lab"]])
def test_the_ui_refuses_without_a_terminal_and_leaves_no_file(
    args: list[str], tmp_path: Path
) -> None:
    # `mxlens demo > file` drew escape codes into the file, hung, and once killed left the
    # lab's CA file behind. stdin, stdout and stderr are pipes here; TMPDIR is ours alone.
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**ENV, "TMPDIR": str(tmp_path)},
    )
    assert_one_line_error(proc, "needs a terminal", "mxlens check")
    assert list(tmp_path.iterdir()) == []


def test_the_lab_prints_a_compact_table_resolver_first() -> None:
    from mxlens_lab.__main__ import describe
    from mxlens_lab.world import Lab

    async def text() -> tuple[str, Lab]:
        async with Lab(["healthy", "expired", "expected-name-mismatch"]) as lab:
            return describe(lab, width=80), lab

    out, lab = asyncio.run(text())
    lines = out.splitlines()
    assert lines[0].startswith(f"resolver  {lab.resolver[0]}:{lab.resolver[1]}")
    rows = [line for line in lines if ".lab.test " in line]
    assert len(rows) == 3  # one line per domain
    assert all(len(line) <= 80 for line in rows + lines[:4])
    assert any("[--expect-name mail.partner.example]" in row for row in rows)
    # the command line, resolver included, is repeated at the bottom of a long table
    assert f"--resolver {lab.resolver[0]}:{lab.resolver[1]}" in lines[-3]
    assert not Path(lab.ca_file).exists()


def test_the_lab_with_all_scenarios_fits_an_80x24_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mxlens_lab.__main__ import describe
    from mxlens_lab.scenarios import SCENARIOS
    from mxlens_lab.world import Lab

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")

    async def text() -> tuple[str, str, Lab]:
        async with Lab() as lab:
            return describe(lab), describe(lab, listing=True), lab

    out, listing, lab = asyncio.run(text())
    lines = out.splitlines()
    # the rows the terminal shows: the long command line wraps, and counts for what it takes
    assert sum(max(1, -(-len(line) // 80)) for line in lines) <= 22
    assert lines[0].startswith(f"resolver  {lab.resolver[0]}:{lab.resolver[1]}")
    assert lines[1].startswith("check:  mxlens check NAME.lab.test --resolver ")
    assert "mxlens lab --list" in lines[-1]
    names = " ".join(lines[2:-1]).split()
    expected = sorted(s.domain.removesuffix(".lab.test") for s in SCENARIOS.values())
    assert names == expected  # every scenario, short names, nothing else
    assert all(len(line) <= 80 for line in lines[2:])
    # --list keeps the one line per domain with what it breaks
    assert sum(".lab.test " in line for line in listing.splitlines()) == len(SCENARIOS)
    assert SCENARIOS["expired"].description[:40] in listing


def test_lab_list_flag_is_offered() -> None:
    assert "--list" in run("lab", "--help").stdout

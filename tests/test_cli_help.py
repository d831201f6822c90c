"""What a new user reads first: --version, the help texts, the one-line messages, the lab's
table and the UI's refusal without a terminal."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from probes.model.version import mxlens_version
from tests.test_cli import ENV, assert_one_line_error, run


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

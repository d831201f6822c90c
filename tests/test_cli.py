"""The command line contract: bad input of any kind exits 3 with one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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

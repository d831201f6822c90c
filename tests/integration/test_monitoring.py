"""Real monitoring systems read mxlens: a private Nagios 4 runs `mxlens check --nagios` on lab
domains and records state, output and perfdata; `promtool check metrics` (Prometheus' own
linter) accepts the textfile `--prometheus` writes, for `check` and for `audit`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxlens_lab.world import Lab, LabThread
from tests.integration.nagios import Nagios, cleanup, unavailable_reason

SCENARIOS = ["healthy", "expired", "expires-soon", "silent", "rate-limited", "no-starttls"]
# scenario -> the state a monitoring plugin must give (0 OK, 1 WARNING, 2 CRITICAL)
EXPECTED_STATE = {
    "healthy": 0,
    "expired": 2,
    "expires-soon": 2,  # the leaf expires in 5 days: inside check_ssl_cert's -c 15
    "silent": 2,  # a timeout is an outage, not UNKNOWN
    "rate-limited": 1,  # a 421 is a throttle: WARNING, with the server's reply
    "no-starttls": 2,
}


def _mxlens() -> list[str]:
    return [sys.executable, "-m", "tui.cli"]


def _check_args(lab: Lab, name: str) -> list[str]:
    words = shlex.split(lab.check_command(name))
    assert words[:2] == ["mxlens", "check"]
    return _mxlens() + words[1:]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with LabThread(SCENARIOS) as running:
        yield running


def test_nagios_records_state_output_and_perfdata(lab: Lab) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="mxlens-nagios-"))
    services = {
        name: " ".join(shlex.quote(w) for w in [*_check_args(lab, name), "--nagios"])
        for name in SCENARIOS
    }
    nagios = Nagios(root, services)
    try:
        nagios.verify()
        nagios.start()
        status = nagios.wait_checked(timeout=90)
    finally:
        nagios.stop()
        log = nagios.log()
        cleanup(root)
    for name, want in EXPECTED_STATE.items():
        s = status[name]
        word = {0: "OK", 1: "WARNING", 2: "CRITICAL"}[want]
        assert s.state == want, (name, s, log[-2000:])
        assert s.output.startswith(f"MXLENS {word} - {lab.domain(name)}: "), s.output
        # perfdata: findings by severity and the connection count always; Nagios split it off
        assert "'findings_error'=" in s.perfdata and "'connections'=" in s.perfdata, s
        assert "|" not in s.output
    healthy = status["healthy"]
    assert "'days_chain_elem1'=" in healthy.perfdata and ";20;15;;" in healthy.perfdata
    assert "s;;;0;" in healthy.perfdata  # handshake time in seconds, a unit from the list
    assert healthy.long_output == ""
    assert "cert.expired" in status["expired"].long_output
    assert "CRITICAL expiry: chain element 1" in status["expires-soon"].long_output
    assert "no greeting within" in status["silent"].output
    assert "421" in status["rate-limited"].output  # the server's own reply text


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (run scripts/install-monitoring as root)")
    return found


def _promtool_check(promtool: str, path: Path) -> None:
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=path.read_bytes(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode(errors="replace")


@pytest.mark.parametrize("name", ["healthy", "expired", "silent"])
def test_promtool_accepts_check_metrics(lab: Lab, name: str, tmp_path: Path) -> None:
    promtool = _promtool()
    out = tmp_path / "mxlens.prom"
    proc = subprocess.run(
        [*_check_args(lab, name), "--prometheus", str(out)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode in (0, 1, 2), proc.stderr
    text = out.read_text()
    assert f'mxlens_up{{domain="{lab.domain(name)}"}} 1' in text
    assert f'mxlens_exit_code{{domain="{lab.domain(name)}"}} {proc.returncode}' in text
    _promtool_check(promtool, out)
    assert [p.name for p in tmp_path.iterdir()] == ["mxlens.prom"]  # no temporary file left


def test_promtool_accepts_audit_metrics(lab: Lab, tmp_path: Path) -> None:
    promtool = _promtool()
    listing = tmp_path / "domains.txt"
    listing.write_text("".join(f"{lab.domain(n)}\n" for n in SCENARIOS) + "bad..name\n")
    out = tmp_path / "audit.prom"
    flags = _check_args(lab, "healthy")[5:]  # the lab's probe options, without the domain
    proc = subprocess.run(
        [*_mxlens(), "audit", str(listing), *flags, "--rate", "0", "--no-ui", "--csv"]
        + ["--prometheus", str(out)],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "MXLENS_STATE_DIR": str(tmp_path / "state")},
    )
    assert proc.returncode == 3, proc.stderr  # the bad line is the worst row
    text = out.read_text()
    for name in SCENARIOS:
        assert f'mxlens_up{{domain="{lab.domain(name)}"}} 1' in text
    assert 'mxlens_up{domain="bad..name"} 0' in text
    _promtool_check(promtool, out)

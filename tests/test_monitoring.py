"""`check --nagios` and `check --prometheus` on the lab: the plugin status line, perfdata and
long output, the -w/-c expiry thresholds, failures that are CRITICAL rather than UNKNOWN, and a
textfile that parses as the exposition format and is replaced atomically."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxlens_lab.world import Lab, LabThread
from probes.monitoring.facts import CheckFacts
from probes.monitoring.prometheus import metrics_for
from tui import cli

pytestmark = [pytest.mark.lab]

PERF = re.compile(r"^'[^'=]+'=-?[0-9.]+(s|ms|us|%|B|KB|MB|TB|c)?;[0-9.]*;[0-9.]*;[0-9.]*;[0-9.]*$")
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\} -?[0-9.e+]+$'
)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with LabThread(["healthy", "expired", "expires-soon", "silent", "rate-limited"]) as running:
        yield running


def _flags(lab: Lab) -> list[str]:
    return lab.check_args()


def _nagios(
    lab: Lab, name: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[str]]:
    code = cli.main(["check", lab.domain(name), *_flags(lab), "--nagios", *extra])
    out, _ = capsys.readouterr()
    return code, out.splitlines()


def _perfdata(line: str) -> dict[str, str]:
    status, _, perf = line.partition(" | ")
    assert "|" not in status
    items = perf.split(" ")
    for item in items:
        assert PERF.match(item), item
    return {i.split("=")[0].strip("'"): i.split("=", 1)[1] for i in items}


def test_healthy_is_ok_with_perfdata(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _nagios(lab, "healthy", capsys)
    assert code == 0 and len(lines) == 1
    assert lines[0].startswith("MXLENS OK - healthy.lab.test: TLSv1.3, leaf expires in ")
    perf = _perfdata(lines[0])
    assert perf["days_chain_elem1"].endswith(";20;15;;")
    assert 85 < float(perf["days_chain_elem1"].split(";")[0]) <= 90
    assert {"days_chain_elem2", "handshake_time", "connections", "time"} <= set(perf)
    assert perf["handshake_time"].split(";")[0].endswith("s")
    assert perf["findings_error"] == "0;;;0;" and int(perf["connections"].split(";")[0]) >= 4


def test_thresholds_raise_the_state(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _nagios(lab, "healthy", capsys, "-w", "100", "-c", "30")
    assert code == 1 and lines[0].startswith("MXLENS WARNING - ")
    assert lines[1].startswith("WARNING expiry: chain element 1 (")
    code, lines = _nagios(lab, "healthy", capsys, "--warn-days", "200", "--crit-days", "95")
    assert code == 2 and lines[1].startswith("CRITICAL expiry: chain element 1 (")
    # expires-soon: a warning finding, and within check_ssl_cert's default -c 15.
    code, lines = _nagios(lab, "expires-soon", capsys)
    assert code == 2 and "cert.expires_soon" in lines[0]
    assert any(line.startswith("WARNING cert.expires_soon ") for line in lines[1:])


def test_timeouts_and_throttles_are_not_unknown(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _nagios(lab, "silent", capsys)
    assert code == 2 and lines[0].startswith("MXLENS CRITICAL - silent.lab.test: no greeting")
    code, lines = _nagios(lab, "rate-limited", capsys)
    assert code == 1 and lines[0].startswith("MXLENS WARNING - rate-limited.lab.test: ")
    assert "421" in lines[0].partition(" | ")[0]


def _silent_udp_port() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_a_dead_resolver_is_critical_bad_input_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sock, port = _silent_udp_port()
    try:
        code = cli.main(
            ["check", "example.org", "--resolver", f"127.0.0.1:{port}", "--timeout", "0.5"]
            + ["--nagios"]
        )
    finally:
        sock.close()
    out, err = capsys.readouterr()
    assert code == 2 and out.startswith("MXLENS CRITICAL - the resolver 127.0.0.1:")
    assert err.startswith("mxlens: the resolver")
    code = cli.main(["check", "bad..name", "--nagios"])
    out, err = capsys.readouterr()
    assert code == 3 and out.startswith("MXLENS UNKNOWN - not a valid domain name")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nagios", "--json"], "both write to stdout"),
        (["--prometheus", "-", "--json"], "both write to stdout"),
        (["-w", "5"], "only apply with --nagios"),
        (["--nagios", "-w", "5", "-c", "10"], "must not be more than"),
        (["--nagios", "-w", "soon"], "--warn-days must be a number"),
        (["--nagios", "--walk"], "prints only the plugin output"),
    ],
)
def test_bad_monitoring_flags(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "example.org", *args]) == 3
    _, err = capsys.readouterr()
    assert message in err and err.count("\n") == 1


def test_prometheus_file_is_valid_and_replaced_whole(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "mxlens.prom"
    target.write_text("old contents\n")
    code = cli.main(["check", lab.domain("expired"), *_flags(lab), "--prometheus", str(target)])
    out, _ = capsys.readouterr()
    assert code == 2 and "mxlens check expired.lab.test" in out  # the normal report still shows
    text = target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["mxlens.prom"]
    families = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
        elif not line.startswith("# HELP "):
            assert SAMPLE.match(line), line
            assert line.split("{")[0] in families, line
    assert 'mxlens_exit_code{domain="expired.lab.test"} 2' in text
    assert 'mxlens_findings{domain="expired.lab.test",mx="mx1.expired.lab.test"' in text
    assert 'id="cert.expired",severity="error"} 1' in text
    assert re.search(r'mxlens_ssl_cert_not_after\{.*chain_no="1".*\} \d{10}$', text, re.M)


def test_label_values_are_escaped_and_series_unique() -> None:
    facts = CheckFacts(domain='we"ird\\dom\nain', exit=3, elapsed_s=None)
    text = metrics_for([facts, facts], finished_at=1.0).text()
    assert 'mxlens_up{domain="we\\"ird\\\\dom\\nain"} 0' in text
    assert text.count("mxlens_up{") == 1  # a repeated series would make the file invalid


def test_a_failed_check_still_writes_up_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "m.prom"
    sock, port = _silent_udp_port()
    try:
        code = cli.main(
            ["check", "example.org", "--resolver", f"127.0.0.1:{port}", "--timeout", "0.5"]
            + ["--prometheus", str(target)]
        )
    finally:
        sock.close()
    capsys.readouterr()
    assert code == 3
    assert 'mxlens_up{domain="example.org"} 0' in target.read_text()

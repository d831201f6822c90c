"""`--prometheus FILE`: the text exposition format, for node_exporter's textfile collector.

Names follow ssl_exporter (ssl_cert_not_after, ssl_tls_version_info) and blackbox_exporter
(probe_success, probe_ssl_earliest_cert_expiry) under an `mxlens_` prefix, labelled by domain,
mx and address, so dashboards and alert rules written for those exporters carry over. The file
is written whole to a temporary name and renamed: the collector never reads half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from probes.model.errors import CheckError
from probes.monitoring.facts import SEVERITIES, CheckFacts


@dataclass
class _Family:
    name: str
    kind: str  # gauge | counter | untyped
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Families in a fixed order; each sample is (labels, value)."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def family(self, name: str, kind: str, help_text: str) -> _Family:
        if name not in self.families:
            self.families[name] = _Family(name, kind, help_text)
        return self.families[name]

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        self.families[name].samples.append((labels, value))

    def text(self) -> str:
        out: list[str] = []
        for fam in self.families.values():
            out.append(f"# HELP {fam.name} {fam.help}")
            out.append(f"# TYPE {fam.name} {fam.kind}")
            seen: set[tuple[tuple[str, str], ...]] = set()
            for labels, value in fam.samples:
                key = tuple(sorted(labels.items()))
                if key in seen:  # the format forbids a repeated series
                    continue
                seen.add(key)
                rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(f"{fam.name}{{{rendered}}} {_value(value)}")
        return "\n".join(out) + "\n"


_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("mxlens_up", "gauge", "1 when the check could be made (exit 0-2), 0 when it could not."),
    (
        "mxlens_probe_success",
        "gauge",
        "1 when mail over this route flows under the policy (no error finding), else 0.",
    ),
    (
        "mxlens_exit_code",
        "gauge",
        "The exit status of mxlens check: 0 ok, 1 warnings, 2 errors, 3 not checked.",
    ),
    ("mxlens_check_duration_seconds", "gauge", "Wall time of the check."),
    (
        "mxlens_last_check_timestamp_seconds",
        "gauge",
        "When the check finished, as a Unix timestamp.",
    ),
    (
        "mxlens_smtp_starttls",
        "gauge",
        "1 when the MX address offered STARTTLS, 0 when it did not.",
    ),
    (
        "mxlens_smtp_connections",
        "gauge",
        "SMTP connections the check made to the MX address.",
    ),
    (
        "mxlens_tls_version_info",
        "gauge",
        "The TLS version negotiated with the MX address (value always 1).",
    ),
    (
        "mxlens_tls_cipher_info",
        "gauge",
        "The cipher suite negotiated with the MX address (value always 1).",
    ),
    (
        "mxlens_tls_handshake_seconds",
        "gauge",
        "Time from ClientHello to the end of the TLS handshake.",
    ),
    (
        "mxlens_ssl_cert_not_after",
        "gauge",
        "notAfter of each chain element as a Unix timestamp (chain_no 1 = leaf).",
    ),
    (
        "mxlens_ssl_earliest_cert_expiry",
        "gauge",
        "The earliest notAfter in the chain of the MX address, as a Unix timestamp.",
    ),
    (
        "mxlens_findings",
        "gauge",
        "Findings of the check by id and severity, where they were raised.",
    ),
    ("mxlens_findings_by_severity", "gauge", "Findings of the check per severity."),
)


def metrics_for(checks: Iterable[CheckFacts], *, finished_at: float) -> Metrics:
    m = Metrics()
    for name, kind, help_text in _FAMILIES:
        m.family(name, kind, help_text)
    for c in checks:
        d = {"domain": c.domain}
        m.add("mxlens_up", d, 1 if c.exit < 3 else 0)
        m.add("mxlens_probe_success", d, 1 if c.exit < 2 else 0)
        m.add("mxlens_exit_code", d, c.exit)
        if c.elapsed_s is not None:
            m.add("mxlens_check_duration_seconds", d, round(c.elapsed_s, 6))
        m.add("mxlens_last_check_timestamp_seconds", d, round(finished_at, 3))
        for s in c.sessions:
            where = {"domain": c.domain, "mx": s.mx, "address": s.address}
            if s.starttls is not None:
                m.add("mxlens_smtp_starttls", where, 1 if s.starttls else 0)
            m.add("mxlens_smtp_connections", where, s.connections)
            if s.tls_version:
                m.add("mxlens_tls_version_info", {**where, "version": s.tls_version}, 1)
            if s.cipher:
                m.add("mxlens_tls_cipher_info", {**where, "cipher": s.cipher}, 1)
            if s.handshake_s is not None:
                m.add("mxlens_tls_handshake_seconds", where, s.handshake_s)
            for elem in s.chain:
                m.add(
                    "mxlens_ssl_cert_not_after",
                    {**where, "chain_no": str(elem.position), "subject": elem.subject},
                    int(elem.not_after.timestamp()),
                )
            if s.chain:
                earliest = min(e.not_after for e in s.chain)
                m.add("mxlens_ssl_earliest_cert_expiry", where, int(earliest.timestamp()))
        for (host, address, fid, severity), count in sorted(c.findings.items()):
            labels = {"domain": c.domain, "mx": host, "address": address}
            m.add("mxlens_findings", {**labels, "id": fid, "severity": severity}, count)
        for severity in SEVERITIES:
            m.add(
                "mxlens_findings_by_severity",
                {**d, "severity": severity},
                c.findings_by_severity[severity],
            )
    return m


def write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never a part.
    The temporary name does not end in .prom: the textfile collector skips it."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CheckError(f"cannot write --prometheus {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # the collector usually runs as another user
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CheckError(f"cannot write --prometheus {path}: {exc.strerror}") from None

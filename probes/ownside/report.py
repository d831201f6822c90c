"""JSON pieces shared by the listen and cert documents: the same certificate and finding
shapes as `mxlens check --json`, from the one place that defines them (probes/report.py)."""

from __future__ import annotations

from typing import Any

from probes.model.events import CertInfo, Finding
from probes.report import _cert_json, _finding_json


def cert_json(cert: CertInfo, source: str) -> dict[str, Any]:
    return _cert_json(cert, source)


def finding_json(finding: Finding) -> dict[str, Any]:
    return _finding_json(finding)

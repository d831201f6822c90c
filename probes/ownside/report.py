"""JSON pieces shared by the listen and cert documents: the same certificate and finding
shapes as `mxlens check --json`, from the one place that defines them (probes/report.py)."""

from __future__ import annotations

from typing import Any

from probes.model.events import CertInfo, ChainValidated, EndpointChecked, Finding
from probes.report import _cert_json, _endpoint_json, _finding_json


def cert_json(cert: CertInfo, source: str) -> dict[str, Any]:
    return _cert_json(cert, source)


def finding_json(finding: Finding) -> dict[str, Any]:
    return _finding_json(finding)


def endpoint_json(e: EndpointChecked) -> dict[str, Any]:
    """check's endpoint shape without cert_status, which the cert document has never had."""
    return {k: v for k, v in _endpoint_json(e).items() if k != "cert_status"}


def validation_json(validation: ChainValidated | None) -> dict[str, Any] | None:
    """The chain verdict as listen and cert give it (check's adds the name checks)."""
    if validation is None:
        return None
    return {
        "trusted": validation.trusted,
        "error": validation.error,
        "trust_store": validation.trust_store,
        "path": [cert_json(link.cert, link.source) for link in validation.path],
    }

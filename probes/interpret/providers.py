"""Provider knowledge: which large mail provider an MX belongs to, and what it expects.

The facts live in probes/data/providers.json (dated, one source per fact), so a provider's
root or revocation-host change is a data update. This module matches MX names against it and
builds the report section that names each MX's provider and the CA endpoint hosts a mail
server must reach for the chain actually seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from probes.model.events import Finding, Where
from probes.model.findings import raise_finding
from probes.model.names import canonical


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    mx_suffixes: tuple[str, ...]
    mx_source: str
    tls_min: str | None
    # The rest is kept as the data file has it (lists of dicts with "source" keys): the
    # report passes it through to JSON, and the text renderer picks what it shows.
    tls: tuple[dict[str, Any], ...]
    certificate_names: tuple[dict[str, Any], ...]
    roots: tuple[dict[str, Any], ...]
    revocation_hosts: tuple[dict[str, Any], ...]
    # MX name forms with what differs between them (DNSSEC, and so DANE); the longest
    # matching suffix wins.
    mx_forms: tuple[dict[str, Any], ...] = ()
    # Hosts the provider no longer uses: allow-lists built on them are stale.
    removed_revocation_hosts: tuple[dict[str, Any], ...] = ()

    def mx_form(self, mx_host: str) -> dict[str, Any] | None:
        host = _norm(mx_host)
        forms = [
            f for f in self.mx_forms if host == f["suffix"] or host.endswith("." + f["suffix"])
        ]
        return max(forms, key=lambda f: len(f["suffix"])) if forms else None

    def required_roots(self) -> list[dict[str, Any]]:
        """The roots a partner's trust store must hold for this provider's chains."""
        return [r for r in self.roots if r.get("required") and r.get("sha1")]

    def matches(self, mx_host: str) -> bool:
        host = _norm(mx_host)
        return any(host == s or host.endswith("." + s) for s in self.mx_suffixes)

    def known_revocation_hosts(self) -> list[str]:
        return sorted({h for group in self.revocation_hosts for h in group.get("hosts", ())})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "mx_suffixes": list(self.mx_suffixes),
            "mx_source": self.mx_source,
            "tls_min": self.tls_min,
            "tls": list(self.tls),
            "certificate_names": list(self.certificate_names),
            "roots": list(self.roots),
            "revocation_hosts": list(self.revocation_hosts),
            "mx_forms": list(self.mx_forms),
            "removed_revocation_hosts": list(self.removed_revocation_hosts),
        }


def _norm(host: str) -> str:
    return canonical(host)


@lru_cache(maxsize=1)
def _data() -> tuple[str, tuple[Provider, ...]]:
    text = resources.files("probes").joinpath("data/providers.json").read_text("utf-8")
    data = json.loads(text)
    providers = tuple(
        Provider(
            id=p["id"],
            name=p["name"],
            mx_suffixes=tuple(_norm(s) for s in p["mx_suffixes"]),
            mx_source=p["mx_source"],
            tls_min=p.get("tls_min"),
            tls=tuple(p.get("tls", ())),
            certificate_names=tuple(p.get("certificate_names", ())),
            roots=tuple(p.get("roots", ())),
            revocation_hosts=tuple(p.get("revocation_hosts", ())),
            mx_forms=tuple({**f, "suffix": _norm(f["suffix"])} for f in p.get("mx_forms", ())),
            removed_revocation_hosts=tuple(p.get("removed_revocation_hosts", ())),
        )
        for p in data["providers"]
    )
    return data.get("updated", ""), providers


def providers() -> tuple[Provider, ...]:
    return _data()[1]


def data_date() -> str:
    """When providers.json was last checked (ISO date)."""
    return _data()[0]


def provider_for(mx_host: str) -> Provider | None:
    """The provider whose MX names cover mx_host (longest suffix wins), or None."""
    best: tuple[int, Provider] | None = None
    host = _norm(mx_host)
    for p in providers():
        for suffix in p.mx_suffixes:
            if (host == suffix or host.endswith("." + suffix)) and (
                best is None or len(suffix) > best[0]
            ):
                best = (len(suffix), p)
    return best[1] if best else None


def url_hosts(urls: Iterable[str]) -> list[str]:
    """Host names of URLs (OCSP, CRL, caIssuers), lower case, unique, sorted."""
    hosts: set[str] = set()
    for url in urls:
        try:
            host = urlsplit(url).hostname
        except ValueError:  # a hostile certificate can carry any text as a URL
            continue
        if host:
            hosts.add(canonical(host))
    return sorted(hosts)


def must_reach_text(hosts: list[str]) -> str:
    return "these CA endpoints must be reachable from your mail server: " + ", ".join(hosts)


def summarise(mx_hosts: Iterable[str], endpoint_urls: Iterable[str]) -> dict[str, Any]:
    """The report's "providers" section: the provider of each MX, what each matched provider
    expects, and the CA endpoint hosts of the chains actually seen."""
    mx_rows = []
    matched: dict[str, Provider] = {}
    for host in mx_hosts:
        p = provider_for(host)
        form = p.mx_form(host) if p else None
        row: dict[str, Any] = {
            "host": host,
            "provider": p.id if p else None,
            "name": p.name if p else None,
        }
        if form is not None:
            row.update(form=form["suffix"], dnssec=form["dnssec"], form_note=form["note"])
        mx_rows.append(row)
        if p is not None:
            matched[p.id] = p
    hosts = url_hosts(endpoint_urls)
    return {
        "updated": data_date(),
        "mx": mx_rows,
        "details": {pid: p.to_json() for pid, p in matched.items()},
        "ca_endpoint_hosts": hosts,
        "must_reach": must_reach_text(hosts) if hosts else None,
    }


def summary_text(summary: dict[str, Any]) -> list[str]:
    """The text report's "Providers" lines (empty when there is nothing to say). Every string
    that may come from the network (MX names, URL hosts) goes through visible()."""
    from probes.model.safetext import visible

    out: list[str] = []
    known = [row for row in summary["mx"] if row["provider"]]
    if not known and not summary["ca_endpoint_hosts"]:
        return out
    out.append(f"Providers (knowledge dated {summary['updated']}):")
    for row in summary["mx"]:
        out.append(f"  {visible(row['host'])}: {row['name'] or 'no known provider'}")
        if row.get("form_note"):
            out.append(f"    MX form {row['form']}: {row['form_note']}")
    for p in summary["details"].values():
        if p["tls_min"]:
            out.append(f"  {p['name']} expects {p['tls_min']} or newer.")
        for names in p["certificate_names"]:
            out.append(
                f"    its certificate names: {', '.join(names['names'])} (seen {names.get('seen', '?')})"
            )
        current = [r for r in p["roots"] if not r.get("until")]
        for root in current:
            out.append(
                f"    trust root: {root['name']} (from {root.get('from', '?')}): {root.get('note', '')}"
            )
        revocation = sorted({h for g in p["revocation_hosts"] for h in g.get("hosts", ())})
        if revocation:
            out.append(f"    its revocation hosts: {', '.join(revocation)}")
        for gone in p.get("removed_revocation_hosts", ()):
            out.append(
                f"    no longer used since {gone['removed']}: {', '.join(gone['hosts'])} "
                "(remove them from allow-lists)"
            )
    if summary["must_reach"]:
        hosts = ", ".join(visible(h) for h in summary["ca_endpoint_hosts"])
        out.append(f"  {must_reach_text([hosts])}")
    out.append("")
    return out


def missing_root_findings(
    mx_hosts: Iterable[str], root_sha1s: set[str], trust_store: str
) -> list[Finding]:
    """One finding per provider whose MX is checked here while the trust store in use lacks
    a root that provider's chains need (Exchange Online: DigiCert Global Root G2). A mail
    server that validates with the same store fails against that provider's new chains."""
    out: list[Finding] = []
    seen: set[str] = set()
    for host in mx_hosts:
        p = provider_for(host)
        if p is None or p.id in seen:
            continue
        seen.add(p.id)
        for root in p.required_roots():
            if root["sha1"].replace(":", "").upper() in root_sha1s:
                continue
            out.append(
                raise_finding(
                    "ca.provider_root_missing",
                    Where(host),
                    f"{p.name} chains to {root['name']} from {root.get('from', '?')}, and the "
                    f"trust store in use ({trust_store}) does not hold it "
                    f"(SHA-1 {root['sha1']})",
                )
            )
    return out

"""Synthetic partner domains for scale runs: `partner-00001.lab.test` ... each on its own
address with its own CA, certificate and policies, staged like one of a few lab scenarios.

Most partners are healthy, as in a real partner list; a few carry the faults an audit is for
(an expired certificate, no STARTTLS, a certificate soon to expire, a name mismatch). Partner
i always gets the same template, so a run is repeatable and its expected exits are known.
"""

from __future__ import annotations

from dataclasses import replace

from .scenarios import SCENARIOS, Scenario

# Out of every 20 partners: 16 healthy, and one of each fault.
_CYCLE: tuple[str, ...] = ("healthy",) * 16 + (
    "expired",
    "no-starttls",
    "expires-soon",
    "name-mismatch",
)


def template_of(index: int) -> str:
    return _CYCLE[index % len(_CYCLE)]


def partner_domain(index: int) -> str:
    return f"partner-{index:05d}.lab.test"


def partner_scenarios(count: int) -> list[Scenario]:
    if not 0 <= count <= 20_000:
        raise ValueError("between 0 and 20000 partners")
    out = []
    for i in range(1, count + 1):
        base = SCENARIOS[template_of(i)]
        out.append(
            replace(
                base,
                name=f"partner-{i:05d}",
                domain=partner_domain(i),
                description=f"synthetic partner staged as {base.name}",
            )
        )
    return out

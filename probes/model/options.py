"""What a diagnosis is asked to do: the options of `mxlens check`, as one value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["strict", "opportunistic", "encrypt", "verify", "domain", "mta-sts", "dane"]
POLICIES: tuple[str, ...] = (
    "strict",
    "opportunistic",
    "encrypt",
    "verify",
    "domain",
    "mta-sts",
    "dane",
)


@dataclass(frozen=True)
class MxOverride:
    host: str
    port: int | None = None


@dataclass(frozen=True)
class Options:
    policy: Policy = "strict"
    resolver: tuple[str, int] | None = None  # (ip, port); None = the system's resolvers
    port: int = 25
    implicit_tls: bool = False
    mx: tuple[MxOverride, ...] = ()
    ca_file: str | None = None  # PEM of roots to trust exactly
    trust: Literal["certifi", "system"] = "certifi"
    expect_name: str | None = None
    ehlo: str | None = None  # None = this host's FQDN
    timeout: float = 10.0
    endpoints: bool = True
    # Port used for https:// fetches (MTA-STS policy). Always 443 on the internet; the lab,
    # which runs without root, serves it elsewhere.
    https_port: int = 443
    # Extra connections per address: TLS version sweep and the STARTTLS injection test.
    extra_probes: bool = True
    # The main session only (one connection per address): no side probes, whatever
    # extra_probes says; the report names the checks it skipped.
    quick: bool = False
    # Repeated main sessions per address, to catch load-balanced nodes that differ.
    attempts: int = 1
    # Seconds to wait after a 421 / "too many connections" before the one retry of the main
    # session; None = min(5, timeout). Tests set it small.
    rate_limit_backoff: float | None = None
    # Fetch CA endpoints and MTA-STS policies from private, loopback and link-local
    # addresses and from ports other than 80/443 (enterprise PKIs with internal CRL hosts;
    # the lab). Off by default: URLs come from certificates a stranger chose.
    private_endpoints: bool = False
    # Seconds the whole diagnosis may take; None = deadline_for(timeout).
    deadline: float | None = None
    # The option fields the user set explicitly (on the command line). The lab fills in the
    # rest (resolver, ports, CA file, its own timeout) without overriding what was asked for.
    given: frozenset[str] = field(default=frozenset(), compare=False)


def deadline_for(options: Options) -> float:
    """The overall deadline of a diagnosis: --deadline, else 15 x --timeout (at least 60 s)."""
    if options.deadline is not None:
        return options.deadline
    return max(60.0, 15 * options.timeout)

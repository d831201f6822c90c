"""What the history keeps of a report: the `check --json` document without the bulky or
private parts.

Kept: findings, MX hosts and addresses, per session the outcome, STARTTLS, TLS facts, the chain
(as sent and as validated), CA endpoint results, DANE, and the domain's MTA-STS and TLS-RPT.
Dropped: the SMTP transcripts (banners and replies, which can quote local-part text a server
echoes) and the raw DNS query log. mxlens never sends a message, so no message content exists
to store; the transcript is dropped all the same so that nothing a server said beyond the
protocol facts lands on disk.
"""

from __future__ import annotations

import copy
from typing import Any

# Keys of the check document that never go to disk.
_DROPPED_TOP = ("dns",)
_DROPPED_SESSION = ("transcript",)


def snapshot(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a `check --json` document fit for the history database."""
    out = copy.deepcopy(doc)
    for key in _DROPPED_TOP:
        out.pop(key, None)
    for mx in out.get("mx") or []:
        for session in mx.get("sessions") or []:
            for key in _DROPPED_SESSION:
                session.pop(key, None)
    return out

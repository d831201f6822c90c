"""Which mail server software a greeting names, and fix advice in that software's terms.

The knowledge (greeting patterns, per-software fix texts, sources) is in
probes/data/server_software.json. A fix that names the wrong configuration directive sends
the admin the wrong way: Sendmail, for one, puts its intermediate on the wire only from
CACertFile, so the generic "append the intermediate to the certificate file" does nothing.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    text = resources.files("probes").joinpath("data/server_software.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def identify(greeting: str) -> str | None:
    """The software key ("sendmail", "postfix", ...) a 220 greeting names, or None."""
    for key, entry in _data()["software"].items():
        if re.search(entry["greeting"], greeting, re.IGNORECASE):
            return str(key)
    return None


def display_name(key: str) -> str:
    return str(_data()["software"][key]["name"])


def tailored_fix(finding_id: str, software: str | None) -> str | None:
    """The fix for finding_id in the configuration terms of `software`, if the data has one."""
    if software is None:
        return None
    fix = _data()["fixes"].get(finding_id, {}).get(software)
    return None if fix is None else str(fix)

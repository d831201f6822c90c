"""Build the wheel and fail if it claims a top-level import name that is not ours.

A distribution that installs `lab` (or any other generic name) into site-packages breaks
whichever other project owns that name. Allowed: the design card's `probes` and `tui`, and
`mxlens_lab`. Run by .ci/run; prints the names it found.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ALLOWED = {"probes", "tui", "mxlens_lab"}
ROOT = Path(__file__).resolve().parent.parent


def top_level_names(wheel: Path) -> set[str]:
    names = set()
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            first = member.split("/", 1)[0]
            if first.endswith((".dist-info", ".data")):
                continue
            names.add(first.removesuffix(".py"))
    return names


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, str(ROOT)],
            check=True,
        )
        wheels = list(Path(out).glob("mxlens-*.whl"))
        if len(wheels) != 1:
            print(f"check_wheel_names: expected one wheel, found {wheels}", file=sys.stderr)
            return 1
        names = top_level_names(wheels[0])
    print("wheel top-level names:", ", ".join(sorted(names)))
    foreign = names - ALLOWED
    if foreign or not names:
        print(
            f"check_wheel_names: not ours: {sorted(foreign) or 'no packages at all'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start-up figures for mxlens: prints medians, asserts nothing.

    /work/venv/bin/python benchmarks/startup.py [-n 7]

- first paint: a fresh interpreter imports tui.app, runs the UI headless at 80x24 on the fake
  stream (no network) and reports the time from process start to the first screen update;
- import tui.cli: a fresh interpreter's `import tui.cli` (the headless path must stay light:
  no Textual);
- `mxlens check --help`: wall time of the whole command, as a user waits for it.
Each is run N times in a new process (so no import is cached in memory); the median and the
range are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

FIRST_PAINT = r"""
import time
t0 = time.perf_counter()
import asyncio, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from probes.model.options import Options
from tui.app import MxLensApp
from tests.support.fake_stream import fake_diagnose

async def main():
    app = MxLensApp("example.org", Options(), source=fake_diagnose,
                    keymap_path=Path("/nonexistent/keys.conf"), theme="ansi-dark")
    app.painted = None
    display = app._display

    def spy(screen, renderable):  # the first frame handed to the (headless) driver
        if app.painted is None and renderable is not None:
            app.painted = time.perf_counter()
        return display(screen, renderable)

    app._display = spy
    async with app.run_test(size=(80, 24)) as pilot:
        while app.painted is None:
            await pilot.pause(0.001)
    print((app.painted - t0) * 1000.0)

asyncio.run(main())
"""

IMPORT_CLI = r"""
import time
t0 = time.perf_counter()
import sys
sys.path.insert(0, {root!r})
import tui.cli
print((time.perf_counter() - t0) * 1000.0)
assert "textual" not in sys.modules, "tui.cli imported Textual"
"""


def run_snippet(code: str) -> float:
    out = subprocess.run(
        [PYTHON, "-c", code.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run_command(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    return (time.perf_counter() - started) * 1000.0


def mxlens_command() -> list[str]:
    script = Path(PYTHON).parent / "mxlens"
    if script.exists():
        return [str(script)]
    found = shutil.which("mxlens")
    return [found] if found else [PYTHON, "-m", "tui.cli"]


def report(name: str, samples: list[float]) -> None:
    print(
        f"{name:<34} median {statistics.median(samples):8.1f} ms"
        f"   min {min(samples):8.1f}   max {max(samples):8.1f}   (n={len(samples)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mxlens start-up figures (medians)")
    parser.add_argument("-n", type=int, default=7, help="runs per figure (default 7)")
    args = parser.parse_args(argv)
    env_note = f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    print(f"mxlens start-up, {args.n} runs each, {env_note}")
    report("UI first paint (80x24, headless)", [run_snippet(FIRST_PAINT) for _ in range(args.n)])
    report("import tui.cli (headless path)", [run_snippet(IMPORT_CLI) for _ in range(args.n)])
    command = mxlens_command() + ["check", "--help"]
    report("mxlens check --help (wall)", [run_command(command) for _ in range(args.n)])
    return 0


if __name__ == "__main__":
    sys.exit(main())

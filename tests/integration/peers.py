"""What the integration suites share: running `mxlens check` as a child process and
stopping peer processes so that none outlives a test."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


async def run_mxlens(*args: str, timeout: float = 60.0) -> tuple[int, dict[str, Any], str]:
    """`mxlens check ...` in a child process; (exit status, parsed JSON, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "check",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    stderr = err.decode("utf-8", "replace")
    assert out.strip(), f"mxlens printed nothing (exit {proc.returncode}): {stderr}"
    return proc.returncode if proc.returncode is not None else -1, json.loads(out), stderr


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """terminate(), wait, kill() if it will not go: no process outlives a test."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    else:
        proc.wait()

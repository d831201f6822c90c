"""SIGTERM and SIGHUP (a dropped SSH session) to the UI: it ends cleanly and the terminal is
restored: no alternate screen, no mouse tracking, the tty out of raw mode. Checked in a real
terminal, tmux, which reports the pane's modes."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/install-tmux)"),
]

ROOT = Path(__file__).parents[2]


def tmux(socket: str, *args: str) -> str:
    done = subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout


def wait_for(predicate: object, what: str, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_the_ui_and_restores_the_terminal(
    sig: signal.Signals, tmp_path: Path
) -> None:
    socket = f"mxlens-test-{os.getpid()}-{sig.name}"
    stty_file = tmp_path / "stty"
    ui = shlex.join([sys.executable, "-m", "tui.cli"])
    # The shell stays after the UI: it records the exit status and the tty's mode, then waits.
    script = f"{ui}; echo EXIT=$?; stty -a > {shlex.quote(str(stty_file))}; sleep 60"
    env = f"PYTHONPATH={shlex.quote(str(ROOT))} TERM=xterm-256color"
    tmux(socket, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30",
         f"env {env} sh -c {shlex.quote(script)}")  # fmt: skip
    try:
        shell = int(tmux(socket, "display-message", "-p", "#{pane_pid}").strip())

        def ui_pid() -> int | None:
            found = subprocess.run(
                ["pgrep", "-P", str(shell)], capture_output=True, text=True
            ).stdout.split()
            return int(found[0]) if found else None

        def screen() -> str:
            return tmux(socket, "capture-pane", "-p")

        def flags() -> str:
            return tmux(
                socket, "display-message", "-p", "#{alternate_on} #{mouse_any_flag}"
            ).strip()

        wait_for(lambda: flags() == "1 1" and "Diagnose a domain" in screen(), "the UI to paint")
        pid = ui_pid()
        assert pid is not None
        os.kill(pid, sig)
        wait_for(lambda: "EXIT=" in screen(), "the UI to end")
        wait_for(stty_file.exists, "stty")
        assert f"EXIT={128 + int(sig)}" in screen()
        assert flags() == "0 0", "alternate screen or mouse tracking left on"
        mode = stty_file.read_text().split()
        assert "icanon" in mode and "echo" in mode, "the tty was left raw"
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)

"""A private Nagios 4 instance: its own nagios.cfg, objects, status file and spool in a temporary
directory, run in the foreground by the test, never the system's.

Every service runs its command once at start-up (inter-check delay "n": no spreading over the
interval) and the status file is rewritten every second, so a test reads what the scheduler
recorded (state, plugin output, long output, perfdata) within seconds.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NAGIOS = "/usr/sbin/nagios4"


def unavailable_reason() -> str | None:
    if not os.path.exists(NAGIOS):
        return f"{NAGIOS} is not installed (run scripts/install-monitoring as root)"
    return None


@dataclass(frozen=True)
class ServiceStatus:
    description: str
    state: int
    output: str
    long_output: str
    perfdata: str
    checked: bool


def _user() -> tuple[str, str]:
    entry = pwd.getpwuid(os.getuid())
    import grp

    return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


def _macro_safe(text: str) -> str:
    return text.replace("$", "$$")


class Nagios:
    def __init__(self, root: Path, services: dict[str, str]) -> None:
        """services: description -> the command line the service runs."""
        self.root = root
        self.services = services
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def status_file(self) -> Path:
        return self.root / "status.dat"

    def write_config(self) -> Path:
        r = self.root
        for sub in ("spool/checkresults", "var", "objects"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        user, group = _user()
        commands = ["define command {\n  command_name always_up\n  command_line /bin/true\n}\n"]
        services = []
        for i, (desc, line) in enumerate(self.services.items()):
            commands.append(
                f"define command {{\n  command_name svc{i}\n  command_line {_macro_safe(line)}\n}}\n"
            )
            services.append(
                "define service {\n"
                "  host_name lab\n"
                f"  service_description {desc}\n"
                f"  check_command svc{i}\n"
                "  max_check_attempts 1\n  check_interval 60\n  retry_interval 60\n"
                "  check_period always\n  notification_period always\n"
                "  notifications_enabled 0\n  contacts nobody\n"
                "}\n"
            )
        objects = (
            "define timeperiod {\n  timeperiod_name always\n  alias always\n"
            "  sunday 00:00-24:00\n  monday 00:00-24:00\n  tuesday 00:00-24:00\n"
            "  wednesday 00:00-24:00\n  thursday 00:00-24:00\n  friday 00:00-24:00\n"
            "  saturday 00:00-24:00\n}\n"
            "define contact {\n  contact_name nobody\n  host_notifications_enabled 0\n"
            "  service_notifications_enabled 0\n  host_notification_period always\n"
            "  service_notification_period always\n  host_notification_options n\n"
            "  service_notification_options n\n  host_notification_commands always_up\n"
            "  service_notification_commands always_up\n}\n"
            "define host {\n  host_name lab\n  address 127.0.0.1\n  check_command always_up\n"
            "  max_check_attempts 1\n  check_period always\n  notification_period always\n"
            "  notifications_enabled 0\n  contacts nobody\n}\n"
        )
        (r / "objects" / "lab.cfg").write_text(objects + "".join(commands) + "".join(services))
        cfg = {
            "log_file": r / "var" / "nagios.log",
            "cfg_file": r / "objects" / "lab.cfg",
            "object_cache_file": r / "var" / "objects.cache",
            "precached_object_file": r / "var" / "objects.precache",
            "status_file": self.status_file,
            "status_update_interval": 1,
            "nagios_user": user,
            "nagios_group": group,
            "check_external_commands": 0,
            "command_file": r / "var" / "nagios.cmd",
            "lock_file": r / "var" / "nagios.lock",
            "temp_file": r / "var" / "nagios.tmp",
            "temp_path": r / "var",
            "check_result_path": r / "spool" / "checkresults",
            "check_result_reaper_frequency": 1,
            "retain_state_information": 0,
            "state_retention_file": r / "var" / "retention.dat",
            "use_retained_program_state": 0,
            "use_retained_scheduling_info": 0,
            "service_inter_check_delay_method": "n",
            "host_inter_check_delay_method": "n",
            "max_concurrent_checks": 0,
            "service_check_timeout": 60,
            "service_check_timeout_state": "u",
            "enable_notifications": 0,
            "enable_event_handlers": 0,
            "process_performance_data": 0,
            "enable_environment_macros": 0,
            "log_rotation_method": "n",
            "use_syslog": 0,
            "interval_length": 60,
        }
        path = r / "nagios.cfg"
        path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))
        return path

    def verify(self) -> str:
        cfg = self.write_config()
        proc = subprocess.run(
            [NAGIOS, "-v", str(cfg)], capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nagios4 -v rejected the config:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def start(self) -> None:
        cfg = self.write_config()
        self.proc = subprocess.Popen(
            [NAGIOS, str(cfg)],
            stdout=open(self.root / "var" / "stdout.log", "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        parts = []
        for name in ("nagios.log", "stdout.log"):
            p = self.root / "var" / name
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def statuses(self) -> dict[str, ServiceStatus]:
        if not self.status_file.exists():
            return {}
        return parse_status(self.status_file.read_text(errors="replace"))

    def wait_checked(self, timeout: float) -> dict[str, ServiceStatus]:
        deadline = time.monotonic() + timeout
        seen: dict[str, ServiceStatus] = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nagios4 exited with {self.proc.returncode}:\n{self.log()}")
            seen = self.statuses()
            if len(seen) == len(self.services) and all(s.checked for s in seen.values()):
                return seen
            time.sleep(0.5)
        raise TimeoutError(f"not every service was checked in {timeout} s: {seen}\n{self.log()}")


def parse_status(text: str) -> dict[str, ServiceStatus]:
    """The servicestatus blocks of a Nagios status.dat."""
    out: dict[str, ServiceStatus] = {}
    block: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line == "servicestatus {":
            block = {}
        elif line == "}" and block is not None:
            desc = block.get("service_description", "")
            out[desc] = ServiceStatus(
                description=desc,
                state=int(block.get("current_state", "3")),
                output=block.get("plugin_output", ""),
                # status.dat keeps long output on one line with the newlines as "\n"
                long_output=block.get("long_plugin_output", "").replace("\\n", "\n"),
                perfdata=block.get("performance_data", ""),
                checked=block.get("has_been_checked") == "1",
            )
            block = None
        elif block is not None and "=" in line:
            key, _, value = line.partition("=")
            block[key] = value
    return out


def cleanup(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)

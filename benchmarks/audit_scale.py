"""`mxlens audit` at scale on the lab, beside testssl.sh and sslyze: prints figures, asserts
nothing (it exits 1 only when an audit's rows are not what the lab staged).

    python benchmarks/audit_scale.py [--sizes 100,1000] [--workers 2] [--jobs 64]
                                     [--compare 10] [--no-compare]

The lab runs in its own process with N synthetic partner domains (mxlens_lab.partners), each
on its own address: most healthy, one in five with a fault. For each size the benchmark runs
the real command `mxlens audit FILE --json` against it in a fresh history database and prints
domains per second, the peak RSS of the audit (its process and its workers, summed, sampled
every 50 ms), its CPU time, the lab's CPU time, and the SMTP connections made. Then, on the
first `--compare` partners, the same servers are scanned by testssl.sh (`--file --parallel`,
Debian package) and sslyze (`--targets_in`, installed with pip into benchmarks/.sslyze-venv on
first use) when they can be run here, with their wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxlens_lab.partners import partner_domain, template_of  # noqa: E402

EXPECTED_EXIT = {
    "healthy": 0,
    "expires-soon": 1,
    "expired": 2,
    "no-starttls": 2,
    "name-mismatch": 2,
}
SSLYZE_VENV = ROOT / "benchmarks" / ".sslyze-venv"


def _children(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(stat[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRss:
    """Peak of the summed RSS of a process and its descendants."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.peak_single_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = [_rss_kib(p) for p in _children(self.pid)]
            self.peak_kib = max(self.peak_kib, sum(sizes))
            self.peak_single_kib = max([self.peak_single_kib, *sizes])
            self._stop.wait(0.05)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read().rsplit(b")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def start_lab(partners: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mxlens_lab", "--scenario", "healthy", "--partners", str(partners)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    info: dict[str, str] = {}
    for line in proc.stdout:
        words = line.split()
        if line.startswith("  resolver"):
            info["resolver"] = words[1]
        elif line.startswith("  SMTP port"):
            info["port"] = words[2]
        elif line.startswith("  HTTPS port"):
            info["https_port"] = words[2]
        elif line.startswith("  CA file"):
            info["ca_file"] = words[2]
        elif line.startswith("Ready."):
            break
    else:
        raise SystemExit(f"the lab did not start (exit {proc.wait()})")
    # Keep draining the lab's output so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return proc, info


def lab_flags(info: dict[str, str]) -> list[str]:
    return [
        "--resolver",
        info["resolver"],
        "--port",
        info["port"],
        "--ca-file",
        info["ca_file"],
        "--https-port",
        info["https_port"],
        "--timeout",
        "10",
        "--allow-private-endpoints",  # the lab's CA endpoints are on loopback
    ]


def run_audit(
    size: int, info: dict[str, str], lab_pid: int, workers: int, jobs: int, tmp: Path
) -> dict[str, Any]:
    listing = tmp / f"partners-{size}.txt"
    listing.write_text("".join(partner_domain(i) + "\n" for i in range(1, size + 1)))
    state = tmp / f"state-{size}"
    env = {**os.environ, "MXLENS_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "tui.cli", "audit", str(listing), *lab_flags(info)]
    cmd += ["--jobs", str(jobs), "--max-connections", str(jobs * 2), "--rate", "0"]
    cmd += ["--workers", str(workers), "--json", "--no-ui"]
    lab_cpu0 = _cpu_s(lab_pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True
    )
    with TreeRss(proc.pid) as rss:
        out, err = proc.communicate()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lab_cpu = _cpu_s(lab_pid) - lab_cpu0
    doc = json.loads(out)
    rows = doc["rows"]
    wrong = [
        f"{r['domain']} ({template_of(i)}): exit {r['exit']}, {r['worst']}: {r['detail']}"
        for i, r in enumerate(rows, start=1)
        if r["exit"] != EXPECTED_EXIT[template_of(i)]
    ]
    return {
        "size": size,
        "wall_s": wall,
        "domains_per_s": size / wall,
        "peak_rss_mib": rss.peak_kib / 1024,
        "peak_rss_single_mib": rss.peak_single_kib / 1024,
        "audit_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "lab_cpu_s": lab_cpu,
        "connections": doc["stats"].get("connections"),
        "peak_open": doc["stats"].get("peak_open"),
        "rows": len(rows),
        "wrong": wrong,
        "exit": proc.returncode,
        "stderr_tail": err.strip().splitlines()[-1:] if err else [],
    }


def _addresses(info: dict[str, str], count: int) -> list[str]:
    import dns.message
    import dns.query

    ip, port = info["resolver"].rsplit(":", 1)
    out = []
    for i in range(1, count + 1):
        q = dns.message.make_query(f"mx1.{partner_domain(i)}", "A")
        r = dns.query.udp(q, ip, port=int(port), timeout=5)
        out.append(r.answer[0][0].address)
    return out


def run_testssl(addrs: list[str], port: str, tmp: Path) -> dict[str, Any]:
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if exe is None:
        return {"tool": "testssl.sh", "skipped": "not installed (scripts/install-monitoring)"}
    listing = tmp / "testssl.txt"
    # Protocols and server defaults (certificate, chain): what mxlens' sweep and chain cover.
    listing.write_text(
        "".join(f"--protocols --server-defaults -t smtp {a}:{port}\n" for a in addrs)
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [exe, "--file", str(listing), "--parallel", "--quiet", "--color", "0", "--warnings", "off"]
        + ["--openssl-timeout", "10", "--logfile", str(tmp / "testssl.log")],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        cwd=tmp,
    )
    wall = time.monotonic() - t0
    return {"tool": "testssl.sh --file --parallel", "wall_s": wall, "exit": proc.returncode}


def _sslyze() -> str | None:
    exe = SSLYZE_VENV / "bin" / "sslyze"
    if exe.exists():
        return str(exe)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(SSLYZE_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(SSLYZE_VENV / "bin" / "pip"), "install", "-q", "sslyze"],
            check=True,
            timeout=900,
            capture_output=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return str(exe) if exe.exists() else None


def run_sslyze(addrs: list[str], port: str, tmp: Path) -> dict[str, Any]:
    exe = _sslyze()
    if exe is None:
        return {"tool": "sslyze", "skipped": "pip install sslyze failed"}
    listing = tmp / "sslyze.txt"
    listing.write_text("".join(f"{a}:{port}\n" for a in addrs))
    t0 = time.monotonic()
    proc = subprocess.run(
        [exe, "--starttls", "smtp", "--targets_in", str(listing), "--quiet"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    wall = time.monotonic() - t0
    return {"tool": "sslyze --targets_in", "wall_s": wall, "exit": proc.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--compare", type=int, default=10, help="partners scanned by the others")
    parser.add_argument("--no-compare", action="store_true")
    ns = parser.parse_args()
    sizes = [int(s) for s in ns.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="mxlens-audit-bench-"))
    t0 = time.monotonic()
    lab, info = start_lab(max(sizes))
    print(f"lab with {max(sizes)} partners up in {time.monotonic() - t0:.1f} s (pid {lab.pid})")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start")
    failed = False
    try:
        for size in sizes:
            r = run_audit(size, info, lab.pid, ns.workers, ns.jobs, tmp)
            failed |= bool(r["wrong"]) or r["rows"] != size
            print(
                f"audit {size:5d} domains: {r['wall_s']:6.1f} s  {r['domains_per_s']:5.1f} domains/s"
                f"  peak RSS {r['peak_rss_mib']:.0f} MiB (largest process {r['peak_rss_single_mib']:.0f})"
                f"  audit CPU {r['audit_cpu_s']:.1f} s  lab CPU {r['lab_cpu_s']:.1f} s"
                f"  {r['connections']} SMTP connections (at most {r['peak_open']} open)"
                f"  workers {ns.workers} jobs {ns.jobs}  exit {r['exit']}"
                + (f"  WRONG ROWS: {r['wrong'][:5]}" if r["wrong"] else "")
            )
            cpu_ms = (r["audit_cpu_s"] + r["lab_cpu_s"]) / size * 1000
            print(
                f"      CPU per domain {cpu_ms:.0f} ms (audit {r['audit_cpu_s'] / size * 1000:.0f},"
                f" lab {r['lab_cpu_s'] / size * 1000:.0f}); the run got"
                f" {(r['audit_cpu_s'] + r['lab_cpu_s']) / r['wall_s']:.2f} of {os.cpu_count()} CPUs;"
                f" load average now {os.getloadavg()[0]:.1f}"
            )
        if not ns.no_compare and ns.compare > 0:
            addrs = _addresses(info, ns.compare)
            small = run_audit(ns.compare, info, lab.pid, ns.workers, ns.jobs, tmp)
            print(
                f"compare on {ns.compare} partners: mxlens audit {small['wall_s']:.1f} s"
                f" ({small['domains_per_s']:.1f} domains/s, full diagnosis)"
            )
            for result in (
                run_testssl(addrs, info["port"], tmp),
                run_sslyze(addrs, info["port"], tmp),
            ):
                if "skipped" in result:
                    print(f"  {result['tool']}: skipped, {result['skipped']}")
                else:
                    print(
                        f"  {result['tool']}: {result['wall_s']:.1f} s"
                        f" ({ns.compare / result['wall_s']:.2f} domains/s), exit {result['exit']}"
                    )
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

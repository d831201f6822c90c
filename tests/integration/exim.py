"""A private Exim daemon for the integration tests (see shared/real-peers.md).

Exim runs from the exim4-daemon-light .deb unpacked by scripts/install-peers-exim-unbound
(no system MTA is installed or touched), on a 127.x address and a high port, with its own
spool, log and configuration in a temporary directory. It only receives: mxlens never sends
mail, and the configuration has no remote transport.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.peers import stop_process

EXIM_USER = "Debian-exim"
DEFAULT_CACHE = "/var/cache/mxlens-peers"
INSTALL_HINT = "run scripts/install-peers-exim-unbound (as root)"


def exim_binary() -> str | None:
    """The exim4 binary to use: $MXLENS_EXIM, the install script's cache, or the system one."""
    cache = os.environ.get("MXLENS_PEERS_CACHE", DEFAULT_CACHE)
    for candidate in (
        os.environ.get("MXLENS_EXIM", ""),
        os.path.join(cache, "exim-root/usr/sbin/exim4"),
        "/usr/sbin/exim4",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def unavailable_reason() -> str | None:
    """Why an Exim daemon cannot be started here, or None when it can."""
    binary = exim_binary()
    if binary is None:
        return f"Exim is not installed: {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "Exim's daemon needs root (it switches to the Debian-exim user per connection)"
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        return f"user {EXIM_USER} does not exist: {INSTALL_HINT}"
    try:
        out = subprocess.run(
            [binary, "-bV", "-C", "/dev/null"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} does not run: {exc}"
    if not out.stdout.startswith(b"Exim version"):
        why = (out.stderr or out.stdout).decode("utf-8", "replace").strip().splitlines()
        return f"{binary} does not run: {why[0] if why else 'no output'} ({INSTALL_HINT})"
    return None


def free_port(address: str) -> int:
    """A TCP port that is free on address right now (the daemon binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def wait_for_port(address: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once address:port accepts TCP; raise RuntimeError if proc dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening on {address}:{port} after {timeout:g} s")


@dataclass
class EximServer:
    """One running Exim daemon."""

    address: str
    port: int
    hostname: str
    workdir: Path
    proc: subprocess.Popen[bytes]

    def mainlog(self) -> str:
        path = self.workdir / "log" / "mainlog"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def logs(self) -> str:
        """Every log Exim wrote plus its stderr, for failure messages."""
        parts = []
        for name in ("mainlog", "paniclog", "rejectlog", "stderr"):
            path = self.workdir / ("stderr.txt" if name == "stderr" else f"log/{name}")
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text('utf-8', 'replace')[-4000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        stop_process(self.proc)
        # The daemon forks one process per connection, and those outlive it for a moment
        # (writing to the mainlog, which Exim re-creates): end the daemon's own process
        # group, which holds only what it started, before removing the directory.
        _end_group(self.proc.pid)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _end_group(pgid: int, timeout: float = 3.0) -> None:
    """SIGTERM the process group pgid, then wait until it is empty (or timeout)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def _config(
    *,
    binary: str,
    workdir: Path,
    hostname: str,
    address: str,
    port: int,
    tls: bool,
    tls_require_ciphers: str | None,
) -> str:
    tls_lines = (
        f"tls_advertise_hosts = *\n"
        f"tls_certificate    = {workdir}/cert.pem\n"
        f"tls_privatekey     = {workdir}/key.pem\n"
        + (f"tls_require_ciphers = {tls_require_ciphers}\n" if tls_require_ciphers else "")
        if tls
        # Exim 4.96 advertises STARTTLS by default (with a self-signed certificate it makes
        # up); only an explicitly empty host list switches it off.
        else "tls_advertise_hosts =\n"
    )
    return f"""\
exim_path          = {binary}
primary_hostname   = {hostname}
spool_directory    = {workdir}/spool
log_file_path      = {workdir}/log/%slog
pid_file_path      = {workdir}/exim.pid
local_interfaces   = <; {address}
daemon_smtp_ports  = {port}
{tls_lines}keep_environment   =
rfc1413_hosts      =
host_lookup        =
acl_smtp_rcpt      = acl_check_rcpt
begin acl
acl_check_rcpt:
  accept
begin routers
to_file:
  driver    = accept
  transport = local_file
begin transports
local_file:
  driver = appendfile
  file   = {workdir}/mail/inbox
  user   = {EXIM_USER}
"""


def start_exim(
    address: str,
    *,
    hostname: str,
    cert_chain_pem: bytes | None = None,
    key_pem: bytes | None = None,
    port: int | None = None,
    tls_require_ciphers: str | None = None,
    start_timeout: float = 15.0,
) -> EximServer:
    """Start `exim4 -bdf` on address:port (a free port when None).

    With cert_chain_pem/key_pem it offers STARTTLS with that chain; without, it offers no
    STARTTLS at all (tls_advertise_hosts empty). tls_require_ciphers is a GnuTLS priority
    string (Debian's Exim is built with GnuTLS): None keeps Exim's default, which on Debian 12
    still accepts TLS 1.0 and 1.1. Raises RuntimeError with Exim's logs when it
    does not come up. The caller must call .stop()."""
    binary = exim_binary()
    if binary is None:
        raise RuntimeError(f"Exim is not installed: {INSTALL_HINT}")
    tls = cert_chain_pem is not None and key_pem is not None
    # Not under pytest's tmp_path: that lives in a 0700 directory of root, and Exim's
    # reception process (user Debian-exim) must read the key and write the spool.
    workdir = Path(tempfile.mkdtemp(prefix="mxlens-exim-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        os.chmod(workdir, 0o755)
        user = pwd.getpwnam(EXIM_USER)
        for sub in ("spool", "log", "mail"):
            (workdir / sub).mkdir()
            os.chown(workdir / sub, user.pw_uid, user.pw_gid)
        if tls:
            assert cert_chain_pem is not None and key_pem is not None
            (workdir / "cert.pem").write_bytes(cert_chain_pem)
            key_path = workdir / "key.pem"
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
            os.chown(key_path, user.pw_uid, user.pw_gid)
        chosen = port or free_port(address)
        conf = workdir / "exim.conf"
        conf.write_text(
            _config(
                binary=binary,
                workdir=workdir,
                hostname=hostname,
                address=address,
                port=chosen,
                tls=tls,
                tls_require_ciphers=tls_require_ciphers,
            )
        )
        check = subprocess.run(
            [binary, "-C", str(conf), "-bV"], capture_output=True, timeout=10, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(
                "exim -bV rejects the configuration: "
                + check.stderr.decode("utf-8", "replace").strip()[-2000:]
            )
        with open(workdir / "stderr.txt", "wb") as err:
            # -bdf: daemon in the foreground, so proc is the daemon itself and terminate()
            # reaches it.
            proc = subprocess.Popen(
                [binary, "-C", str(conf), "-bdf"],
                # A process group of its own, so stop() can end the per-connection children.
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        server = EximServer(address, chosen, hostname, workdir, proc)
        try:
            wait_for_port(address, chosen, proc, start_timeout)
        except RuntimeError as exc:
            logs = server.logs()
            raise RuntimeError(f"Exim on {address}:{chosen}: {exc}\n{logs}") from None
        return server
    except BaseException:
        if proc is not None:
            stop_process(proc)
            _end_group(proc.pid)
        shutil.rmtree(workdir, ignore_errors=True)
        raise

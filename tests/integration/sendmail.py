"""A private Sendmail daemon for the integration tests (see shared/real-peers.md).

Sendmail runs from the sendmail-bin/sendmail-cf .debs unpacked by scripts/install-peers-sendmail
(its package conflicts with Postfix, so no system MTA is installed or touched), on a 127.x
address and a high port. Its sendmail.cf is built with m4 from a private .mc: hosts and aliases
from files, its own queue, pid, statistics and alias files, STARTTLS with the certificate
files given, no client-certificate request (TLSSrvOptions=V). It only receives.

Two things Sendmail insists on:
- its state must not sit under a world-writable directory such as /tmp (it refuses the key
  and the queue), so the work directory is a 0700 one under the peers cache;
- its host name must be qualified, or it sleeps a minute at start ("My unqualified host
  name ... unknown; sleeping for retry"), so it runs in a UTS namespace of its own
  (`unshare --uts`) whose host name is the MX name: the machine's own name is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.integration.exim import _end_group, free_port, wait_for_port
from tests.integration.peers import stop_process

DEFAULT_CACHE = "/var/cache/mxlens-peers"
INSTALL_HINT = "run scripts/install-peers-sendmail (as root)"


def _root() -> Path:
    return Path(os.environ.get("MXLENS_PEERS_CACHE", DEFAULT_CACHE)) / "sendmail-root"


def sendmail_binary() -> str | None:
    path = _root() / "usr/libexec/sendmail/sendmail"
    return str(path) if os.access(path, os.X_OK) else None


def unavailable_reason() -> str | None:
    """Why a Sendmail daemon cannot be started here, or None when it can."""
    binary = sendmail_binary()
    if binary is None or not (_root() / "usr/share/sendmail/cf/m4/cf.m4").exists():
        return f"Sendmail is not unpacked: {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "Sendmail's daemon needs root (and a UTS namespace for its host name)"
    for tool in ("m4", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: {INSTALL_HINT}"
    try:
        # In its own UTS namespace with a qualified name: otherwise it sleeps a minute first.
        out = subprocess.run(
            [
                "unshare",
                "--uts",
                "sh",
                "-c",
                'hostname peer.lab.test && exec "$0" -d0.1 -bt -C /dev/null',
                binary,
            ],
            input=b"",
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} does not run: {exc}"
    if b"Version 8." not in out.stdout:
        why = (out.stderr or out.stdout).decode("utf-8", "replace").strip().splitlines()
        return f"{binary} does not run: {why[0] if why else 'no output'} ({INSTALL_HINT})"
    return None


@dataclass
class SendmailServer:
    """One running Sendmail daemon."""

    address: str
    port: int
    hostname: str
    workdir: Path
    proc: subprocess.Popen[bytes]

    def logs(self) -> str:
        """Its SMTP traffic log (-X) and stderr, for failure messages."""
        parts = []
        for name in ("traffic.log", "stderr.txt"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text('utf-8', 'replace')[-4000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        stop_process(self.proc)
        _end_group(self.proc.pid)  # the per-connection children it forked
        shutil.rmtree(self.workdir, ignore_errors=True)


def _mc(cf_dir: Path, workdir: Path, hostname: str, address: str, port: int) -> str:
    w = workdir
    return f"""divert(-1)
divert(0)dnl
include(`{cf_dir}/m4/cf.m4')dnl
VERSIONID(`mxlens integration peer')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confSERVICE_SWITCH_FILE', `{w}/service.switch')dnl
define(`QUEUE_DIR', `{w}/queue')dnl
define(`confPID_FILE', `{w}/sendmail.pid')dnl
define(`STATUS_FILE', `{w}/statistics')dnl
define(`ALIAS_FILE', `{w}/aliases')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confCACERT_PATH', `{w}/certs')dnl
define(`confCACERT', `{w}/cacert.pem')dnl
define(`confSERVER_CERT', `{w}/cert.pem')dnl
define(`confSERVER_KEY', `{w}/key.pem')dnl
define(`confTLS_SRV_OPTIONS', `V')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA-v4, Port={port}, Addr={address}')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""


def start_sendmail(
    address: str,
    *,
    hostname: str,
    server_cert_pem: bytes,
    key_pem: bytes,
    cacert_pem: bytes,
    port: int | None = None,
    start_timeout: float = 20.0,
) -> SendmailServer:
    """Start `sendmail -bD` (daemon in the foreground) on address:port.

    server_cert_pem goes to ServerCertFile (confSERVER_CERT), cacert_pem to CACertFile
    (confCACERT): Sendmail sends the first certificate of the former and the intermediates it
    finds in the latter. Raises RuntimeError with its logs when it does not come up; the
    caller must call .stop()."""
    binary = sendmail_binary()
    if binary is None:
        raise RuntimeError(f"Sendmail is not unpacked: {INSTALL_HINT}")
    cache = _root().parent
    cache.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="mxlens-sendmail-", dir=cache))  # 0700
    proc: subprocess.Popen[bytes] | None = None
    try:
        (workdir / "queue").mkdir(mode=0o700)
        (workdir / "certs").mkdir(mode=0o700)
        (workdir / "service.switch").write_text("hosts files\naliases files\n")
        (workdir / "aliases").write_text("")
        (workdir / "statistics").write_text("")
        (workdir / "cert.pem").write_bytes(server_cert_pem)
        (workdir / "cacert.pem").write_bytes(cacert_pem)
        fd = os.open(workdir / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        chosen = port or free_port(address)
        mc = workdir / "sendmail.mc"
        mc.write_text(_mc(_root() / "usr/share/sendmail/cf", workdir, hostname, address, chosen))
        built = subprocess.run(["m4", str(mc)], capture_output=True, timeout=30, check=False)
        if built.returncode != 0 or not built.stdout:
            raise RuntimeError("m4 failed: " + built.stderr.decode("utf-8", "replace")[-2000:])
        cf = workdir / "sendmail.cf"
        cf.write_bytes(built.stdout)
        with open(workdir / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(
                [
                    "unshare",
                    "--uts",
                    "sh",
                    "-c",
                    'hostname "$1" && exec "$2" -C "$3" -bD -X "$4"',
                    "sh",
                    hostname,
                    binary,
                    str(cf),
                    str(workdir / "traffic.log"),
                ],
                # A process group of its own, so stop() can end the per-connection children.
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        server = SendmailServer(address, chosen, hostname, workdir, proc)
        try:
            wait_for_port(address, chosen, proc, start_timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"Sendmail on {address}:{chosen}: {exc}\n{server.logs()}") from None
        return server
    except BaseException:
        if proc is not None:
            stop_process(proc)
            _end_group(proc.pid)
        shutil.rmtree(workdir, ignore_errors=True)
        raise

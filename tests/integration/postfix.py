"""Private Postfix instances for the integration tests.

Each instance has its own configuration directory (`postfix -c DIR start`), its own
queue_directory and data_directory under a temporary directory, listens on one 127.x
address and a high port (a master.cf entry `ADDR:PORT inet ... smtpd`), logs to a file of
its own (postlogd's maillog_file) and delivers nothing. The system Postfix (/etc/postfix) is
never read or touched.

Stopping is belt and braces: `postfix -c DIR stop`, then SIGKILL for any process still
carrying this instance's MAIL_CONFIG in its environment (Postfix passes MAIL_CONFIG to every
daemon it spawns), so only processes this instance started are ever signalled.
"""

from __future__ import annotations

import os
import pty
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# MXLENS_TEST_POSTFIX names another postfix command (a build of one's own; or a path that
# does not exist, to see the skip / CI-failure rule at work).
POSTFIX = os.environ.get("MXLENS_TEST_POSTFIX") or shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"

# The services smtpd needs for EHLO/STARTTLS/QUIT, plus what `postfix start` insists on.
# chroot is "n" everywhere: the instance lives in a temporary directory without the files
# a chroot jail would need.
_MASTER_CF = """\
{address}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def unavailable_reason() -> str | None:
    """Why private Postfix instances cannot run here, or None when they can."""
    if not os.path.exists(POSTFIX) or not os.path.exists(POSTCONF):
        return "Postfix is not installed (run scripts/install-peers as root)"
    if os.geteuid() != 0:
        return "Postfix's master daemon must be started as root"
    try:
        import grp

        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or postdrop group is missing (broken Postfix install)"
    return None


def postfix_version() -> str:
    out = subprocess.run(
        [POSTCONF, "-d", "-h", "mail_version"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return out.stdout.strip()


class PostfixError(RuntimeError):
    pass


class Postfix:
    """One private Postfix instance. `main` overrides/extends the generated main.cf."""

    def __init__(
        self,
        name: str,
        *,
        address: str,
        port: int,
        hostname: str,
        chain_pem: bytes | None,
        key_pem: bytes | None,
        main: dict[str, str] | None = None,
        root: str | None = None,
        master_extra: str = "",
    ) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.hostname = hostname
        self.chain_pem = chain_pem
        self.key_pem = key_pem
        self.main_overrides = dict(main or {})
        # More master.cf services, e.g. smtp client transports for an instance that sends.
        self.master_extra = master_extra
        # Short paths: Postfix's unix sockets live under queue/ and AF_UNIX paths are
        # limited to 108 bytes, which pytest's deep tmp_path can exceed.
        self.base = Path(tempfile.mkdtemp(prefix=f"mxpf-{name[:12]}-", dir=root))
        self.config_dir = self.base / "etc"
        self.started = False

    # ---- configuration ------------------------------------------------------------------
    def main_cf(self) -> dict[str, str]:
        b = self.base
        conf = {
            "compatibility_level": "3.6",
            "queue_directory": str(b / "queue"),
            "data_directory": str(b / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "mydomain": self.hostname.split(".", 1)[-1],
            "myorigin": "$myhostname",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            # Postfix refuses an inet_interfaces address that no interface carries, and the
            # 127.x addresses beyond 127.0.0.1 are only routed to lo; master.cf binds ours.
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": str(b / "maillog"),
            "maillog_file_prefixes": str(b),
            # No reverse lookups of the client: there is no resolver for 127.x here, and a
            # hanging lookup would delay the greeting past mxlens's timeout.
            "smtpd_peername_lookup": "no",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_loglevel": "1",
        }
        if self.chain_pem is not None:
            conf["smtpd_tls_chain_files"] = f"{b / 'tls' / 'key.pem'}, {b / 'tls' / 'chain.pem'}"
        conf.update(self.main_overrides)
        return conf

    def write_config(self) -> None:
        # The daemons run as the postfix user: they must traverse the base directory (mkdtemp
        # makes it 0700) and write the data directory; Postfix creates the rest of the queue.
        os.chmod(self.base, 0o755)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.base / "queue").mkdir(exist_ok=True)
        (self.base / "data").mkdir(exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(self.base / "data", pw.pw_uid, pw.pw_gid)
        lines = [f"{k} = {v}\n" for k, v in self.main_cf().items()]
        (self.config_dir / "main.cf").write_text("".join(lines))
        (self.config_dir / "master.cf").write_text(
            _MASTER_CF.format(address=self.address, port=self.port) + self.master_extra
        )
        if self.chain_pem is not None and self.key_pem is not None:
            tls = self.base / "tls"
            tls.mkdir(exist_ok=True)
            (tls / "chain.pem").write_bytes(self.chain_pem)
            fd = os.open(tls / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key_pem)

    # ---- life cycle ---------------------------------------------------------------------
    def _postfix(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, MAIL_CONFIG=str(self.config_dir))
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def start(self, timeout: float = 20) -> None:
        """Write the configuration, start the instance, wait until it listens."""
        self.write_config()
        self.started = True  # before trying: stop() cleans up whatever did start
        done = self._postfix("start", timeout=timeout)
        if done.returncode != 0:
            raise PostfixError(
                f"postfix start ({self.name}) failed: {self._fatal_text()}\n{self.log()}"
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.address, self.port):
            if time.monotonic() > deadline:
                raise PostfixError(
                    f"postfix ({self.name}) is not listening on {self.address}:{self.port}\n"
                    + self.log()
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the instance and kill its stragglers. Safe to call twice or after a failed
        start; never raises."""
        if self.started:
            try:
                self._postfix("stop", timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
            deadline = time.monotonic() + 5
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.started = False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def pids(self) -> list[int]:
        """Processes of this instance: those with MAIL_CONFIG=<our config dir>."""
        marker = f"MAIL_CONFIG={self.config_dir}".encode()
        found: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read(1 << 20).split(b"\0")
            except OSError:
                continue
            if marker in env:
                found.append(int(entry))
        return found

    def _fatal_text(self) -> str:
        """What `postfix check` says, through a pseudo-terminal: the postfix command writes
        its fatal errors to stderr only when stderr is a terminal (otherwise to syslog)."""
        leader, follower = pty.openpty()
        try:
            subprocess.run(
                [POSTFIX, "-c", str(self.config_dir), "check"],
                stdin=subprocess.DEVNULL,
                stdout=follower,
                stderr=follower,
                timeout=30,
                check=False,
            )
            os.close(follower)
            follower = -1
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the writer side is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace").strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(postfix check: {exc})"
        finally:
            os.close(leader)
            if follower >= 0:
                os.close(follower)

    def log(self) -> str:
        try:
            return (self.base / "maillog").read_text(errors="replace")[-8000:]
        except OSError:
            return "(no maillog)"

    def __enter__(self) -> Postfix:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _listening(address: str, port: int) -> bool:
    """Whether a TCP socket listens on address:port, read from /proc/net/tcp: connecting to
    find out would count against the instance's anvil connection-rate limit."""
    packed = int.from_bytes(bytes(map(int, address.split("."))), "little")
    want = f"{packed:08X}:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[1] == want and fields[3] == "0A":
                    return True
    except OSError:
        return False
    return False

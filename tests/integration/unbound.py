"""A private validating Unbound for the integration tests (see shared/real-peers.md).

Zones are written at fixture time, signed with dnspython (never committed: signatures carry
real dates), and served by Unbound as `auth-zone`s with `for-upstream: yes`, so Unbound
validates them like data from the internet against a trust anchor (the DS of each signed
zone). `local-zone: "." refuse` keeps every other question on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.zone
from dns.dnssecalgs import get_algorithm_cls
from dns.dnssectypes import Algorithm

from tests.integration.peers import stop_process

INSTALL_HINT = "run scripts/install-peers-exim-unbound (as root)"

# Tests run as root; Unbound must not try to drop to a user that cannot read the temp dir.
_CONF = """\
server:
    interface: {address}
    port: {port}
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    do-ip6: no
    module-config: "validator iterator"
{anchors}    trust-anchor-signaling: no
    local-zone: "." refuse
{local_zones}
{auth_zones}
remote-control:
    control-enable: no
"""


def unbound_binary() -> str | None:
    """The unbound binary: $MXLENS_UNBOUND, PATH, or /usr/sbin/unbound."""
    for candidate in (
        os.environ.get("MXLENS_UNBOUND", ""),
        shutil.which("unbound") or "",
        "/usr/sbin/unbound",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def unavailable_reason() -> str | None:
    """Why Unbound cannot be started here, or None when it can."""
    binary = unbound_binary()
    if binary is None:
        return f"Unbound is not installed: {INSTALL_HINT}"
    try:
        out = subprocess.run([binary, "-V"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} does not run: {exc}"
    if not out.stdout.startswith(b"Version"):
        return f"{binary} -V printed no version ({INSTALL_HINT})"
    return None


@dataclass
class Zone:
    """One zone Unbound serves. records are zone-file lines relative to origin (no $ORIGIN).

    signed: sign with a fresh ECDSA P-256 key and configure its DS as a trust anchor.
    corrupt: owner names (relative) whose TLSA data is changed after signing, so their
    signature no longer verifies (Unbound answers SERVFAIL: bogus)."""

    origin: str  # "dane.lab.test." (trailing dot)
    records: list[str]
    signed: bool = False
    corrupt: list[str] = field(default_factory=list)


def zone_text(zone: Zone) -> str:
    head = [
        f"$ORIGIN {zone.origin}",
        "$TTL 300",
        "@ SOA ns hostmaster 1 3600 600 86400 300",
        "@ NS ns",
        # The NS needs an address inside the zone or Unbound cannot use the delegation;
        # nothing is ever asked of it (auth-zone answers).
        "ns A 127.0.0.1",
    ]
    return "\n".join(head + zone.records) + "\n"


def sign_zone(zone: Zone, out: Path) -> str:
    """Write zone to out (signed when zone.signed) and return its DS record text (or "")."""
    origin = dns.name.from_text(zone.origin)
    z = dns.zone.from_text(zone_text(zone), origin=origin, relativize=False)
    if not zone.signed:
        z.to_file(str(out), relativize=False)
        return ""
    # generate() lives on the concrete classes, not on the base the lookup is typed as.
    priv = get_algorithm_cls(Algorithm.ECDSAP256SHA256).generate()  # type: ignore[attr-defined]
    key = dns.dnssec.make_dnskey(priv.public_key(), Algorithm.ECDSAP256SHA256, flags=257)
    with z.writer() as txn:
        # Signatures valid from an hour ago (clock skew) for a week: a fixture lives minutes.
        dns.dnssec.sign_zone(
            z,
            txn=txn,
            keys=[(priv, key)],
            inception=int(time.time()) - 3600,
            lifetime=7 * 86400 + 3600,
        )
    for rel in zone.corrupt:
        name = dns.name.from_text(rel, origin)
        old = z.find_rdataset(name, dns.rdatatype.TLSA)
        new = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.TLSA, ttl=old.ttl)
        for rd in old:
            data = bytearray(rd.cert)
            data[0] ^= 0x01  # one bit: the RRSIG over the original no longer verifies
            new.add(
                dns.rdata.from_text(
                    dns.rdataclass.IN,
                    dns.rdatatype.TLSA,
                    f"{rd.usage} {rd.selector} {rd.mtype} {bytes(data).hex()}",
                )
            )
        z.replace_rdataset(name, new)
    z.to_file(str(out), relativize=False)
    return f"{zone.origin} IN DS {dns.dnssec.make_ds(origin, key, 'SHA256')}"


@dataclass
class UnboundServer:
    address: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]

    @property
    def resolver(self) -> str:
        """The --resolver value for mxlens."""
        return f"{self.address}:{self.port}"

    def log(self) -> str:
        path = self.workdir / "unbound.log"
        return path.read_text("utf-8", "replace")[-6000:] if path.exists() else ""

    def query(self, name: str, rtype: str, timeout: float = 3.0) -> dns.message.Message:
        """Ask Unbound directly with DO set, as a DANE sender does."""
        msg = dns.message.make_query(name, rtype, want_dnssec=True)
        msg.flags |= dns.flags.AD
        return dns.query.udp(msg, self.address, port=self.port, timeout=timeout)

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _free_udp_tcp_port(address: str) -> int:
    import socket

    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((address, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((address, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port free for both UDP and TCP on {address}")


def start_unbound(address: str, zones: list[Zone], *, start_timeout: float = 15.0) -> UnboundServer:
    """Sign and write zones, start `unbound -d` on address (a free port), and wait until it
    answers. Raises RuntimeError with Unbound's log when it does not come up. The caller
    must call .stop()."""
    binary = unbound_binary()
    if binary is None:
        raise RuntimeError(f"Unbound is not installed: {INSTALL_HINT}")
    workdir = Path(tempfile.mkdtemp(prefix="mxlens-unbound-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        anchors: list[str] = []
        local_zones: list[str] = []
        auth_zones: list[str] = []
        for zone in zones:
            base = zone.origin.rstrip(".")
            path = workdir / f"{base}.zone"
            ds = sign_zone(zone, path)
            if ds:
                anchor = workdir / f"{base}.ds"
                anchor.write_text(ds + "\n")
                anchors.append(f'    trust-anchor-file: "{anchor}"\n')
            # Without this, `local-zone: "." refuse` would answer for the zone too.
            local_zones.append(f'    local-zone: "{zone.origin}" transparent')
            auth_zones.append(
                "auth-zone:\n"
                f'    name: "{zone.origin}"\n'
                f'    zonefile: "{path}"\n'
                "    for-upstream: yes\n"
                "    for-downstream: no\n"
                "    fallback-enabled: no"
            )
        port = _free_udp_tcp_port(address)
        conf = workdir / "unbound.conf"
        conf.write_text(
            _CONF.format(
                address=address,
                port=port,
                workdir=workdir,
                anchors="".join(anchors),
                local_zones="\n".join(local_zones),
                auth_zones="\n".join(auth_zones),
            )
        )
        checkconf = shutil.which("unbound-checkconf") or "/usr/sbin/unbound-checkconf"
        if os.access(checkconf, os.X_OK):
            check = subprocess.run(
                [checkconf, str(conf)], capture_output=True, timeout=10, check=False
            )
            if check.returncode != 0:
                raise RuntimeError(
                    "unbound-checkconf rejects the configuration: "
                    + (check.stderr or check.stdout).decode("utf-8", "replace")[-2000:]
                )
        with open(workdir / "unbound.log", "wb") as log:
            # -d: stay in the foreground, so proc is Unbound itself; the log goes to stderr.
            proc = subprocess.Popen(
                [binary, "-d", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        server = UnboundServer(address, port, workdir, proc)
        _wait_until_answering(server, zones[0].origin if zones else ".", start_timeout)
        return server
    except BaseException:
        if proc is not None:
            stop_process(proc)
        log_text = (
            (workdir / "unbound.log").read_text("utf-8", "replace")
            if (workdir / "unbound.log").exists()
            else ""
        )
        shutil.rmtree(workdir, ignore_errors=True)
        if log_text:
            raise RuntimeError(f"Unbound did not start:\n{log_text[-4000:]}") from None
        raise


def _wait_until_answering(server: UnboundServer, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"unbound exited with status {server.proc.returncode}")
        try:
            server.query(name, "SOA", timeout=0.5)
            return
        except (dns.exception.DNSException, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"unbound does not answer on {server.resolver} after {timeout:g} s")

"""Real syslog receivers for tests: rsyslog 8.2302 and syslog-ng 3.38 on free loopback ports.

Fixtures ``rsyslog`` and ``syslog_ng`` (session-scoped) start each daemon in the foreground in a
temporary directory, with a pidfile and no systemd, and stop it on teardown. Each parsed message
is one JSON object per line in the receiver's output file; :meth:`Receiver.wait_for` polls that file
(bounded in time) until N records arrived after a :meth:`Receiver.mark`.

``make test`` fetches the daemons first (``tests/receivers/install.sh`` unpacks them into
``.cache/receivers``; ``binaries.py`` finds them). When they could not be had (no Debian archive),
the tests that need them are skipped with the reason ``install.sh`` recorded; under ``CI=true``
they fail instead: CI always has them.

Ports (``Receiver.ports``): rsyslog ``tcp`` (octet counting and LF framing), ``tls``, ``udp``,
``relp`` and ``relp_tls`` (imrelp; no asynchronous queue, so "acknowledged" means "written";
``relp_tls`` requires a client certificate: ``Receiver.client_cert``);
syslog-ng ``tcp`` (RFC 5424, octet counting), ``tls``, ``udp`` (RFC 5424), ``tcp_lf`` (RFC 5424,
LF framing), ``tcp_bsd`` and ``udp_bsd`` (RFC 3164). ``Receiver.ca_file`` is the CA of the TLS
ports' certificate (CN/SAN ``localhost`` and ``127.0.0.1``).

Receiver-kill tests start a private receiver (``start_rsyslog``/``start_syslog_ng`` on a
``tmp_path``), then :meth:`Receiver.kill` and :meth:`Receiver.restart` it on the same ports.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.receivers import binaries
from tests.receivers.binaries import Program

HERE = Path(__file__).resolve().parent
START_TIMEOUT_SECS = 15.0


def in_ci() -> bool:
    """CI=true (``.ci/run``): a missing receiver is a failure there, never a skip."""
    return os.environ.get("CI", "").lower() in {"true", "1"}


def require(program: Program | None) -> Program:
    """``program``, or skip the test with the one-line reason (fail under CI)."""
    if program is not None:
        return program
    reason = binaries.unavailable_reason()
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the receiver tests are never skipped in CI)")
    pytest.skip(reason)


def require_receivers() -> None:
    """Skip (fail under CI) unless both rsyslogd and syslog-ng are there. Called for every test
    marked ``receivers`` from one place (tests/conftest.py), so the skip reason is reported once."""
    require(binaries.rsyslog())
    require(binaries.syslog_ng())


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel just handed out on 127.0.0.1 (released again for the receiver to bind)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tls(directory: Path) -> Path:
    """Write a throwaway CA, a ``localhost`` server certificate and a client certificate
    (``client.pem``/``client.key``); return the CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "siem-agent test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # A client certificate from the same CA, for mutual TLS (imrelp asks every TLS client for one).
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "siem-agent test client")]))
        .issuer_name(ca_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    (directory / "client.key").write_bytes(
        client_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(cert.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem"


@dataclass
class Receiver:
    """A running receiver: its ports, output file and process."""

    name: str
    workdir: Path
    ports: dict[str, int]
    ca_file: Path
    process: subprocess.Popen[bytes] | None = None
    #: How to start the daemon again (``restart``): its command line, environment, TCP ports.
    command: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    tcp_ports: list[int] = field(default_factory=list)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "daemon.log"

    @property
    def client_cert(self) -> tuple[Path, Path]:
        """A client certificate and key the TLS ports accept (issued by ``ca_file``)."""
        return self.ca_file.parent / "client.pem", self.ca_file.parent / "client.key"

    @property
    def output(self) -> Path:
        return self.workdir / "out.jsonl"

    def records(self) -> list[dict[str, Any]]:
        """Every record written so far (only complete lines)."""
        try:
            data = self.output.read_bytes()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    def id_counts(self, pattern: re.Pattern[bytes]) -> collections.Counter[str]:
        """How many records (output lines) name each match of ``pattern``, counted once per line.

        Raw bytes, not JSON: after a SIGKILL the output may end in a torn line, which the next
        record completes; an id is counted only if it is whole in the output.
        """
        try:
            data = self.output.read_bytes()
        except FileNotFoundError:
            return collections.Counter()
        return collections.Counter(
            m.decode() for line in data.split(b"\n") for m in set(pattern.findall(line))
        )

    def mark(self) -> int:
        """The number of records so far: pass it to :meth:`wait_for` to see only later ones."""
        return len(self.records())

    def wait_for(self, count: int, since: int = 0, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll the output until ``count`` records arrived after ``since``; return them (and any extra).

        Fails the test after ``timeout`` seconds with what did arrive and the daemon's log.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            got = self.records()[since:]
            if len(got) >= count:
                return got
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(
                    f"{self.name} exited ({self.process.returncode}):\n{self.log.read_text()[-4000:]}"
                )
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{self.name}: {len(got)} of {count} records after {timeout}s; "
                    f"last: {got[-1:]!r}\nlog:\n{self.log.read_text()[-4000:]}"
                )
            time.sleep(delay)  # polling interval, not synchronisation: the loop checks the output
            delay = min(delay * 2, 0.1)

    def spawn(self) -> None:
        """Start the daemon (its log is appended to) and wait until its TCP ports listen."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log, env=self.env)
        _wait_listening(self, self.tcp_ports)

    def freeze(self) -> None:
        """SIGSTOP: the daemon reads nothing more; its kernel keeps accepting (and TCP-acking) data."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`: the daemon reads (and writes out) again."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGCONT)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait (bounded) for the daemon to exit."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        self.process.send_signal(sig)
        if sig != signal.SIGKILL:
            self.process.send_signal(signal.SIGCONT)  # a frozen daemon must run to handle it
        self.process.wait(timeout=15)

    def restart(self) -> None:
        """Start the daemon again after :meth:`kill`, with the same configuration and ports."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} still runs"
        self.spawn()

    def stop(self) -> None:
        """Terminate the daemon and wait for it (bounded), killing it if it does not exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _render(template: Path, target: Path, values: dict[str, str]) -> None:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    target.write_text(text)


def _wait_listening(receiver: Receiver, tcp_ports: list[int]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECS
    pending = list(tcp_ports)
    while pending:
        assert receiver.process is not None
        if receiver.process.poll() is not None:
            pytest.fail(f"{receiver.name} did not start:\n{receiver.log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=1):
                pending.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() >= deadline:
            receiver.stop()
            pytest.fail(f"{receiver.name} not listening on {pending}:\n{receiver.log.read_text()[-4000:]}")
        time.sleep(0.05)  # polling interval while the daemon binds its ports


def _wait_udp(receiver: Receiver, port: int, probe: bytes) -> None:
    """Send a probe datagram until it shows up parsed (UDP gives no other sign of readiness)."""
    deadline = time.monotonic() + START_TIMEOUT_SECS
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while True:
            before = receiver.mark()
            s.sendto(probe, ("127.0.0.1", port))
            poll_until = min(time.monotonic() + 0.5, deadline)
            while time.monotonic() < poll_until:
                if receiver.mark() > before:
                    return
                time.sleep(0.01)  # polling interval
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{receiver.name}: UDP port {port} never delivered:\n{receiver.log.read_text()[-4000:]}"
                )


def start_rsyslog(workdir: Path) -> Receiver:
    """Start rsyslogd on free ports in ``workdir``."""
    program = require(binaries.rsyslog())
    (workdir / "work").mkdir(parents=True)
    ca = make_tls(workdir / "tls")
    ports = {
        "tcp": free_port(),
        "tls": free_port(),
        "udp": free_port(socket.SOCK_DGRAM),
        "relp": free_port(),
        "relp_tls": free_port(),
    }
    conf = workdir / "rsyslog.conf"
    _render(
        HERE / "rsyslog.conf.in",
        conf,
        {"WORKDIR": str(workdir)} | {f"PORT_{k.upper()}": str(v) for k, v in ports.items()},
    )
    receiver = Receiver(
        "rsyslog",
        workdir,
        ports,
        ca,
        command=[*program.argv, "-n", "-f", str(conf), "-i", str(workdir / "rsyslogd.pid")],
        env=program.env,
        tcp_ports=[ports["tcp"], ports["tls"], ports["relp"], ports["relp_tls"]],
    )
    check = subprocess.run(
        [*program.argv, "-N1", "-f", str(conf)], capture_output=True, timeout=30, check=False, env=program.env
    )
    if check.returncode != 0:
        pytest.fail(f"rsyslog config check failed:\n{check.stderr.decode()[-4000:]}")
    receiver.spawn()
    _wait_udp(receiver, ports["udp"], b"<14>1 - probe probe - probe - ready")
    return receiver


def start_syslog_ng(workdir: Path) -> Receiver:
    """Start syslog-ng (unpacked by install.sh) on free ports in ``workdir``."""
    program = require(binaries.syslog_ng())
    (workdir / "var").mkdir(parents=True)
    ca = make_tls(workdir / "tls")
    ports = {
        "tcp": free_port(),
        "tls": free_port(),
        "udp": free_port(socket.SOCK_DGRAM),
        "tcp_lf": free_port(),
        "tcp_bsd": free_port(),
        "udp_bsd": free_port(socket.SOCK_DGRAM),
    }
    conf = workdir / "syslog-ng.conf"
    _render(
        HERE / "syslog-ng.conf.in",
        conf,
        {"WORKDIR": str(workdir)} | {f"PORT_{k.upper()}": str(v) for k, v in ports.items()},
    )
    env = program.env
    cmd = [
        *program.argv,
        "-f", str(conf),
        f"--module-path={program.module_dir}",
        "-p", str(workdir / "syslog-ng.pid"),
        "-R", str(workdir / "var/persist"),
        "-c", str(workdir / "var/ctl"),
    ]  # fmt: skip
    check = subprocess.run([*cmd, "-s"], capture_output=True, timeout=30, check=False, env=env)
    if check.returncode != 0:
        pytest.fail(f"syslog-ng config check failed:\n{check.stderr.decode()[-4000:]}")
    receiver = Receiver(
        "syslog-ng",
        workdir,
        ports,
        ca,
        command=[*cmd, "-F", "-e"],
        env=env,
        tcp_ports=[ports["tcp"], ports["tls"], ports["tcp_lf"], ports["tcp_bsd"]],
    )
    receiver.spawn()
    _wait_udp(receiver, ports["udp"], b"<14>1 - probe probe - probe - ready")
    _wait_udp(receiver, ports["udp_bsd"], b"<14>Jan  1 00:00:00 probe probe: ready")
    return receiver


@pytest.fixture(scope="session")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """A running rsyslog 8.2302 receiver (see module docstring)."""
    receiver = start_rsyslog(tmp_path_factory.mktemp("rsyslog"))
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="session")
def syslog_ng(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """A running syslog-ng 3.38 receiver (see module docstring)."""
    receiver = start_syslog_ng(tmp_path_factory.mktemp("syslog-ng"))
    try:
        yield receiver
    finally:
        receiver.stop()

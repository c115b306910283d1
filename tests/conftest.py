"""Fixtures: one per real server (our gateway, an SMTP sink, PostgreSQL), on free loopback ports."""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from gateway.config import Settings
from gateway.demo import seed_demo
from gateway.services import Services, build_services

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "corpora"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("WORKESTRA_TEST_POSTGRES", "")


def corpus(name: str) -> Path:
    """A folder of ../shared/corpora; outside this workplace it is absent and the test skips."""
    folder = CORPORA / name
    if not folder.is_dir():
        pytest.skip(f"shared corpus {name} not found at {folder}")
    return folder


def need_service(reason: str) -> None:
    """Under CI a missing service fails the test; on a laptop it skips with the reason."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


# -- databases: every store test runs on SQLite and on a real PostgreSQL ----------------------

@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A throwaway schema in the test database; the URL pins search_path to it."""
    import psycopg

    if not PG_URL:
        need_service("PostgreSQL not configured: set WORKESTRA_TEST_POSTGRES")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as e:
        need_service(f"PostgreSQL at {PG_URL} not reachable: {e}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'workestra.db'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


def make_settings(tmp_path: Path, database_url: str, **kw) -> Settings:
    from gateway.config import _database_url

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return Settings(data_dir=data, database_url=_database_url(database_url, data),
                    public_url=kw.pop("public_url", "http://127.0.0.1:8000"),
                    secret_key="test-secret-key-0123456789", **kw)


class Zone:
    """A DNS zone of TXT records for DKIM lookups: tests publish keys here, never ask the net."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    def publish(self, name: str, value: str) -> None:
        self.records[name.rstrip(".").lower()] = value

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        value = self.records.get(name.decode("ascii").rstrip(".").lower())
        return value.encode("ascii") if value is not None else None


@pytest.fixture
def zone() -> Zone:
    return Zone()


@pytest.fixture
def services(tmp_path, database_url, zone) -> Iterator[Services]:
    """The store, intake and pipeline on a fresh database, with the demo workspace seeded."""
    svc = build_services(make_settings(tmp_path, database_url), dns_txt=zone)
    seed_demo(svc.store)
    yield svc
    svc.close()


# -- SMTP: a real sink for outbound mail -----------------------------------------------------

@dataclass
class Sink:
    """A real aiosmtpd server on loopback that keeps what it is sent."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)  # as received, for signature checks
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.raws.append(raw)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def wait_for(self, predicate, timeout: float = 20.0) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if predicate(m):
                        return m
            time.sleep(0.05)
        raise AssertionError(f"no matching mail within {timeout} s; got "
                             f"{[(str(m['To']), str(m['Subject'])) for m in self.messages]}")

    def raw_of(self, msg: EmailMessage) -> bytes:
        with self.lock:
            return self.raws[next(i for i, m in enumerate(self.messages) if m is msg)]

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink(port=free_port())
    controller = Controller(s, hostname="127.0.0.1", port=s.port)
    controller.start()
    yield s
    controller.stop()


# -- the gateway itself, as a user runs it ---------------------------------------------------

@dataclass
class Running:
    proc: subprocess.Popen
    smtp_port: int
    http_port: int
    data_dir: Path
    env: dict[str, str]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def send(self, msg: EmailMessage | bytes, mail_from: str, rcpt: list[str]) -> None:
        import smtplib

        raw = msg if isinstance(msg, bytes) else msg.as_bytes()
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as s:
            s.sendmail(mail_from, rcpt, raw)

    def services(self) -> Services:
        """A second view of the same database, for asserting what the gateway stored."""
        return build_services(make_settings(self.data_dir.parent, self.env["DATABASE_URL"]),
                              migrate=False)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_gateway(tmp_path: Path, database_url: str, relay_port: int | None,
                  extra_env: dict[str, str] | None = None, *, args: tuple[str, ...] = ()
                  ) -> Running:
    smtp_port, http_port = free_port(), free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
    env.update(WORKESTRA_DATA_DIR=str(data), DATABASE_URL=database_url,
               WORKESTRA_PUBLIC_URL=f"http://127.0.0.1:{http_port}",
               WORKESTRA_SECRET_KEY="test-secret-key-0123456789", **(extra_env or {}))
    if relay_port:
        env["WORKESTRA_SMTP_RELAY"] = f"127.0.0.1:{relay_port}"
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--demo", "--host", "127.0.0.1",
         "--smtp-port", str(smtp_port), "--http-port", str(http_port), *args],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_port(smtp_port)
        wait_port(http_port)
    except TimeoutError:
        proc.kill()
        raise AssertionError("gateway did not start: "
                             + log.read_text(errors="replace")[-3000:]) from None
    return Running(proc, smtp_port, http_port, data, env, log)


def start_worker(running: Running, tag: str = "worker") -> subprocess.Popen:
    """`workestra worker` on the same data dir and database as a running `serve`."""
    log = running.log.with_name(f"{tag}.log")
    return subprocess.Popen([sys.executable, "-m", "gateway", "worker"], env=running.env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            cwd=running.data_dir.parent)


def stop_gateway(running: Running) -> None:
    if running.proc.poll() is None:
        running.proc.terminate()
        try:
            running.proc.wait(15)
        except subprocess.TimeoutExpired:
            running.proc.kill()
            running.proc.wait()


@pytest.fixture
def gateway(tmp_path, database_url, sink) -> Iterator[Running]:
    running = start_gateway(tmp_path, database_url, sink.port)
    yield running
    stop_gateway(running)


def customer_mail(subject: str, body: str, *, sender: str = "Jane Customer <jane@customer.test>",
                  to: str = "support@acme.test", **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = email.utils.make_msgid(domain="customer.test")
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    return m

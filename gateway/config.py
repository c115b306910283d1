"""One settings object, read from flags and the environment; the default needs no configuration."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from limits import RateLimitItem, parse_many

log = logging.getLogger("workestra")


class SettingError(ValueError):
    """A setting with a bad value; the message names the setting."""


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    security: str = "none"  # none | starttls | tls
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # trust this CA (e.g. a private relay's) instead of the system's

    def __str__(self) -> str:
        auth = f" as {self.username}" if self.username else ""
        return f"relay {self.host}:{self.port} ({self.security}{auth})"


@dataclass(frozen=True)
class DkimKey:
    """The gateway's own signing key, used for workspaces that have none."""

    domain: str
    selector: str
    private_pem: str


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    public_url: str
    secret_key: str
    relay: Relay | None = None
    host: str = "127.0.0.1"
    smtp_port: int = 2525
    http_port: int = 8000
    max_message_size: int = 40 * 1024 * 1024
    outbox_max_attempts: int = 8
    outbox_backoff: float = 5.0  # seconds before an outbox retry, doubling each time (10 min cap)
    smtp_tls: tuple[str, str] | None = None  # (certificate chain, key) files: offer STARTTLS
    smtp_timeout: float = 300.0  # seconds an SMTP client may stay silent (RFC 5321 4.5.3.2.7)
    auto_mail_per_hour: int = 5
    agent_mail_per_hour: int = 120
    dkim: DkimKey | None = None

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def sent_dir(self) -> Path:
        return self.data_dir / "sent"


def _whole(name: str, value: str, *, minimum: int, what: str = "") -> int:
    """An integer setting of ASCII digits (not "-1", "1e3" or "²"), at least `minimum`."""
    shown = f" {what}" if what else ""
    kind = "a positive whole number" if minimum == 1 else (
        "a whole number (0 or more)" if minimum == 0 else f"a whole number (>= {minimum})")
    if not re.fullmatch(r"[0-9]+", value) or int(value) < minimum:
        raise SettingError(f"{name}: expected {kind}{shown}, got {value!r}")
    return int(value)


# The public portal's per-IP limits: name -> (default, the variable that overrides it).
PORTAL_LIMITS = {
    "submit": ("10/hour", "WORKESTRA_LIMIT_SUBMIT"),
    "upload": ("5/10 minutes", "WORKESTRA_LIMIT_UPLOAD"),
    "link": ("5/hour", "WORKESTRA_LIMIT_LINK"),
    "reply": ("30/hour", "WORKESTRA_LIMIT_REPLY"),
    "feedback": ("20/hour", "WORKESTRA_LIMIT_FEEDBACK"),
    "search": ("600/minute", "WORKESTRA_LIMIT_SEARCH"),
}
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def parse_limit(name: str, value: str) -> RateLimitItem:
    """One limit in `limits` syntax ("10/hour", "5 per 10 minutes"), of at least one."""
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1:
        raise SettingError(f"{name}: expected one limit like 10/hour or 5/10 minutes, "
                           f"got {value!r}")
    if items[0].amount < 1:
        raise SettingError(f"{name}: a limit of 0 refuses everything, got {value!r}")
    return items[0]


def portal_limits(env: Mapping[str, str]) -> dict[str, RateLimitItem]:
    return {name: parse_limit(var, env.get(var) or default)
            for name, (default, var) in PORTAL_LIMITS.items()}


def parse_redis_url(value: str) -> str:
    """WORKESTRA_REDIS_URL: redis://, rediss:// or unix://, checked as the client will read it
    (no connection is made)."""
    name = "WORKESTRA_REDIS_URL"
    value = value.strip()
    if urlsplit(value).scheme not in _REDIS_SCHEMES:
        raise SettingError(f"{name}: expected redis://, rediss:// or unix://, got {value!r}")
    import redis  # limits[redis]; only needed when the setting is used

    try:
        redis.Redis.from_url(value)
    except ValueError as e:
        raise SettingError(f"{name}: {e} in {value!r}") from None
    return value


def parse_trusted_proxies(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """WORKESTRA_TRUSTED_PROXIES: comma-separated addresses or networks (10.0.0.0/8, ::1)."""
    networks = []
    for entry in (p.strip() for p in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingError(f"WORKESTRA_TRUSTED_PROXIES: not an IP address or network: "
                               f"{entry!r}") from None
    return networks


def _port(name: str, value: str | int) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name}: not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise SettingError(f"{name}: port out of range: {port}")
    return port


_RELAY_SCHEMES = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "tls"}


def parse_relay(value: str) -> Relay:
    """WORKESTRA_SMTP_RELAY: `host:port`, or a URL `smtp+starttls://user:pass@host:587`
    (schemes smtp, smtp+starttls, smtps; `?ca=/path/ca.pem` trusts a private CA)."""
    name = "WORKESTRA_SMTP_RELAY"
    value = value.strip()
    if "://" not in value:
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise SettingError(f"{name}: expected host:port or smtp[s]://host:port, got {value!r}")
        return Relay(host.strip("[]"), _port(name, port))
    parts = urlsplit(value)
    security = _RELAY_SCHEMES.get(parts.scheme)
    if security is None or not parts.hostname:
        raise SettingError(f"{name}: expected smtp://, smtp+starttls:// or smtps://, got "
                           f"{parts.scheme or value!r}")
    try:
        port = parts.port or (465 if security == "tls" else 587)
    except ValueError:
        raise SettingError(f"{name}: not a port number in {value!r}") from None
    ca = parse_qs(parts.query).get("ca", [None])[0]
    return Relay(parts.hostname, port, security,
                 unquote(parts.username) if parts.username else None,
                 unquote(parts.password) if parts.password else None, ca)


def _smtp_tls(env: dict[str, str]) -> tuple[str, str] | None:
    cert, key = env.get("WORKESTRA_SMTP_TLS_CERT"), env.get("WORKESTRA_SMTP_TLS_KEY")
    if not cert and not key:
        return None
    if not (cert and key):
        raise SettingError("WORKESTRA_SMTP_TLS_CERT and WORKESTRA_SMTP_TLS_KEY go together")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise SettingError(f"WORKESTRA_SMTP_TLS_CERT: cannot use {cert} with {key}: "
                           f"{getattr(e, 'strerror', None) or e}") from None
    return cert, key


def _dkim_key(env: dict[str, str]) -> DkimKey | None:
    domain, selector = env.get("WORKESTRA_DKIM_DOMAIN"), env.get("WORKESTRA_DKIM_SELECTOR")
    key_file = env.get("WORKESTRA_DKIM_KEY_FILE")
    if not (domain or selector or key_file):
        return None
    if not (domain and selector and key_file):
        raise SettingError("WORKESTRA_DKIM_DOMAIN, WORKESTRA_DKIM_SELECTOR and "
                           "WORKESTRA_DKIM_KEY_FILE go together: set all three or none")
    try:
        pem = Path(key_file).read_text()
    except OSError as e:
        raise SettingError(f"WORKESTRA_DKIM_KEY_FILE: cannot read {key_file}: {e.strerror}"
                           ) from None
    if "PRIVATE KEY" not in pem:
        raise SettingError(f"WORKESTRA_DKIM_KEY_FILE: {key_file} holds no PEM private key")
    return DkimKey(domain.lower(), selector, pem)


def _database_url(value: str | None, data_dir: Path) -> str:
    if not value:
        return f"sqlite:///{data_dir / 'workestra.db'}"
    scheme = urlsplit(value).scheme
    if scheme in ("postgres", "postgresql"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    if scheme.startswith(("postgresql+", "sqlite")):
        return value
    raise SettingError(f"DATABASE_URL: unsupported database {value!r} (sqlite or postgresql)")


def _public_url(value: str | None, host: str, http_port: int) -> str:
    if not value:
        shown = "localhost" if host in ("0.0.0.0", "::", "") else host
        return f"http://{shown}:{http_port}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError(f"WORKESTRA_PUBLIC_URL: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _secret_key(value: str | None, data_dir: Path) -> str:
    """The given key, or one generated on first start and kept in the data dir."""
    if value:
        if len(value) < 16:
            raise SettingError("WORKESTRA_SECRET_KEY: too short (16 characters at least)")
        return value
    path = data_dir / "secret_key"
    if not path.exists():
        key = secrets.token_urlsafe(48)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".secret-")  # mode 0600
        with os.fdopen(fd, "w") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # first writer wins if two processes start at once
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    key = path.read_text().strip()
    if len(key) < 16:
        raise SettingError(f"WORKESTRA_SECRET_KEY: the generated key in {path} is damaged; "
                           "remove the file to make a new one (links already sent stop working)")
    return key


def load_settings(
    env: dict[str, str] | None = None,
    *,
    data_dir: str | None = None,
    host: str | None = None,
    smtp_port: int | None = None,
    http_port: int | None = None,
) -> Settings:
    """Flags win over the environment; a bad value raises SettingError naming the setting."""
    env = dict(os.environ if env is None else env)
    root = Path(data_dir or env.get("WORKESTRA_DATA_DIR") or "./data").resolve()
    existed = root.is_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingError(f"WORKESTRA_DATA_DIR: cannot create {root}: {e.strerror}") from None
    if not existed:  # a mistyped path would otherwise start an empty gateway without a word
        log.warning("data directory %s did not exist, so it was created empty (if you "
                    "meant an existing one, check WORKESTRA_DATA_DIR or --data-dir)", root)
    host = host or env.get("WORKESTRA_HOST") or "127.0.0.1"
    smtp = _port("--smtp-port", smtp_port if smtp_port is not None else env.get(
        "WORKESTRA_SMTP_PORT", 2525))
    http = _port("--http-port", http_port if http_port is not None else env.get(
        "WORKESTRA_HTTP_PORT", 8000))
    relay_value = env.get("WORKESTRA_SMTP_RELAY")
    size = env.get("WORKESTRA_MAX_MESSAGE_SIZE", str(40 * 1024 * 1024))
    if not re.fullmatch(r"[0-9]+", size) or int(size) < 1024:
        raise SettingError(f"WORKESTRA_MAX_MESSAGE_SIZE: expected bytes (>= 1024), got {size!r}")
    auto_mail = _whole("WORKESTRA_AUTO_MAIL_PER_HOUR", env.get(
        "WORKESTRA_AUTO_MAIL_PER_HOUR", "5"), minimum=0)
    agent_mail = _whole("WORKESTRA_AGENT_MAIL_PER_HOUR", env.get(
        "WORKESTRA_AGENT_MAIL_PER_HOUR", "120"), minimum=0)
    smtp_timeout = _whole("WORKESTRA_SMTP_TIMEOUT", env.get("WORKESTRA_SMTP_TIMEOUT", "300"),
                          minimum=1, what="of seconds")
    # The portal reads these itself (portal/ratelimit.py); checked here so a bad one stops
    # the command at start instead of failing every submission.
    portal_limits(env)
    if env.get("WORKESTRA_REDIS_URL", "").strip():
        parse_redis_url(env["WORKESTRA_REDIS_URL"])
    parse_trusted_proxies(env.get("WORKESTRA_TRUSTED_PROXIES", ""))
    backoff = env.get("WORKESTRA_OUTBOX_BACKOFF", "5")
    try:
        outbox_backoff = float(backoff)
    except ValueError:
        outbox_backoff = 0.0
    if not 0 < outbox_backoff <= 600:  # also refuses nan and inf
        raise SettingError(f"WORKESTRA_OUTBOX_BACKOFF: expected seconds (> 0, <= 600), "
                           f"got {backoff!r}")
    return Settings(
        data_dir=root,
        database_url=_database_url(env.get("DATABASE_URL"), root),
        public_url=_public_url(env.get("WORKESTRA_PUBLIC_URL"), host, http),
        secret_key=_secret_key(env.get("WORKESTRA_SECRET_KEY"), root),
        relay=parse_relay(relay_value) if relay_value else None,
        host=host,
        smtp_port=smtp,
        http_port=http,
        max_message_size=int(size),
        auto_mail_per_hour=auto_mail,
        agent_mail_per_hour=agent_mail,
        dkim=_dkim_key(env),
        smtp_tls=_smtp_tls(env),
        smtp_timeout=float(smtp_timeout),
        outbox_backoff=outbox_backoff,
    )

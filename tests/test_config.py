"""Settings: the embedded default needs nothing; a bad value is a one-line error, exit code 2."""

import subprocess
import sys

import pytest

from gateway.config import Relay, SettingError, load_settings, parse_relay


def test_default_needs_no_configuration(tmp_path):
    s = load_settings({}, data_dir=str(tmp_path / "d"))
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'workestra.db'}"
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.relay is None
    again = load_settings({}, data_dir=str(tmp_path / "d"))
    assert again.secret_key == s.secret_key and len(s.secret_key) > 30  # generated once, kept


def test_a_data_dir_that_did_not_exist_is_named_when_it_is_created(tmp_path, caplog):
    """A mistyped WORKESTRA_DATA_DIR starts an empty gateway: at least it says so, once."""
    with caplog.at_level("WARNING", logger="workestra"):
        load_settings({"WORKESTRA_DATA_DIR": str(tmp_path / "dta")})
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"data directory {tmp_path / 'dta'} did not exist" in warning
    assert "WORKESTRA_DATA_DIR" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="workestra"):
        load_settings({"WORKESTRA_DATA_DIR": str(tmp_path / "dta")})
    assert not caplog.records  # it exists now: nothing to say


def test_the_outbox_retries_after_five_seconds_unless_told_otherwise(tmp_path):
    assert load_settings({}, data_dir=str(tmp_path)).outbox_backoff == 5.0
    told = load_settings({"WORKESTRA_OUTBOX_BACKOFF": "0.5"}, data_dir=str(tmp_path))
    assert told.outbox_backoff == 0.5


def test_flags_win_over_environment(tmp_path):
    env = {"WORKESTRA_DATA_DIR": str(tmp_path / "env"), "WORKESTRA_HTTP_PORT": "9000"}
    s = load_settings(env, data_dir=str(tmp_path / "flag"), http_port=8123)
    assert s.data_dir == tmp_path / "flag" and s.http_port == 8123
    assert s.public_url == "http://127.0.0.1:8123"


def test_postgres_url_uses_psycopg3(tmp_path):
    s = load_settings({"DATABASE_URL": "postgresql://u@db/x"}, data_dir=str(tmp_path))
    assert s.database_url == "postgresql+psycopg://u@db/x"


@pytest.mark.parametrize("env, name", [
    ({"WORKESTRA_SMTP_RELAY": "no-port-here"}, "WORKESTRA_SMTP_RELAY"),
    ({"WORKESTRA_SMTP_RELAY": "relay:99999"}, "WORKESTRA_SMTP_RELAY"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
    ({"WORKESTRA_PUBLIC_URL": "ftp://x"}, "WORKESTRA_PUBLIC_URL"),
    ({"WORKESTRA_SECRET_KEY": "short"}, "WORKESTRA_SECRET_KEY"),
    ({"WORKESTRA_OUTBOX_BACKOFF": "soon"}, "WORKESTRA_OUTBOX_BACKOFF"),
    ({"WORKESTRA_OUTBOX_BACKOFF": "0"}, "WORKESTRA_OUTBOX_BACKOFF"),
    ({"WORKESTRA_OUTBOX_BACKOFF": "nan"}, "WORKESTRA_OUTBOX_BACKOFF"),
    ({"WORKESTRA_LIMIT_SUBMIT": "bogus"}, "WORKESTRA_LIMIT_SUBMIT: expected one limit"),
    ({"WORKESTRA_LIMIT_UPLOAD": "0/hour"}, "WORKESTRA_LIMIT_UPLOAD: a limit of 0"),
    ({"WORKESTRA_LIMIT_SEARCH": "10/hour;5/minute"}, "WORKESTRA_LIMIT_SEARCH"),
    ({"WORKESTRA_REDIS_URL": "http://x"}, "WORKESTRA_REDIS_URL: expected redis://"),
    ({"WORKESTRA_REDIS_URL": "redis://x:port"}, "WORKESTRA_REDIS_URL: Port could not"),
    ({"WORKESTRA_TRUSTED_PROXIES": "not-an-ip"}, "WORKESTRA_TRUSTED_PROXIES: not an IP"),
    ({"WORKESTRA_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.0/33"}, "'10.0.0.0/33'"),
    ({"WORKESTRA_MAX_MESSAGE_SIZE": "\u00b2"}, "WORKESTRA_MAX_MESSAGE_SIZE"),
    ({"WORKESTRA_AUTO_MAIL_PER_HOUR": "\u00b2"}, "WORKESTRA_AUTO_MAIL_PER_HOUR"),
])
def test_bad_values_name_the_setting(tmp_path, env, name):
    with pytest.raises(SettingError, match=name):
        load_settings(env, data_dir=str(tmp_path))


@pytest.mark.parametrize("env, message", [
    ({"WORKESTRA_SMTP_TIMEOUT": "-1"},
     "WORKESTRA_SMTP_TIMEOUT: expected a positive whole number of seconds, got '-1'"),
    ({"WORKESTRA_SMTP_TIMEOUT": "0"},
     "WORKESTRA_SMTP_TIMEOUT: expected a positive whole number of seconds, got '0'"),
    ({"WORKESTRA_AUTO_MAIL_PER_HOUR": "-1"},
     "WORKESTRA_AUTO_MAIL_PER_HOUR: expected a whole number (0 or more), got '-1'"),
])
def test_a_negative_number_is_refused_as_not_positive_not_as_not_whole(tmp_path, env, message):
    with pytest.raises(SettingError) as e:
        load_settings(env, data_dir=str(tmp_path))
    assert str(e.value) == message


def test_portal_limits_redis_and_proxies_accept_what_the_readme_shows(tmp_path):
    for env in ({"WORKESTRA_LIMIT_SUBMIT": "5 per 10 minutes", "WORKESTRA_LIMIT_UPLOAD": "3/hour"},
                {"WORKESTRA_REDIS_URL": "redis://127.0.0.1:6379"},
                {"WORKESTRA_REDIS_URL": "rediss://:secret@cache.internal:6380/1"},
                {"WORKESTRA_REDIS_URL": "unix:///run/redis/redis.sock"},
                {"WORKESTRA_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,::1, fd00::/8"}):
        load_settings(env, data_dir=str(tmp_path))


@pytest.mark.parametrize("env, line", [
    ({"WORKESTRA_LIMIT_SUBMIT": "bogus"},
     "WORKESTRA_LIMIT_SUBMIT: expected one limit like 10/hour or 5/10 minutes, got 'bogus'"),
    ({"WORKESTRA_REDIS_URL": "http://x"},
     "WORKESTRA_REDIS_URL: expected redis://, rediss:// or unix://, got 'http://x'"),
    ({"WORKESTRA_TRUSTED_PROXIES": "not-an-ip"},
     "WORKESTRA_TRUSTED_PROXIES: not an IP address or network: 'not-an-ip'"),
])
def test_cli_stops_on_a_bad_portal_setting_instead_of_failing_every_submission(
        tmp_path, env, line):
    r = subprocess.run([sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path)],
                       env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"workestra: {line}"]


def test_cli_reports_a_bad_setting_in_one_line_with_exit_code_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path)],
                       env={"WORKESTRA_SMTP_RELAY": "nonsense", "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "workestra: WORKESTRA_SMTP_RELAY: expected host:port or smtp[s]://host:port, "
        "got 'nonsense'"]


@pytest.mark.parametrize("value, relay", [
    ("mail.example.com:25", Relay("mail.example.com", 25)),
    ("smtp+starttls://bot:p%40ss@mail.example.com:587",
     Relay("mail.example.com", 587, "starttls", "bot", "p@ss")),
    ("smtps://mail.example.com", Relay("mail.example.com", 465, "tls")),
    ("smtp+starttls://relay.local?ca=/etc/ca.pem",
     Relay("relay.local", 587, "starttls", ca_file="/etc/ca.pem")),
])
def test_relay_urls_carry_tls_and_credentials(value, relay):
    assert parse_relay(value) == relay


def test_an_unknown_relay_scheme_is_refused():
    with pytest.raises(SettingError, match="smtp\\+starttls://"):
        parse_relay("http://mail.example.com")


def test_smtp_tls_needs_both_files_and_readable_ones(tmp_path):
    with pytest.raises(SettingError, match="go together"):
        load_settings({"WORKESTRA_SMTP_TLS_CERT": "/x.pem"}, data_dir=str(tmp_path))
    with pytest.raises(SettingError, match="cannot use"):
        load_settings({"WORKESTRA_SMTP_TLS_CERT": "/nonexistent.pem",
                       "WORKESTRA_SMTP_TLS_KEY": "/nonexistent.key"}, data_dir=str(tmp_path))

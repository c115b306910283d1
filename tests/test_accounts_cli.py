"""`workestra workspaces add` / `agents add|password|list|key`, run as real subprocesses."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys

import pytest

from gateway import accounts_cli
from gateway.credentials import verify_password
from gateway.services import build_services
from portal.app import create_app
from tests.conftest import ROOT, make_settings
from tests.test_agent_api import Api


def _command() -> list[str]:
    """`python -m gateway` once cli.py registers the accounts commands; until then their own
    entry point (the same argparse `register`)."""
    from gateway.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "agents" in sub.choices:
        return [sys.executable, "-m", "gateway"]
    return [sys.executable, "-m", "gateway.accounts_cli"]


def workestra(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


@pytest.fixture
def cli_env(tmp_path, database_url) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
    env.update(WORKESTRA_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=database_url,
               WORKESTRA_SECRET_KEY="test-secret-key-0123456789")
    return env


def test_workspace_and_agent_from_the_cli_and_the_key_opens_the_api(tmp_path, cli_env):
    done = workestra(cli_env, "workspaces", "add", "globex", "--name", "Globex",
                     "--address", "Support@Globex.test")
    assert done.returncode == 0, done.stderr
    done = workestra(cli_env, "agents", "add", "globex", "--name", "Gina Agent",
                     "--email", "Gina@globex.test")
    assert done.returncode == 0, done.stderr
    key = done.stdout.rstrip("\n").splitlines()[-1]
    assert key.startswith("wk_") and len(key) > 40 and " " not in key

    svc = build_services(make_settings(tmp_path, cli_env["DATABASE_URL"]), migrate=False)
    try:
        with svc.store.read() as s:
            ws = svc.store.workspace_by_slug("globex", s)
            [agent] = svc.store.agents(s, ws.id)
        assert svc.store.support_addresses(workspace_id=ws.id) == ["support@globex.test"]
        assert agent.email == "gina@globex.test" and agent.available
        assert key not in (agent.api_key_hash or "")  # only the hash is kept
        assert agent.api_key_hash == hashlib.sha256(key.encode()).hexdigest()
        client = Api(create_app(svc))
        me = client.get("/api/agent/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["email"] == "gina@globex.test"
        assert me.json()["workspace"] == "globex"

        rotated = workestra(cli_env, "agents", "key", "globex", "gina@globex.test")
        new_key = rotated.stdout.splitlines()[-1]
        assert client.get("/api/agent/me", headers={
            "Authorization": f"Bearer {key}"}).status_code == 401
        assert client.get("/api/agent/me", headers={
            "Authorization": f"Bearer {new_key}"}).status_code == 200
    finally:
        svc.close()

    listed = workestra(cli_env, "agents", "list", "globex")
    assert "gina@globex.test" in listed.stdout and "available" in listed.stdout
    assert "no password" in listed.stdout


def test_password_is_read_from_stdin_and_stored_as_scrypt(tmp_path, cli_env):
    workestra(cli_env, "workspaces", "add", "globex", "--name", "Globex",
              "--address", "support@globex.test")
    workestra(cli_env, "agents", "add", "globex", "--name", "Gina", "--email", "gina@globex.test")
    short = workestra(cli_env, "agents", "password", "globex", "gina@globex.test",
                      stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    done = workestra(cli_env, "agents", "password", "globex", "gina@globex.test",
                     stdin="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    assert "correct horse" not in done.stdout + done.stderr
    svc = build_services(make_settings(tmp_path, cli_env["DATABASE_URL"]), migrate=False)
    try:
        with svc.store.read() as s:
            ws = svc.store.workspace_by_slug("globex", s)
            agent = svc.store.agent_by_email(s, ws.id, "gina@globex.test")
        assert agent.password_hash.startswith("scrypt$")
        assert verify_password("correct horse battery", agent.password_hash)
        assert not verify_password("correct horse battery!", agent.password_hash)
    finally:
        svc.close()
    assert "\tpassword" in workestra(cli_env, "agents", "list", "globex").stdout


def test_mistakes_get_one_line_and_exit_1(cli_env, monkeypatch, capsys):
    for name, value in cli_env.items():
        if name.startswith(("WORKESTRA_", "DATABASE_")):
            monkeypatch.setenv(name, value)
    ok = workestra(cli_env, "workspaces", "add", "globex", "--name", "Globex",
                   "--address", "support@globex.test")
    assert ok.returncode == 0
    cases = [
        (("workspaces", "add", "globex", "--name", "G", "--address", "x@globex2.test"),
         "exists already"),
        (("workspaces", "add", "initech", "--name", "I", "--address", "support@globex.test"),
         "already belongs to workspace 'globex'"),
        (("workspaces", "add", "Bad Slug", "--name", "B", "--address", "a@b.test"), "slug"),
        (("agents", "add", "nope", "--name", "N", "--email", "n@x.test"), "no workspace"),
        (("agents", "add", "globex", "--name", "N", "--email", "not-an-address"),
         "not an email"),
        (("agents", "password", "globex", "ghost@globex.test"), "no agent"),
    ]
    workestra(cli_env, "agents", "add", "globex", "--name", "Gina", "--email", "gina@globex.test")
    cases.append((("agents", "add", "globex", "--name", "G", "--email", "GINA@globex.test"),
                  "exists already"))
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    for args, message in cases:  # in-process: the same main(), without a process start each
        assert accounts_cli.main(list(args)) == 1, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)

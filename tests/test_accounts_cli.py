"""`workestra workspaces add` / `agents add|password|list|key`.

Each test runs the step whose point is the process boundary as a real subprocess (the key on
the last line of a real stdout, a password through a real stdin pipe, the exit status a shell
sees); the other steps call the same `main()` in this process, with stdin, stdout and stderr
captured, which spares a Python start and the imports for each.
"""

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


@pytest.fixture
def here(cli_env, monkeypatch, capsys):
    """`workestra ARGS` in this process: the same argparse `register` and commands, on the
    same environment as the subprocesses get; returns what a subprocess run would."""
    for name in list(os.environ):
        if name.startswith("WORKESTRA_"):
            monkeypatch.delenv(name)
    for name, value in cli_env.items():
        if name.startswith(("WORKESTRA_", "DATABASE_")):
            monkeypatch.setenv(name, value)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))  # a pipe, not a terminal
        code = accounts_cli.main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)
    return run


def test_workspace_and_agent_from_the_cli_and_the_key_opens_the_api(tmp_path, cli_env, here):
    done = here("workspaces", "add", "globex", "--name", "Globex",
                "--address", "Support@Globex.test")
    assert done.returncode == 0, done.stderr
    # a real process: a script takes the key with `tail -n 1` of its stdout
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

        rotated = here("agents", "key", "globex", "gina@globex.test")
        assert rotated.returncode == 0, rotated.stderr
        new_key = rotated.stdout.splitlines()[-1]
        assert client.get("/api/agent/me", headers={
            "Authorization": f"Bearer {key}"}).status_code == 401
        assert client.get("/api/agent/me", headers={
            "Authorization": f"Bearer {new_key}"}).status_code == 200
    finally:
        svc.close()

    listed = here("agents", "list", "globex")
    assert "gina@globex.test" in listed.stdout and "available" in listed.stdout
    assert "no password" in listed.stdout


def test_password_is_read_from_stdin_and_stored_as_scrypt(tmp_path, cli_env, here):
    assert here("workspaces", "add", "globex", "--name", "Globex",
                "--address", "support@globex.test").returncode == 0
    assert here("agents", "add", "globex", "--name", "Gina",
                "--email", "gina@globex.test").returncode == 0
    short = here("agents", "password", "globex", "gina@globex.test", stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    # a real process, the password through a real pipe on its stdin
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
    assert "\tpassword" in here("agents", "list", "globex").stdout


def test_mistakes_get_one_line_and_exit_1(cli_env, here):
    # a real process first, for the exit status a shell sees (on a fresh data directory)
    done = workestra(cli_env, "agents", "add", "globex", "--name", "N", "--email", "n@x.test")
    assert done.returncode == 1 and done.stdout == "", done
    # the mistake in one line, after the one warning that says the data dir was new (which
    # is why the workspace is not there)
    warning, error = done.stderr.strip().splitlines()
    assert "did not exist, so it was created empty" in warning and "no workspace" in error
    ok = here("workspaces", "add", "globex", "--name", "Globex",
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
    assert here("agents", "add", "globex", "--name", "Gina",
                "--email", "gina@globex.test").returncode == 0
    cases.append((("agents", "add", "globex", "--name", "G", "--email", "GINA@globex.test"),
                  "exists already"))
    for args, message in cases:  # in-process: the same main(), without a process start each
        done = here(*args, stdin="a-long-enough-password\n")
        assert done.returncode == 1, args
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, (
            args, done.stderr)

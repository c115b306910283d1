"""docker-compose.yml is valid and has the production topology (Debian's docker-compose
validates it without an engine)."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.conftest import ROOT, need_service


def compose(*args: str, secret: str | None = "x" * 40) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        need_service("docker-compose not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKESTRA_")}
    if secret:
        env["WORKESTRA_SECRET_KEY"] = secret
    return subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_the_compose_file_is_valid_and_has_every_part():
    assert compose("-q").returncode == 0, compose("-q").stderr
    services = set(compose("--services").stdout.split())
    assert services == {"postgres", "redis", "serve1", "serve2", "worker", "mailcatcher"}
    assert set(compose("--volumes").stdout.split()) == {
        "postgres-data", "redis-data", "gateway-data"}
    full = compose().stdout
    assert full.count("healthcheck:") == 6  # every service says how it is healthy
    worker = block(full, "worker")
    assert worker.count("- worker") == 2  # the background work, once, and its health check:
    assert "- --alive" in worker  # its heartbeat, not just a process that exists
    for front in ("serve1", "serve2"):
        assert "- --no-worker" in block(full, front) and "/readyz" in block(full, front)
        assert "WORKESTRA_REDIS_URL: redis://redis:6379/0" in block(full, front)


def block(config: str, service: str) -> str:
    """One service's part of `docker-compose config` output."""
    lines = config.splitlines()
    start = lines.index(f"  {service}:")
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("  ") and not lines[i].startswith("   ")
                or not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end])


def test_it_refuses_to_start_without_a_secret_key():
    r = compose("-q", secret=None)
    assert r.returncode != 0 and "WORKESTRA_SECRET_KEY" in r.stderr

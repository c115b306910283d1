"""django-helpdesk's mail intake measured on this machine: the same-run baseline for ingest.py.

    .venv/bin/python bench/helpdesk_baseline.py [--count 2000] [--seed 3] [--venv PATH]
                                                [--listdir-order]

bench/ingest.py compared the gateway with a quoted 140 messages/s for django-helpdesk. A
figure from another machine and another mail says nothing about this one, so this script
measures django-helpdesk itself, in the same run and on the same machine, on the very mail
ingest.py sends (`make_mails`, same seed). It installs django-helpdesk 2.6.1 once into a
throwaway virtualenv outside the repo (by default ~/.cache/workestra-bench/helpdesk-venv),
makes a minimal Django project in a temporary dir (SQLite in WAL mode with synchronous=FULL,
as the gateway's store has it), creates one Queue whose mailbox is a local directory holding
one .eml file a message, and times helpdesk's own `get_email` management command over it in
a subprocess run by that virtualenv's Python. Helpdesk mails each message's sender (a new
ticket's or an update's notice) through Django's SMTP backend to a null aiosmtpd sink on
loopback, as the gateway does its confirmations with --relay.

helpdesk reads the directory in os.listdir order, which on ext4 is hash order, not arrival:
a reply read before its ticket exists opens a new ticket. By default the listing is sorted
(file names are the arrival sequence), as if the mail had been fetched in order;
--listdir-order leaves helpdesk's order as it is. Afterwards the SQLite file is read to count
tickets, follow-ups, replies on their parent's ticket and attachments, so a run that silently
failed exits non-zero. `measure()` returns the figures for ingest.py to print a ratio by.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, wait_port  # bench/_common.py

HELPDESK = "django-helpdesk==2.6.1"
DJANGO = "django~=5.2.0"  # 2.6.1 asks for django>=5.2: the 5.2 LTS, not a later major
DEFAULT_VENV = Path.home() / ".cache" / "workestra-bench" / "helpdesk-venv"
RCPT = "support@acme.test"  # ingest.py's recipient: the queue's own address, so never a CC

SINK = """
import sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
sys.stdin.read()
c.stop()
print(Count.n)
"""

SETTINGS = """
from pathlib import Path
HERE = Path(__file__).resolve().parent
SECRET_KEY = "helpdesk-baseline-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
SITE_ID = 1
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "django.contrib.sites", "django.contrib.humanize", "rest_framework", "helpdesk",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "hd_urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3", "NAME": HERE / "helpdesk.db",
    "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"},
}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
STATIC_URL = "/static/"
MEDIA_ROOT = HERE / "media"
HELPDESK_TEAMS_MODE_ENABLED = False  # else it wants pinax-teams
DEFAULT_FROM_EMAIL = "Acme Support <{rcpt}>"
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = {port}
EMAIL_TIMEOUT = 30
"""

URLS = """
from django.urls import include, path
urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]
"""

SETUP = """
import sys
import django
django.setup()
from helpdesk.models import Queue
Queue.objects.create(
    title="Support", slug="support", email_address=sys.argv[1], allow_email_submission=True,
    email_box_type="local", email_box_local_dir=sys.argv[2], email_box_interval=0,
    logging_type="error")  # with quiet, errors reach stderr through logging's last resort
"""

# In the helpdesk venv: start-up and imports first, then only `get_email` is on the clock.
DRIVER = """
import importlib.metadata, json, os, resource, sys, time
import django
django.setup()
import helpdesk.email  # noqa: F401
from django.core.management import call_command
if sys.argv[1] == "arrival":
    listdir = os.listdir
    os.listdir = lambda path=".": sorted(listdir(path))
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
call_command("get_email", quiet=True)
wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "wall": wall,
    "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
    "helpdesk": importlib.metadata.version("django-helpdesk"),
    "django": importlib.metadata.version("django"),
}))
"""


def ensure_venv(venv: Path) -> Path:
    """The venv's python, making the venv and installing helpdesk into it the first time."""
    python, marker = venv / "bin" / "python", venv / "workestra-bench-installed.txt"
    if marker.exists() and HELPDESK in marker.read_text():
        return python
    print(f"making {venv} with {HELPDESK} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", HELPDESK, DJANGO],
                         capture_output=True, text=True)
    if pip.returncode:
        raise SystemExit(f"pip install failed:\n{pip.stdout}{pip.stderr}")
    frozen = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True,
                            text=True, check=True).stdout
    print("installed: " + ", ".join(frozen.split()), flush=True)
    marker.write_text(frozen)
    return python


def check(db: Path, mails: list[tuple[str, bytes]]) -> dict[str, int]:
    """What helpdesk made, read from its SQLite file: every message should be a follow-up
    (a new ticket's first one too), every reply one on its parent's ticket."""
    from ingest import header

    with sqlite3.connect(db) as conn:
        tickets = conn.execute("SELECT count(*) FROM helpdesk_ticket").fetchone()[0]
        attachments = conn.execute(
            "SELECT count(*) FROM helpdesk_followupattachment").fetchone()[0]
        ticket_of = {(mid or "").strip("<>"): ticket for mid, ticket in conn.execute(
            "SELECT message_id, ticket_id FROM helpdesk_followup")}
    replies = right = 0
    for _, raw in mails:
        parent = header(raw, "In-Reply-To")
        if parent is not None:
            replies += 1
            mine = ticket_of.get(header(raw, "Message-ID") or "")
            right += mine is not None and mine == ticket_of.get(parent)
    return {"tickets": tickets, "followups": len(ticket_of), "replies": replies,
            "replies_threaded": right, "attachments": attachments,
            "attachments_sent": sum(b"filename=\"scan-" in raw for _, raw in mails)}


def measure(count: int, seed: int = 3, venv: Path = DEFAULT_VENV,
            arrival_order: bool = True) -> dict:
    """Runs helpdesk's get_email over `count` of ingest.py's mails; the figures as a dict
    (`failed` names what went wrong, None when every message became a follow-up)."""
    from ingest import make_mails  # here, not at the top: ingest.py may import this module

    python = ensure_venv(venv)
    mails = make_mails(count, seed)
    with tempfile.TemporaryDirectory(prefix="workestra-helpdesk-") as tmp:
        root = Path(tmp)
        maildir = root / "mail"
        maildir.mkdir()
        for i, (_, raw) in enumerate(mails):
            (maildir / f"{i:06d}.eml").write_bytes(raw)
        port = free_port()
        (root / "hd_settings.py").write_text(SETTINGS.replace("{port}", str(port))
                                             .replace("{rcpt}", RCPT))
        (root / "hd_urls.py").write_text(URLS)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
        env.update(DJANGO_SETTINGS_MODULE="hd_settings", PYTHONPATH=tmp)
        subprocess.run([str(python), "-m", "django", "migrate", "--verbosity", "0"],
                       env=env, cwd=tmp, check=True)
        subprocess.run([str(python), "-c", SETUP, RCPT, str(maildir)], env=env, cwd=tmp,
                       check=True)

        sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            wait_port(port, sink)
            before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            run = subprocess.run(
                [str(python), "-c", DRIVER, "arrival" if arrival_order else "listdir"],
                env=env, cwd=tmp, stdout=subprocess.PIPE, text=True)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            sent_out, _ = sink.communicate("", timeout=30)
        if run.returncode:
            raise SystemExit(f"get_email exited with {run.returncode}")
        inner = json.loads(run.stdout.strip().splitlines()[-1])
        figures = check(root / "helpdesk.db", mails)
        left = sum(1 for _ in maildir.iterdir())
    processed = figures["followups"]
    failed = None
    if processed < 0.98 * count or left > 0.02 * count:
        failed = f"only {processed} of {count} messages became follow-ups, {left} files left"
    return {
        "messages": count, "helpdesk": inner["helpdesk"], "django": inner["django"],
        "wall": inner["wall"], "rate": count / inner["wall"],
        "cpu_ms": inner["cpu"] * 1000 / count,
        "process_wall": wall,
        "process_cpu_ms": (after.ru_utime - before.ru_utime + after.ru_stime
                           - before.ru_stime) * 1000 / count,
        "files_left": left, "mails_sent": int(sent_out.strip() or 0),
        "arrival_order": arrival_order, "failed": failed, **figures,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--listdir-order", action="store_true",
                   help="leave helpdesk's os.listdir order (hash order on ext4), unsorted")
    args = p.parse_args()
    r = measure(args.count, args.seed, args.venv, arrival_order=not args.listdir_order)
    print(f"django-helpdesk {r['helpdesk']} (Django {r['django']}), {r['messages']} mails, "
          f"{os.cpu_count()} CPUs, SQLite WAL synchronous=FULL, get_email in one process, "
          + ("files in arrival order" if r["arrival_order"] else "files in os.listdir order")
          + ", its mail over SMTP to a null aiosmtpd sink")
    print(f"  made: {r['tickets']} tickets, {r['followups']} follow-ups "
          f"({r['followups'] - r['tickets']} on existing tickets; {r['replies_threaded']} of "
          f"{r['replies']} In-Reply-To replies on their parent's ticket), "
          f"{r['attachments']} attachments from {r['attachments_sent']} mails with a PDF, "
          f"{r['mails_sent']} mails sent, {r['files_left']} files left")
    print(f"get_email: {r['messages']} messages in {r['wall']:.1f} s = {r['rate']:.0f} msg/s, "
          f"{r['cpu_ms']:.1f} ms CPU a message (the subprocess with its start-up: "
          f"{r['process_wall']:.1f} s, {r['process_cpu_ms']:.1f} ms CPU a message)")
    if r["failed"]:
        raise SystemExit(f"FAILED: {r['failed']}")


if __name__ == "__main__":
    main()

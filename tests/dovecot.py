"""A throwaway Dovecot for the IMAP tests, and a proxy that drops connections on cue.

Dovecot refuses to serve mail as root and its login process refuses to run as root, so under
root the whole instance runs as the `dovecot` system user in a directory it owns; otherwise it
runs as the current user. Nothing outside its directory is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port, need_service

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "support", "s3cret pass"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mailbox_idle_check_interval = 1 secs
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""

SSL_ON = """\
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
"""


@dataclass
class Dovecot:
    """One running instance: `port` is plain IMAP (STARTTLS when TLS is on), `tls_port` IMAPS."""

    root: Path
    port: int
    tls_port: int
    tls: bool
    run_as: pwd.struct_passwd
    proc: subprocess.Popen | None = None
    ca_file: Path | None = None
    extra_config: str = ""

    def start(self) -> None:
        """Starts (or restarts, on the same ports and maildir) and waits for the greeting."""
        config = self.root / "dovecot.conf"
        user = self.run_as
        config.write_text(CONFIG.format(
            root=self.root, user=user.pw_name, group=_group_name(user.pw_gid), uid=user.pw_uid,
            gid=user.pw_gid, port=self.port, tls_port=self.tls_port if self.tls else 0)
            + (SSL_ON.format(root=self.root) if self.tls else "ssl = no\n")
            + self.extra_config)
        as_root = os.geteuid() == 0
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)], cwd=self.root,
            user=user.pw_uid if as_root else None, group=user.pw_gid if as_root else None,
            extra_groups=[] if as_root else None,
            stdout=subprocess.DEVNULL, stderr=(self.root / "stderr.log").open("ab"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dovecot exited: {self.logs()}")
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imaplib.IMAP4("127.0.0.1", self.port, timeout=2).logout()
                return
            time.sleep(0.05)
        raise AssertionError(f"dovecot did not answer on port {self.port}: {self.logs()}")

    def stop(self, *, crash: bool = False) -> None:
        """Shuts the server down, or with `crash` kills it and its sessions without a word.

        Either way no process of this instance is left: Dovecot's session processes otherwise
        outlive a stopped master by seconds.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        family = _descendants(self.proc.pid)
        # the master first: alive, it would replace the children killed below
        self.proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # wait until nothing of it holds the listening port any more
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
            except OSError:
                return
            time.sleep(0.1)

    def logs(self) -> str:
        parts = [self.root / "dovecot.log", self.root / "stderr.log"]
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in parts if p.exists())

    def client(self) -> imaplib.IMAP4:
        """A logged-in stdlib client, for putting mail in and looking at flags."""
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        imap = self.client()
        try:
            typ, data = imap.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            imap.logout()

    def folder(self, folder: str) -> list[tuple[int, set[str]]]:
        """(UID, flags) of every message in a folder."""
        imap = self.client()
        try:
            typ, _ = imap.select(folder)
            assert typ == "OK"
            typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
            found = []
            for item in data:
                if not item:
                    continue
                text = item.decode() if isinstance(item, bytes) else item[0].decode()
                uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
                flags = set(text.split("FLAGS (")[1].split(")")[0].split())
                found.append((uid, flags))
            return sorted(found)
        finally:
            imap.logout()

    def flags_by_message_id(self, folder: str) -> dict[str, set[str]]:
        """The flags of each message in a folder, keyed by its Message-ID (without <>)."""
        imap = self.client()
        try:
            typ, _ = imap.select(folder)
            assert typ == "OK"
            typ, data = imap.uid("FETCH", "1:*",
                                 "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            found = {}
            for item in data:
                if isinstance(item, tuple):
                    flags = set(item[0].decode().split("FLAGS (")[1].split(")")[0].split())
                    header = item[1].decode().split(":", 1)[1].strip().strip("<>")
                    found[header] = flags
            return found
        finally:
            imap.logout()

    def create(self, folder: str) -> None:
        imap = self.client()
        try:
            imap.create(folder)
        finally:
            imap.logout()

    def delete(self, folder: str) -> None:
        imap = self.client()
        try:
            typ, data = imap.delete(folder)
            assert typ == "OK", data
        finally:
            imap.logout()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Dovecot's master forks one per service)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the name, in parentheses, may hold spaces: the parent pid follows its end
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _group_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def _run_as() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("dovecot")
    except KeyError:
        need_service("dovecot runs as root here, and there is no 'dovecot' user to run it as")
        raise


def _self_signed(root: Path) -> Path:
    """A certificate for 127.0.0.1 and localhost; it is its own CA for the client to trust."""
    if shutil.which("openssl") is None:
        need_service("openssl is needed to make the test certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
        check=True, capture_output=True)
    return root / "cert.pem"


@contextlib.contextmanager
def dovecot(*, tls: bool = False, extra_config: str = "") -> Iterator[Dovecot]:
    """A fresh Dovecot with user `support` and empty mailboxes; removed afterwards."""
    if not os.path.exists(DOVECOT):
        need_service("dovecot not installed (Debian: apt-get install dovecot-imapd)")
    run_as = _run_as()
    # Not under pytest's tmp_path: its parents are private to root, and dovecot runs as
    # another user when we are root.
    root = Path(tempfile.mkdtemp(prefix="workestra-dovecot-"))
    try:
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        ca_file = _self_signed(root) if tls else None
        if os.geteuid() == 0:
            for path in [root, *root.iterdir()]:
                os.chown(path, run_as.pw_uid, run_as.pw_gid)
        server = Dovecot(root, free_port(), free_port(), tls, run_as, ca_file=ca_file,
                         extra_config=extra_config)
        server.start()
        try:
            yield server
        finally:
            server.stop(crash=True)  # faster than a clean shutdown; all is thrown away
    finally:
        shutil.rmtree(root, ignore_errors=True)


class CuttingProxy:
    """A TCP relay in front of Dovecot that cuts the connection when told, mid-reply.

    `cut_on(direction, marker)` arms one cut: the next chunk going that way ("server" to the
    client, or "client" to the server) that contains `marker` is forwarded only in part, then
    both sides are closed, as a server crash or a network drop would.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts: list[tuple[str, bytes]] = []
        self.cut_count = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None

    def cut_on(self, direction: str, marker: bytes) -> None:
        self.cuts.append((direction, marker))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        self.connections += 1
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        writers = (client_w, server_w)
        await asyncio.gather(self._pump("server", server_r, client_w, writers),
                             self._pump("client", client_r, server_w, writers),
                             return_exceptions=True)

    async def _pump(self, direction: str, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, writers: tuple[asyncio.StreamWriter, ...]):
        try:
            while data := await reader.read(65536):
                rule = next((c for c in self.cuts if c[0] == direction and c[1] in data), None)
                if rule is not None:
                    self.cuts.remove(rule)
                    self.cut_count += 1
                    end = data.index(rule[1]) + len(rule[1])
                    writer.write(data[:end + (len(data) - end) // 2])
                    await writer.drain()
                    break
                writer.write(data)
                await writer.drain()
        finally:
            for w in writers:
                w.close()

"""POST /api/public/upload: size while streaming, the allowlist by content, the scanning hook."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from portal.uploads import Refused, scan
from tests.test_portal_common import PNG, client

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
EXE = b"MZ\x90\x00" + b"\x00" * 200


def _up(c, name, data, ctype):
    return c.post("/api/public/upload", data={"slug": "acme"}, files={"file": (name, data, ctype)})


def test_allowed_files_are_accepted_with_a_token(services):
    c = client(services)
    r = _up(c, "report.pdf", PDF, "application/pdf")
    assert r.status_code == 201 and r.json()["content_type"] == "application/pdf"
    assert r.json()["upload"]


@pytest.mark.parametrize("name,data,ctype,words", [
    ("setup.exe", EXE, "application/octet-stream", "programs"),
    ("holiday.png", EXE, "image/png", "programs"),  # a renamed .exe
    ("page.html", b"<html><script>alert(1)</script></html>", "text/html", "HTML"),
    ("notes.txt", b"<!DOCTYPE html><html></html>", "text/plain", "HTML"),
    ("photo.png", PDF, "image/png", "not image/png"),
    ("photo.png", PNG, "application/pdf", "declared as application/pdf"),
    ("archive.zip", b"PK\x03\x04" + b"\x00" * 40, "application/zip", "not accepted"),
])
def test_forbidden_types_are_refused_with_a_clear_message(services, name, data, ctype, words):
    r = _up(client(services), name, data, ctype)
    assert r.status_code == 415 and words in r.json()["error"]


def test_oversized_file_is_refused(services):
    big = b"a" * (10 * 1024 * 1024 + 1)
    r = _up(client(services), "big.txt", big, "text/plain")
    assert r.status_code == 413 and "10 MB" in r.json()["error"]


def test_body_far_over_the_limit_is_refused_before_reading(services):
    r = client(services).post("/api/public/upload", content=b"x" * 10,
                              headers={"Content-Type": "multipart/form-data; boundary=b",
                                       "Content-Length": str(100 * 1024 * 1024)})
    assert r.status_code == 413


def test_an_oversized_file_without_a_declared_length_stops_being_read_at_the_limit(services):
    """Chunked, so only the running count can stop it: the app must stop asking for the body
    just past 10 MB, not read on to the whole-form budget."""
    from portal.app import create_app

    head = (b'--b\r\nContent-Disposition: form-data; name="slug"\r\n\r\nacme\r\n--b\r\n'
            b'Content-Disposition: form-data; name="file"; filename="big.txt"\r\n'
            b'Content-Type: text/plain\r\n\r\n')
    chunk, total = b"a" * 65536, 30 * 1024 * 1024
    read, answered = [0], []

    async def receive() -> dict:
        if read[0] == 0:
            read[0] = len(head)
            return {"type": "http.request", "body": head, "more_body": True}
        read[0] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": read[0] < total}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/public/upload",
             "raw_path": b"/api/public/upload", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b"),
                         (b"host", b"127.0.0.1:8000")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(create_app(services)(scope, receive, send))
    assert answered == [413]
    assert 10 * 1024 * 1024 < read[0] <= 10 * 1024 * 1024 + 2 * len(chunk)


def test_sixth_upload_in_ten_minutes_is_refused(services):
    c = client(services)
    codes = [_up(c, "a.txt", b"hello", "text/plain").status_code for _ in range(6)]
    assert codes == [201] * 5 + [429]


class FakeClamd:
    """clamd's INSTREAM protocol on a real unix socket, with a verdict chosen by the test."""

    def __init__(self, path: str, verdict: bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen()
        self.verdict = verdict
        self.received = b""
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            buf = b""
            while not buf.endswith(b"\x00\x00\x00\x00"):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            self.received = buf
            conn.sendall(self.verdict + b"\0")


def _run(coro):
    """asyncio.run in a thread of its own: a browser test may leave a loop on this one."""
    out: list = []

    def go() -> None:
        try:
            out.append(asyncio.run(coro))
        except BaseException as e:  # noqa: BLE001
            out.append(e)

    t = threading.Thread(target=go)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_scanning_hook_uses_clamd_and_refuses_on_a_find_or_a_failure(tmp_path):
    path = str(tmp_path / "clamd.sock")
    env = {"WORKESTRA_CLAMD_SOCKET": path}
    _run(scan(b"data", "acme", {}))  # off by default
    clean = FakeClamd(path, b"stream: OK")
    _run(scan(b"data", "acme", env))
    assert clean.received.startswith(b"zINSTREAM\0")
    os.unlink(path)
    FakeClamd(path, b"stream: Eicar-Test-Signature FOUND")
    with pytest.raises(Refused, match="harmful"):
        _run(scan(b"X5O!P%@AP", "acme", env))
    os.unlink(path)
    with pytest.raises(Refused, match="try again"):
        _run(scan(b"data", "acme", env))  # nobody listening: refused, not waved through
    _run(scan(b"data", "acme", {**env, "WORKESTRA_SCAN_WORKSPACES": "other"}))

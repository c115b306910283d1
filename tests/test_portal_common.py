"""Not tests: helpers the portal tests share (a client on the real app, forms read back)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from gateway.services import Services
from portal.app import create_app

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7"
       b"5\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def client(services: Services) -> TestClient:
    return TestClient(create_app(services), base_url="http://127.0.0.1:8000")


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def submit(c: TestClient, data: dict | None = None, files: list | None = None,
           slug: str = "acme"):
    page = c.get(f"/portal/{slug}/submit")
    fields = {"csrf_token": csrf_of(page.text), "name": "Jane Customer",
              "email": "jane@customer.test", "subject": "Printer is on fire",
              "description": "Room 4, again.", "type": "Bug Report", **(data or {})}
    return c.post(f"/portal/{slug}/submit", data=fields, files=files or [("x", ("", b""))])

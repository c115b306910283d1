"""A real headless Chromium (Debian's), driven by Playwright, for checking pages as users see them.

Use the `page` fixture (import it into a test module: `from tests.browser import browser, page`).
Under CI a missing Chromium or Playwright fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import need_service

CHROMIUM = os.environ.get("WORKESTRA_CHROMIUM", "/usr/bin/chromium")
# As the machine's notes advise: no first-run, no background traffic to a network we lack.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")  # Playwright's loop must not outlive the module's tests
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need_service("playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        need_service(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context()  # type: ignore[attr-defined]
    pg = context.new_page()
    yield pg
    context.close()

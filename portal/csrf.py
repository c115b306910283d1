"""CSRF protection for every form, logged in or not: a double-submit cookie, signed.

The browser gets a random `wk_csrf` cookie (HttpOnly, SameSite=Lax); each form carries
`csrf_token` = HMAC(secret, cookie). Another site can make the browser send the cookie but
cannot read it, so it cannot compute the field. No server-side session is needed, which suits
the customer portal, and the console uses the same check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "wk_csrf"
FIELD = "csrf_token"


@lru_cache(maxsize=4096)
def _mac(secret: str, nonce: str) -> str:
    """Kept per browser's cookie: every page with a form computes it again (bench/portal.py)."""
    return hmac.new(secret.encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def token(request: Request, secret: str) -> tuple[str, str | None]:
    """(the form field value, a new cookie value to set or None if the browser has one)."""
    nonce = request.cookies.get(COOKIE)
    fresh = None
    if not nonce or len(nonce) != 43:
        nonce = fresh = secrets.token_urlsafe(32)
    return _mac(secret, nonce), fresh


def set_cookie(response: Response, nonce: str | None, *, secure: bool) -> None:
    if nonce:
        response.set_cookie(COOKIE, nonce, httponly=True, samesite="lax", secure=secure,
                            path="/")


def valid(request: Request, secret: str, submitted: str | None) -> bool:
    nonce = request.cookies.get(COOKIE)
    if not nonce or not submitted:
        return False
    return hmac.compare_digest(submitted, _mac(secret, nonce))

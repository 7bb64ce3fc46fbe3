"""Who may act. Pure functions: no I/O, easy to test.

A browser gets a random CSRF token in a ``SameSite=Strict`` cookie and repeats it in a
hidden field of every action form (or the ``X-CSRF-Token`` header); the two must match.
Signing in with the dashboard token sets a session cookie bound to that CSRF token by an
HMAC with a key made at start-up, so a session cannot be forged or moved to another
browser's CSRF token, and no restart keeps an old session valid. API clients send the
token as ``Authorization: Bearer …`` instead: browsers never attach that header by
themselves, so it needs no CSRF token. Every comparison takes constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

CSRF_COOKIE = "corral_csrf"
SESSION_COOKIE = "corral_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
MIN_TOKEN_CHARS = 16


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str, b: str) -> bool:
    """Equality in constant time; empty values never match."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Guard:
    """The token that allows actions (None: read-only) and the key that signs sessions."""

    token: str | None = field(repr=False)
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @property
    def actions_allowed(self) -> bool:
        return self.token is not None

    def session_for(self, csrf: str) -> str:
        return hmac.new(self.key, b"session:" + csrf.encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        return self.token is not None and same(given, self.token)

    def signed_in(self, cookies: Mapping[str, str]) -> bool:
        csrf = cookies.get(CSRF_COOKIE, "")
        return (self.actions_allowed and bool(csrf)
                and same(cookies.get(SESSION_COOKIE, ""), self.session_for(csrf)))

    def refusal(self, headers: Mapping[str, str], cookies: Mapping[str, str],
                form_csrf: str) -> str | None:
        """Why a request may not act, or None when it may."""
        if not self.actions_allowed:
            return "actions are off: start the dashboard with --allow-actions"
        bearer = headers.get("Authorization", "")
        if bearer.startswith("Bearer "):
            return None if self.token_matches(bearer[len("Bearer "):]) else "wrong token"
        if not self.signed_in(cookies):
            return "sign in with the dashboard token first"
        csrf = form_csrf or headers.get(CSRF_HEADER, "")
        if not same(csrf, cookies.get(CSRF_COOKIE, "")):
            return "missing or stale CSRF token: reload the page"
        return None

    def sign_in_refusal(self, cookies: Mapping[str, str], form_csrf: str,
                        given_token: str) -> str | None:
        """Why a sign-in is refused, or None; the sign-in form is CSRF-checked too."""
        if not self.actions_allowed:
            return "actions are off: start the dashboard with --allow-actions"
        if not same(form_csrf, cookies.get(CSRF_COOKIE, "")):
            return "missing or stale CSRF token: reload the page"
        if not self.token_matches(given_token):
            return "wrong token"
        return None

"""Web UI sign-in sessions: a sealed cookie that carries the user's own token, and CSRF tokens.

**Design.** The UI needs the signed-in user's bearer token on every request, not only the user's
name: uploads and downloads go through an ``AsyncClient`` that calls the name node's API, and that
API knows users only by their tokens. Two designs were possible:

(a) keep the token in the (HttpOnly) cookie and check it with ``Users.authenticate`` on every
    request; or
(b) keep only a session signed with the cluster secret, and have the transfer client act through
    a name-node-internal credential that the API would have to accept on the user's behalf.

This module does (a), with the token *sealed*: the cookie value is ``EXPIRY.BOX``, where BOX is the
token encrypted and authenticated with AES-256-GCM under a key derived from the cluster secret,
with EXPIRY as associated data. Why:

* Revocation is immediate. Every request opens the box and authenticates the token afresh, so
  once an admin removes a user or resets its token, that user's existing sessions are refused on
  their next request. (With (b) the session would have to be bound to the token hash to get this.)
* No new credential: the UI's transfers use the user's own token, so the API's checks (and its
  audit of who did what) apply to them unchanged; (b) would need an impersonation credential in
  the API, which is a bigger thing to get right than a cookie.
* The bearer token is not in the cookie in the clear: a cookie that leaks (a browser profile, a
  proxy log) is a session that ends after ``LIFETIME`` and with any change of the cluster secret,
  not the user's long-lived API token. A forged or altered cookie fails the GCM tag.
* No server-side state: sessions survive a name node restart, and nothing grows with logins.

What it does not do: sign-out clears the cookie in the browser, but a copy taken earlier stays
valid until it expires; resetting the user's token ends every session at once.

**CSRF.** Each session has a CSRF token, an HMAC (keyed with the cluster secret) of its cookie
value. Pages put it in a hidden ``csrf`` field of every form that changes something; the handlers
compare it in constant time. A page of another site can neither read it (same-origin policy) nor
compute it (no secret), and the cookie is ``SameSite=Strict`` besides.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pydfs.errors import Unauthenticated
from pydfs.namenode.auth import User, Users

COOKIE = "pydfs_session"
LIFETIME = 12 * 3600  # seconds a sign-in lasts (the cookie itself ends with the browser session)
_NONCE = 12


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in user, as one request's cookie shows it."""

    user: User
    token: str  # the user's bearer token, for the UI's transfer client
    value: str  # the cookie value
    csrf: str  # what this session's forms must carry in their ``csrf`` field


class Sessions:
    def __init__(self, secret: bytes, users: Users) -> None:
        self._secret = secret
        self._aead = AESGCM(hmac.new(secret, b"pydfs web session key", hashlib.sha256).digest())
        self._users = users

    def seal(self, token: str, *, now: float | None = None) -> str:
        """A new cookie value for *token* (which must have been authenticated already)."""
        expires = str(int((time.time() if now is None else now) + LIFETIME))
        nonce = os.urandom(_NONCE)
        box = nonce + self._aead.encrypt(nonce, token.encode(), _aad(expires))
        return f"{expires}.{base64.urlsafe_b64encode(box).rstrip(b'=').decode()}"

    async def open(self, value: str) -> Session | None:
        """The session *value* stands for; None if it is malformed, forged, expired, or its token
        no longer authenticates (the user was removed or its token reset)."""
        expires, _, sealed = value.partition(".")
        try:
            if not expires.isdigit() or int(expires) < time.time():
                return None
            box = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            if len(box) <= _NONCE:
                return None
            token = self._aead.decrypt(box[:_NONCE], box[_NONCE:], _aad(expires)).decode()
            user = await self._users.authenticate(token)
        except (InvalidTag, binascii.Error, ValueError, Unauthenticated):
            return None
        return Session(user, token, value, self.csrf(value))

    def csrf(self, value: str) -> str:
        return hmac.new(
            self._secret, b"pydfs web csrf|" + value.encode(), hashlib.sha256
        ).hexdigest()

    @staticmethod
    def csrf_ok(session: Session, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), session.csrf.encode()
        )


def _aad(expires: str) -> bytes:
    return b"pydfs web session|" + expires.encode()

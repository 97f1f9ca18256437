"""Credentials that cross the network: user bearer tokens, block access tokens, node credentials.

The name node and the data nodes share one *cluster secret*. With it the name node signs block
access tokens (HMAC-SHA256 over the block id, the mode and an expiry), which a data node checks
without asking anyone, and data nodes prove to the name node that they belong to the cluster.
User tokens are random; the name node keeps only their SHA-256 (they carry 256 bits of entropy,
so a slow password hash would buy nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Literal

from pydfs.errors import InvalidArgument, Unauthenticated

Mode = Literal["r", "w"]
USER_TOKEN_PREFIX = "pydfs_"
SECRET_FILE = "cluster.secret"


def new_user_token() -> str:
    return USER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_user_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _mac(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def block_token(secret: bytes, block_id: str, mode: Mode, lifetime: float) -> str:
    """A token that lets its bearer read or write *block_id* on any data node until it expires."""
    expires = str(int(time.time() + lifetime))
    return f"{mode}.{expires}.{_mac(secret, 'block', block_id, mode, expires)}"


def check_block_token(secret: bytes, token: str | None, block_id: str, mode: Mode) -> None:
    """Refuse a missing, malformed, forged, expired or other-block token."""
    if not token:
        raise Unauthenticated("a block access token is required")
    if not token.isascii():  # hmac.compare_digest takes no other str
        raise Unauthenticated("malformed block access token")
    try:
        token_mode, expires, mac = token.split(".")
        deadline = int(expires)
    except ValueError:
        raise Unauthenticated("malformed block access token") from None
    if not hmac.compare_digest(mac, _mac(secret, "block", block_id, token_mode, expires)):
        raise Unauthenticated(f"block access token not valid for block {block_id}")
    if token_mode != mode:
        raise Unauthenticated(f"block access token is for {token_mode!r}, not {mode!r}")
    if deadline < time.time():
        raise Unauthenticated("block access token expired")


def node_credential(secret: bytes) -> str:
    """What a data node presents to the name node (``Authorization: Node <credential>``)."""
    return _mac(secret, "datanode")


def check_node_credential(secret: bytes, credential: str) -> None:
    if not hmac.compare_digest(credential.encode(), node_credential(secret).encode()):
        raise Unauthenticated("not a data node of this cluster (wrong cluster secret)")


def load_or_create_secret(path: Path) -> bytes:
    """The name node's cluster secret, made on first start (mode 0600)."""
    try:
        return read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return read_secret(path)


def read_secret(path: Path) -> bytes:
    text = path.read_text().strip()
    if len(text) < 32:
        raise InvalidArgument(f"cluster secret in {path} is too short (at least 32 characters)")
    return text.encode()

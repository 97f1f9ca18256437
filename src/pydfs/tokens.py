"""Credentials that cross the network: user bearer tokens, block access tokens, node credentials.

The name node and the data nodes share one *cluster secret*. With it the name node signs block
access tokens (HMAC-SHA256 over the block id, the mode, an expiry and, for writes, the data nodes
the write may go to), which a data node checks without asking anyone, and data nodes prove to
the name node that they belong to the cluster.

A write token names its targets, in order, with their URLs: a data node takes a write only if
it is one of them, and forwards it down a pipeline only to the targets after it, so a client
can neither plant a block on a node the name node did not choose nor make a data node send
anything anywhere else. Block ids are made fresh for each grant, so a token for a block is a
token for one upload (``w``) or one ordered copy (``c``). A write token also reads its block
back, on the nodes it names: the only bytes the block can hold are those its bearer sent, and a
writer that reads back what it wrote then needs no read token first (``Transfer.read_path``).
User tokens are random; the name node keeps only their SHA-256 (they carry 256 bits of entropy,
so a slow password hash would buy nothing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

from pydfs.errors import InvalidArgument, Unauthenticated

Mode = Literal["r", "w", "c"]  # read; write of an upload; a copy the name node ordered
Target = tuple[str, str]  # a data node's id and URL
USER_TOKEN_PREFIX = "pydfs_"
SECRET_FILE = "cluster.secret"


def new_user_token() -> str:
    return USER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_user_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _mac(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def block_token(
    secret: bytes, block_id: str, mode: Mode, lifetime: float, targets: Sequence[Target] = ()
) -> str:
    """A token that lets its bearer read *block_id* on any data node, or write it to *targets*
    (and only to them), until it expires."""
    expires = str(int(time.time() + lifetime))
    named = _encode_targets(targets)
    return f"{mode}.{expires}.{named}.{_mac(secret, 'block', block_id, mode, expires, named)}"


def block_token_expiry(token: str) -> float:
    """When a block token stops being good (the time it names; 0 if it names none): what a
    client holding one needs to know of it, unchecked."""
    try:
        return float(token.split(".", 2)[1])
    except (IndexError, ValueError):
        return 0.0


def check_block_token(
    secret: bytes, token: str | None, block_id: str, modes: str, node_id: str
) -> tuple[Mode, list[Target]]:
    """The mode (one of *modes*) and the targets of a token for *block_id*; refuse a missing,
    malformed, forged, expired or other-block token, and a write token that does not name
    *node_id*."""
    if not token:
        raise Unauthenticated("a block access token is required")
    if not token.isascii():  # hmac.compare_digest takes no other str
        raise Unauthenticated("malformed block access token")
    try:
        token_mode, expires, named, mac = token.split(".")
        deadline = int(expires)
    except ValueError:
        raise Unauthenticated("malformed block access token") from None
    if not hmac.compare_digest(mac, _mac(secret, "block", block_id, token_mode, expires, named)):
        raise Unauthenticated(f"block access token not valid for block {block_id}")
    if token_mode not in ("r", "w", "c") or token_mode not in modes:
        raise Unauthenticated(f"block access token is for {token_mode!r}, not {modes!r}")
    if deadline < time.time():
        raise Unauthenticated("block access token expired")
    targets = _decode_targets(named)
    if token_mode != "r" and node_id not in (node for node, _ in targets):
        raise Unauthenticated(f"block access token does not name data node {node_id}")
    return cast(Mode, token_mode), targets


def _encode_targets(targets: Sequence[Target]) -> str:
    text = "\n".join(f"{node} {url}" for node, url in targets)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_targets(named: str) -> list[Target]:
    """What ``_encode_targets`` made (under a valid MAC, so well formed)."""
    try:
        text = base64.urlsafe_b64decode(named + "=" * (-len(named) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed block access token") from None
    pairs = (line.partition(" ") for line in text.split("\n") if line)
    return [(node, url) for node, _, url in pairs]


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

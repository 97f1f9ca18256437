"""pydfs: a distributed file system with replicated, checksummed blocks.

The SDK::

    import pydfs

    with pydfs.Client("http://127.0.0.1:7800") as fs:
        fs.write_bytes("/hello.txt", b"hello")
        assert fs.read_bytes("/hello.txt") == b"hello"
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydfs.errors import (
    AlreadyExists,
    ChecksumMismatch,
    Conflict,
    DirectoryNotEmpty,
    InsufficientNodes,
    InvalidArgument,
    InvalidPath,
    IsADirectory,
    LimitExceeded,
    NoSpace,
    NotADirectory,
    NotFound,
    PermissionDenied,
    ProtocolError,
    PydfsError,
    Timeout,
    Unavailable,
)

if TYPE_CHECKING:
    from pydfs.client import AsyncClient, Client

__version__ = "0.1.0"

# A library logs, it does not print: applications choose where pydfs's records go.
logging.getLogger("pydfs").addHandler(logging.NullHandler())

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "ChecksumMismatch",
    "Client",
    "Conflict",
    "DirectoryNotEmpty",
    "InsufficientNodes",
    "InvalidArgument",
    "InvalidPath",
    "IsADirectory",
    "LimitExceeded",
    "NoSpace",
    "NotADirectory",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "PydfsError",
    "Timeout",
    "Unavailable",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The clients pull in aiohttp: import them only when asked, so `import pydfs` stays cheap.
    if name in ("AsyncClient", "Client"):
        from pydfs import client

        return getattr(client, name)
    raise AttributeError(f"module 'pydfs' has no attribute {name!r}")

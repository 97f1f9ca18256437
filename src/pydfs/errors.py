"""The one exception tree of pydfs.

Every error that crosses the network is one of these, carried as a ``wire.ErrorBody`` with a
stable ``code``; the client turns the body back into the same class. Each class also derives from
the matching built-in so that ordinary Python code (``except FileNotFoundError``) handles it::

    PydfsError
    ├── NotFound            (+ FileNotFoundError)   404  not_found
    ├── AlreadyExists       (+ FileExistsError)     409  already_exists
    ├── NotADirectory       (+ NotADirectoryError)  409  not_a_directory
    ├── IsADirectory        (+ IsADirectoryError)   409  is_a_directory
    ├── DirectoryNotEmpty   (+ OSError ENOTEMPTY)   409  directory_not_empty
    ├── PermissionDenied    (+ PermissionError)     403  permission_denied
    │   └── Unauthenticated                         401  unauthenticated
    ├── InvalidPath         (+ ValueError)          400  invalid_path
    ├── InvalidArgument     (+ ValueError)          400  invalid_argument
    ├── InsufficientNodes                           503  insufficient_nodes
    ├── NoSpace             (+ OSError ENOSPC)      507  no_space
    ├── Conflict                                    409  conflict
    │   └── AnswerLost                              409  answer_lost
    ├── ChecksumMismatch                            422  checksum_mismatch
    ├── LimitExceeded                               429  limit_exceeded
    ├── Unavailable         (+ ConnectionError)     503  unavailable
    │   └── Timeout         (+ TimeoutError)        504  timeout
    ├── ProtocolError                               400  protocol_error
    └── InternalError                               500  internal
"""

from __future__ import annotations

import errno
from typing import ClassVar


class PydfsError(Exception):
    """Base of every pydfs error; ``code`` is stable and travels in error bodies."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.replace("_", " "))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class NotFound(PydfsError, FileNotFoundError):
    """A path, block, upload or node that does not exist."""

    code, status = "not_found", 404


class AlreadyExists(PydfsError, FileExistsError):
    """The target of a create, copy or move exists and replacing it was not asked for."""

    code, status = "already_exists", 409


class NotADirectory(PydfsError, NotADirectoryError):
    """A file stands where the operation needs a directory."""

    code, status = "not_a_directory", 409


class IsADirectory(PydfsError, IsADirectoryError):
    """A directory stands where the operation needs a file."""

    code, status = "is_a_directory", 409


class DirectoryNotEmpty(PydfsError, OSError):
    """A directory still holds entries and removing it recursively was not asked for."""

    code, status = "directory_not_empty", 409

    def __init__(self, message: str = "") -> None:
        PydfsError.__init__(self, message)
        self.errno = errno.ENOTEMPTY


class PermissionDenied(PydfsError, PermissionError):
    """The caller may not do this."""

    code, status = "permission_denied", 403


class Unauthenticated(PermissionDenied):
    """No credentials, or credentials the server does not accept (wrong, revoked, expired)."""

    code, status = "unauthenticated", 401


class InvalidPath(PydfsError, ValueError):
    """A path that pydfs never stores: relative where absolute is needed, control characters,
    over-long names, or a component that escapes the root."""

    code, status = "invalid_path", 400


class InvalidArgument(PydfsError, ValueError):
    """A request value out of range, such as a replication factor of zero."""

    code, status = "invalid_argument", 400


class InsufficientNodes(PydfsError):
    """Not enough live data nodes to place a block (none at all, or all excluded)."""

    code, status = "insufficient_nodes", 503


class NoSpace(PydfsError, OSError):
    """A data node's disk (or its configured capacity) is full."""

    code, status = "no_space", 507

    def __init__(self, message: str = "") -> None:
        PydfsError.__init__(self, message)
        self.errno = errno.ENOSPC


class Conflict(PydfsError):
    """The state changed under the request: an upload expired, a file was replaced mid-read."""

    code, status = "conflict", 409


class AnswerLost(Conflict):
    """A request sent again was applied by an earlier attempt, whose name node stopped before
    it recorded the answer: the change is there, its answer is not. Never retried."""

    code, status = "answer_lost", 409


class ChecksumMismatch(PydfsError):
    """Bytes did not match their CRC32C; the reader moves on to the next replica."""

    code, status = "checksum_mismatch", 422


class LimitExceeded(PydfsError):
    """The caller holds as much of something as one user may (open uploads, say)."""

    code, status = "limit_exceeded", 429


class NotLeader(PydfsError):
    """This name node does not lead the background work (any more): a change only the leader
    may make was dropped (``namenode.leadership``). Never sent to a client."""

    code, status = "not_leader", 503


class Unavailable(PydfsError, ConnectionError):
    """A node could not be reached, or answered that it cannot serve now. Only these are retried."""

    code, status = "unavailable", 503


class Timeout(Unavailable, TimeoutError):
    """A node did not answer in time."""

    code, status = "timeout", 504


class ProtocolError(PydfsError):
    """A request or response that does not follow the wire format (bad body, unknown version)."""

    code, status = "protocol_error", 400


class InternalError(PydfsError):
    """A bug on the server; its log has the details, the wire never carries a traceback."""

    code, status = "internal", 500


_BY_CODE: dict[str, type[PydfsError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        AlreadyExists,
        NotADirectory,
        IsADirectory,
        DirectoryNotEmpty,
        PermissionDenied,
        Unauthenticated,
        InvalidPath,
        InvalidArgument,
        InsufficientNodes,
        NoSpace,
        Conflict,
        AnswerLost,
        NotLeader,
        ChecksumMismatch,
        LimitExceeded,
        Unavailable,
        Timeout,
        ProtocolError,
        InternalError,
    )
}


def from_code(code: str, message: str) -> PydfsError:
    """Rebuild the exception a server raised from its error body."""
    return _BY_CODE.get(code, PydfsError)(message)

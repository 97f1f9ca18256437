import errno

import pytest

from pydfs import errors
from pydfs.errors import PydfsError

EXPECTED = [
    (errors.NotFound, FileNotFoundError, "not_found", 404),
    (errors.AlreadyExists, FileExistsError, "already_exists", 409),
    (errors.NotADirectory, NotADirectoryError, "not_a_directory", 409),
    (errors.IsADirectory, IsADirectoryError, "is_a_directory", 409),
    (errors.DirectoryNotEmpty, OSError, "directory_not_empty", 409),
    (errors.PermissionDenied, PermissionError, "permission_denied", 403),
    (errors.Unauthenticated, PermissionError, "unauthenticated", 401),
    (errors.InvalidPath, ValueError, "invalid_path", 400),
    (errors.InvalidArgument, ValueError, "invalid_argument", 400),
    (errors.InsufficientNodes, PydfsError, "insufficient_nodes", 503),
    (errors.NoSpace, OSError, "no_space", 507),
    (errors.Conflict, PydfsError, "conflict", 409),
    (errors.AnswerLost, errors.Conflict, "answer_lost", 409),
    (errors.ChecksumMismatch, PydfsError, "checksum_mismatch", 422),
    (errors.LimitExceeded, PydfsError, "limit_exceeded", 429),
    (errors.NotLeader, errors.PydfsError, "not_leader", 503),
    (errors.Unavailable, ConnectionError, "unavailable", 503),
    (errors.Timeout, TimeoutError, "timeout", 504),
    (errors.ProtocolError, PydfsError, "protocol_error", 400),
    (errors.InternalError, PydfsError, "internal", 500),
]


@pytest.mark.parametrize(("cls", "builtin", "code", "status"), EXPECTED)
def test_class_bases_code_and_status(cls, builtin, code, status):
    exc = cls("boom")
    assert isinstance(exc, PydfsError)
    assert isinstance(exc, builtin)
    assert (cls.code, cls.status) == (code, status)
    assert exc.message == "boom"


@pytest.mark.parametrize(("cls", "builtin", "code", "status"), EXPECTED)
def test_from_code_round_trip(cls, builtin, code, status):
    exc = errors.from_code(cls.code, "detail")
    assert type(exc) is cls
    assert exc.message == "detail"


def test_every_error_class_is_covered():
    defined = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, PydfsError) and obj is not PydfsError
    }
    assert defined == {row[0] for row in EXPECTED}
    assert len({row[2] for row in EXPECTED}) == len(EXPECTED)  # codes are unique


def test_unknown_code_gives_base_error():
    exc = errors.from_code("no_such_code", "something new")
    assert type(exc) is PydfsError
    assert exc.message == "something new"


def test_timeout_is_unavailable_so_it_is_retried():
    assert issubclass(errors.Timeout, errors.Unavailable)


def test_errno_of_os_errors():
    assert errors.DirectoryNotEmpty("x").errno == errno.ENOTEMPTY
    assert errors.NoSpace("x").errno == errno.ENOSPC


def test_default_message_is_the_code_in_words():
    assert str(errors.NotFound()) == "not found"
    assert errors.InsufficientNodes().message == "insufficient nodes"

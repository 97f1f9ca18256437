"""User names: what may be one, and what a database from before the reservation loses."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.namenode.parts import Blocking

from pydfs.errors import InvalidArgument, NotFound, Unauthenticated
from pydfs.namenode.auth import RESERVED, SYSTEM, User, Users, validate_user_name
from pydfs.namenode.store.sqlite import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "ns.sqlite3")
    yield store
    store.close()


@pytest.fixture
def open_users(store, loop):
    return lambda: Blocking(Users(store), loop)


def exists(users, name):
    try:
        users.get(name)
    except NotFound:
        return False
    return True


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_reserved_names_are_no_users_or_groups(open_users, name):
    users = open_users()
    with pytest.raises(InvalidArgument, match="reserved"):
        users.add(name, admin=False, groups=[])
    with pytest.raises(InvalidArgument, match="reserved"):
        users.add("eve", admin=False, groups=[name])
    assert not exists(users, name) and not exists(users, "eve")


@pytest.mark.parametrize(
    "name", ["", "-x", ".x", "a b", "a/b", "a:b", "\u0430dmin", "caf\u00e9", "x" * 65, "a\u009bb"]
)
def test_user_names_are_portable_ascii(name):
    with pytest.raises(InvalidArgument):
        validate_user_name(name)


def test_a_reserved_user_from_before_is_removed_at_start(store, open_users, caplog):
    users = open_users()
    token = users.add("alice", admin=False, groups=["staff"])
    with store.transaction() as db:  # as an older pydfs let an admin do
        db.execute(
            "INSERT INTO users (name, token_hash, admin, groups, ctime) VALUES (?, 'h', 0, '', 0)",
            (SYSTEM,),
        )
        db.execute("UPDATE users SET groups = 'staff,root' WHERE name = 'alice'")
    with caplog.at_level(logging.WARNING, "pydfs.namenode"):
        users = open_users()
        users.drop_reserved()  # as a name node does at start
    assert not exists(users, SYSTEM)
    assert f"removed user '{SYSTEM}'" in caplog.text
    assert users.authenticate(token).groups == frozenset({"staff"})
    with pytest.raises(Unauthenticated):
        users.authenticate("h")
    rows = store.db.execute("SELECT name, groups FROM users").fetchall()
    assert rows == [("alice", "staff")]


def test_a_token_is_known_a_second_and_a_change_here_forgets_it(store, loop):
    """A token looked up is known without the store for a second; revoked through this name
    node it stops at once, through another one sharing the store within that second."""
    now = [100.0]
    here = Blocking(Users(store, clock=lambda: now[0]), loop)
    there = Blocking(Users(store), loop)  # another name node on the same store
    token = here.add("alice", admin=False, groups=[])
    assert here.known(token) is None  # never looked up yet
    assert here.authenticate(token).name == "alice"
    assert here.known(token) == User("alice")
    there.reset_token("alice")
    assert here.known(token) == User("alice")  # another node's change: seen within a second
    now[0] += 1.0
    assert here.known(token) is None
    with pytest.raises(Unauthenticated):
        here.authenticate(token)
    token = here.reset_token("alice")
    here.authenticate(token)
    here.remove("alice")
    assert here.known(token) is None  # this node's change: at once
    with pytest.raises(Unauthenticated):
        here.authenticate(token)

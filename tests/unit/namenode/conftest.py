import pytest

from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.store import Store

BLOCK_SIZE = 64 * 1024


@pytest.fixture
def open_ns(tmp_path):
    """Open (or reopen) the namespace kept in one SQLite file; everything opened is closed."""
    stores = []

    def open_() -> Namespace:
        store = Store(tmp_path / "ns.sqlite3")
        stores.append(store)
        return Namespace(
            store, Membership(store, dead_after=30), replication=2, block_size=BLOCK_SIZE
        )

    yield open_
    for store in stores:
        store.close()


@pytest.fixture
def ns(open_ns):
    return open_ns()

import pytest

from pydfs import wire
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.store import Store

BLOCK_SIZE = 64 * 1024


def open_namespace(path):
    store = Store(path)
    membership = Membership(store, dead_after=30)
    return Namespace(store, membership, replication=2, block_size=BLOCK_SIZE)


@pytest.fixture
def ns(tmp_path):
    namespace = open_namespace(tmp_path / "ns.sqlite3")
    yield namespace
    namespace.store.close()


def heartbeat(membership, node_id, free=10 * 1024 * 1024):
    membership.heartbeat(
        wire.Heartbeat(
            id=node_id, url=f"http://{node_id}.test", capacity=free, used=0, free=free, blocks=0
        )
    )

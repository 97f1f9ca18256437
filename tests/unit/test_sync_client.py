"""The blocking SDK's own event loop."""

from __future__ import annotations

import pytest

from pydfs.client.sync import Client


def test_the_blocking_client_runs_its_loop_on_uvloop_where_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    client = Client("http://127.0.0.1:9")  # nothing is asked of it: no connection is made
    try:
        assert isinstance(client._loop, uvloop.Loop)
    finally:
        client.close()
    assert client._loop.is_closed()

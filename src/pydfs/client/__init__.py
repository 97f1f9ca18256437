"""The pydfs SDK: ``AsyncClient`` is the implementation, ``Client`` its blocking facade."""

from typing import TYPE_CHECKING, Any

from pydfs.client.aio import AsyncClient

if TYPE_CHECKING:
    from pydfs.client.sync import Client

__all__ = ["AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    # The facade runs an event loop thread: a CLI command, which uses AsyncClient, never needs it.
    if name == "Client":
        from pydfs.client.sync import Client

        return Client
    raise AttributeError(f"module 'pydfs.client' has no attribute {name!r}")

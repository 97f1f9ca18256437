"""The pydfs SDK: ``AsyncClient`` is the implementation, ``Client`` its blocking facade."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydfs.client.aio import AsyncClient
    from pydfs.client.sync import Client

__all__ = ["AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    # Imported when first asked for, so that the modules below the client (``blocks``,
    # ``transfer``, ``files``) load without it; the facade runs an event loop thread, which a
    # CLI command (it uses AsyncClient) never needs.
    if name == "AsyncClient":
        from pydfs.client.aio import AsyncClient

        return AsyncClient
    if name == "Client":
        from pydfs.client.sync import Client

        return Client
    raise AttributeError(f"module 'pydfs.client' has no attribute {name!r}")

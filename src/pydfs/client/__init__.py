"""The pydfs SDK: ``AsyncClient`` is the implementation, ``Client`` its blocking facade."""

from pydfs.client.aio import AsyncClient
from pydfs.client.sync import Client

__all__ = ["AsyncClient", "Client"]

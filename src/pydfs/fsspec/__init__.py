"""``pydfs://`` for fsspec, and through it for pandas, pyarrow, dask and friends.

``PydfsFileSystem`` is an ``AsyncFileSystem`` over ``AsyncClient``: fsspec's
``mirror_sync_methods`` gives it the blocking API. URLs are ``pydfs://host:port/path``, where
the name node answers at ``http://host:port``, or ``pydfs://host1:port1,host2:port2/path`` for a
cluster of several name nodes (calls fail over from one to the next); ``pydfs:///path`` (or a
bare ``/path``) uses the ``namenode=`` storage option (a URL, ``"URL1,URL2"`` or a list; the
only way to name HTTPS name nodes), else the client's configuration (``PYDFS_NAMENODE``,
client.toml).

Copies and moves happen on the name node: a copy shares the source's immutable blocks and a
move is one atomic rename, so no file bytes pass through this process. Writes stream into an
upload that commits when the file is closed; a write that fails, or a ``with`` block left by an
exception, leaves nothing behind (nor disturbs what was there). Errors are pydfs errors, which
are also the matching built-ins (``FileNotFoundError``, ``FileExistsError``, ...).
"""

from pydfs.fsspec.files import PydfsFile
from pydfs.fsspec.filesystem import PydfsFileSystem

__all__ = ["PydfsFile", "PydfsFileSystem"]

"""Finding a backend's numbered migrations (``<backend>/migrations/NNNN_name.sql``) and which of
them a store still needs; each backend applies them in its own dialect and records the version
its own way."""

from __future__ import annotations

from importlib import resources

from pydfs.errors import InternalError


def pending(package: str, current: int) -> list[tuple[int, str]]:
    """The migrations of *package* newer than *current*, oldest first, as (version, SQL); an
    error if the store's schema is newer than this pydfs knows."""
    found = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    found.sort()
    newest = found[-1][0] if found else 0
    if current > newest:
        raise InternalError(
            f"metadata schema version {current} is newer than this pydfs ({newest})"
        )
    return [(version, sql) for version, sql in found if version > current]

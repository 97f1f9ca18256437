"""DFS path normalisation and validation, shared by every role.

A stored path is absolute, has no empty, ``.`` or ``..`` component, no NUL or control character,
names of at most 255 UTF-8 bytes and a total of at most 4,096 bytes. ``..`` resolves lexically,
and never above the root.
"""

from __future__ import annotations

from pydfs.errors import InvalidPath

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
ROOT = "/"


def validate_name(name: str) -> str:
    """Check one path component as it will be stored."""
    if name in ("", ".", ".."):
        raise InvalidPath(f"invalid name {name!r}")
    if "/" in name:
        raise InvalidPath(f"invalid name {name!r}: contains '/'")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidPath(f"invalid name {name!r}: contains a control character")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidPath(f"invalid name {name!r}: not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise InvalidPath(f"name longer than {MAX_NAME_BYTES} bytes: {name[:40]!r}...")
    return name


def normalize(path: str, cwd: str = ROOT) -> str:
    """Resolve *path* against *cwd* into a validated absolute path.

    ``...`` is accepted as ``..``: the course design that pydfs grew from spelled "up" that way.
    """
    if not isinstance(path, str) or path == "":
        raise InvalidPath("empty path")
    parts: list[str] = [] if path.startswith("/") else split(cwd)
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part in ("..", "..."):
            if parts:
                parts.pop()
            continue
        parts.append(validate_name(part))
    result = "/" + "/".join(parts)
    if len(result.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path longer than {MAX_PATH_BYTES} bytes")
    return result


def split(path: str) -> list[str]:
    """Components of an already normalised absolute path (``[]`` for the root)."""
    return [p for p in path.split("/") if p]


def parent(path: str) -> str:
    parts = split(path)
    return "/" + "/".join(parts[:-1])


def basename(path: str) -> str:
    parts = split(path)
    return parts[-1] if parts else ""


def join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + validate_name(name)


def is_within(path: str, ancestor: str) -> bool:
    """True if *path* is *ancestor* or lies below it."""
    return ancestor == ROOT or path == ancestor or path.startswith(ancestor + "/")

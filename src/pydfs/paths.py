"""DFS path normalisation and validation, shared by every role.

A stored path is absolute, has no empty, ``.`` or ``..`` component, no control character (C0,
DEL or C1: none can fake a line or a terminal sequence in a listing), names of at most 255 UTF-8
bytes and a total of at most 4,096 bytes. ``..`` resolves lexically, and never above the root.
Names are Unicode in NFC: "café" typed with a combining accent (NFD, as macOS spells it) names the
same entry as the precomposed one, never a second entry that looks the same. A path written with a
trailing ``/`` names a directory (``names_directory``): the name node makes no file there.
"""

from __future__ import annotations

import re
import unicodedata

from pydfs.errors import InvalidPath

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
ROOT = "/"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Marks that reorder the text around them: a name holding U+202E ("right-to-left override")
# shows as another name ("report\u202excod.exe" reads "reportexe.doc"), as in Trojan Source.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def validate_name(name: str) -> str:
    """Check one path component; returns it as it will be stored (in NFC)."""
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, such as undecodable bytes in argv
            raise InvalidPath(f"invalid name {name!r}: not valid UTF-8") from None
        name = unicodedata.normalize("NFC", name)
    if name in ("", ".", ".."):
        raise InvalidPath(f"invalid name {name!r}")
    if "/" in name:
        raise InvalidPath(f"invalid name {name!r}: contains '/'")
    if _CONTROL.search(name):
        raise InvalidPath(f"invalid name {name!r}: contains a control character")
    if _BIDI.search(name):
        raise InvalidPath(f"invalid name {name!r}: contains a text direction mark")
    size = len(name.encode("utf-8"))
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


_MAGIC = re.compile(r"[*?[]")


def has_magic(pattern: str) -> bool:
    """Does *pattern* hold ``*``, ``?`` or ``[``, so that a glob would expand it?"""
    return _MAGIC.search(pattern) is not None


def names_directory(path: str) -> bool:
    """Was *path*, as written, a directory's name (``d/``, ``d/.``, ``d/..``)? A file cannot be
    made there, as ``open(2)`` and coreutils refuse."""
    return path.rsplit("/", 1)[-1] in ("", ".", "..", "...")


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

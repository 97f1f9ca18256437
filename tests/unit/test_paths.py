import pytest

from pydfs import paths
from pydfs.errors import InvalidPath


@pytest.mark.parametrize(
    ("path", "cwd", "expected"),
    [
        ("/", "/", "/"),
        ("/a/b", "/", "/a/b"),
        ("a/b", "/x", "/x/a/b"),
        ("b", "/x/y", "/x/y/b"),
        ("//a///b/", "/", "/a/b"),
        ("./a/./b/.", "/", "/a/b"),
        ("..", "/x/y", "/x"),
        ("../z", "/x/y", "/x/z"),
        ("...", "/x/y", "/x"),
        (".../.../z", "/x/y", "/z"),
        ("/a/../b", "/x", "/b"),
        ("....", "/", "/...."),
        ("naïve ☃", "/", "/naïve ☃"),
    ],
)
def test_normalize(path, cwd, expected):
    assert paths.normalize(path, cwd) == expected


@pytest.mark.parametrize("path", ["..", "../../..", "/../a/..", "/..."])
def test_normalize_never_goes_above_root(path):
    assert paths.normalize(path, "/") == "/"
    assert paths.normalize(path + "/x", "/") == "/x"


@pytest.mark.parametrize("bad", ["", "/a\x00b", "a\nb", "/x/\x1f", "/del\x7f", "/\udc80"])
def test_normalize_rejects(bad):
    with pytest.raises(InvalidPath):
        paths.normalize(bad)


def test_name_length_limit_counts_utf8_bytes():
    assert paths.normalize("/" + "a" * 255) == "/" + "a" * 255
    with pytest.raises(InvalidPath):
        paths.normalize("/" + "a" * 256)
    # 128 two-byte characters: 128 characters but 256 bytes.
    with pytest.raises(InvalidPath):
        paths.normalize("/" + "é" * 128)


def test_path_length_limit():
    name = "a" * 200
    fits = "".join("/" + name for _ in range(20))  # 20 * 201 = 4020 bytes
    assert paths.normalize(fits) == fits
    with pytest.raises(InvalidPath):
        paths.normalize(fits + "/" + "b" * 80)  # 4101 bytes


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\x00"])
def test_validate_name_rejects(bad):
    with pytest.raises(InvalidPath):
        paths.validate_name(bad)


def test_join_parent_basename_split():
    assert paths.join("/", "a") == "/a"
    assert paths.join("/a/b", "c") == "/a/b/c"
    with pytest.raises(InvalidPath):
        paths.join("/a", "..")
    assert paths.parent("/a/b/c") == "/a/b"
    assert paths.parent("/a") == "/"
    assert paths.parent("/") == "/"
    assert paths.basename("/a/b.txt") == "b.txt"
    assert paths.basename("/") == ""
    assert paths.split("/") == []
    assert paths.split("/a/b") == ["a", "b"]


@pytest.mark.parametrize(
    ("path", "ancestor", "expected"),
    [
        ("/a", "/", True),
        ("/", "/", True),
        ("/a", "/a", True),
        ("/a/b/c", "/a", True),
        ("/ab", "/a", False),
        ("/a", "/a/b", False),
        ("/b/a", "/a", False),
    ],
)
def test_is_within(path, ancestor, expected):
    assert paths.is_within(path, ancestor) is expected

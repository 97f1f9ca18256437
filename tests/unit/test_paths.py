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


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "a/b", "a\x00", "report\u202excod.exe", "a\u2066b", "x\u200fy"]
)
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


@pytest.mark.parametrize("bad", ["/a\u0080b", "/a\u009bb", "/a\u009f", "/\u0085"])
def test_c1_control_characters_are_refused(bad):
    with pytest.raises(InvalidPath, match="control character"):
        paths.normalize(bad)


def test_names_are_stored_in_nfc():
    nfd = "/cafe\u0301/A\u030a"
    assert paths.normalize(nfd) == "/caf\u00e9/\u00c5"
    assert paths.normalize("\u212b", "/caf\u00e9") == "/caf\u00e9/\u00c5"  # the Angstrom sign
    assert paths.join("/", "cafe\u0301") == "/caf\u00e9"
    assert paths.validate_name("ok") == "ok"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        *[("d/", True), ("/a/b/", True), ("d/.", True), ("d/..", True), ("/", True)],
        *[("d", False), ("/a/b", False), ("/a/.b", False), ("/a/b...c", False)],
    ],
)
def test_a_trailing_slash_names_a_directory(path, expected):
    assert paths.names_directory(path) is expected

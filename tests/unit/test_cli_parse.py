import argparse

import pytest

from pydfs import cli
from pydfs.cli import commands
from pydfs.cli.commands import COMMANDS, _parse_size

# Arguments that satisfy every command's required positionals.
ARGS = {
    "file_read": ["/f"],
    "file_write": ["local.bin"],
    "file_copy": ["/a", "/b"],
    "file_move": ["/a", "/b"],
    "file_create": ["/f"],
    "file_delete": ["/f"],
    "file_info": ["/f"],
    "open_directory": ["/d"],
    "make_directory": ["/d"],
    "delete_directory": ["/d"],
}


def test_the_twelve_numbered_commands():
    numbered = {c.number: c.name for c in COMMANDS if c.number is not None}
    assert sorted(numbered) == list(range(12))
    assert numbered[0] == "initialize"
    assert numbered[5] == "file_info"
    assert numbered[11] == "delete_directory"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_name_and_alias_parses(command):
    parser = cli._parser()
    for word in filter(None, [command.name, command.alias]):
        args = parser.parse_args([word, *ARGS.get(command.name, [])])
        assert args.handler is command.handler
        assert args.command == word


def test_arguments_are_parsed():
    parser = cli._parser()
    args = parser.parse_args(["put", "-r", "3", "-b", "64M", "local.bin", "/remote"])
    assert (args.local, args.path, args.replication, args.block_size) == (
        "local.bin",
        "/remote",
        3,
        64 * 1024**2,
    )
    args = parser.parse_args(["--json", "mkdir", "-p", "/a/b"])
    assert (args.json, args.parents, args.path) == (True, True, "/a/b")
    args = parser.parse_args(["cp", "/a"])
    assert (args.src, args.dst, args.force) == ("/a", None, False)


def test_server_commands_parse(tmp_path):
    parser = cli._parser()
    args = parser.parse_args(["namenode", "--data-dir", str(tmp_path), "--port", "0"])
    assert (args.data_dir, args.port) == (tmp_path, 0)
    assert callable(args.run)


def test_bad_usage_exits_with_2(capsys):
    parser = cli._parser()
    for argv in (["no_such_command"], ["put", "-b", "lots", "x"], ["mv", "/a"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        assert info.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["5", "/f"], ["file_info", "/f"]),
        (["0", "--yes"], ["initialize", "--yes"]),
        (["11", "/d"], ["delete_directory", "/d"]),
        (["--json", "9"], ["--json", "read_directory"]),
        (["12"], ["12"]),  # not a command number: left for argparse to refuse
        (["ls", "5"], ["ls", "5"]),  # only the command word is translated
        (
            ["--namenode", "http://nn:7800", "5", "/f"],
            ["--namenode", "http://nn:7800", "file_info", "/f"],
        ),
        (["--namenode", "7", "ls"], ["--namenode", "7", "ls"]),  # an option's value stays
    ],
)
def test_by_number(argv, expected):
    assert cli._by_number(argv) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("65536", 65536),
        ("64K", 64 * 1024),
        ("64k", 64 * 1024),
        ("64KB", 64 * 1024),
        ("64M", 64 * 1024**2),
        ("64MiB", 64 * 1024**2),
        ("1GiB", 1024**3),
        ("1g", 1024**3),
        (" 2M ", 2 * 1024**2),
        ("1.5K", 1536),
    ],
)
def test_parse_size(text, expected):
    assert _parse_size(text) == expected


@pytest.mark.parametrize(
    "junk", ["", "K", "lots", "64X", "64 M M", "0x10", "nan", "inf", "1e999", "-64K"]
)
def test_parse_size_rejects_junk(junk):
    with pytest.raises(argparse.ArgumentTypeError):
        _parse_size(junk)


def test_commands_module_has_a_handler_per_command():
    for c in COMMANDS:
        assert getattr(commands, c.name) is c.handler

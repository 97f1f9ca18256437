import argparse

import pytest

from pydfs import cli
from pydfs.cli import commands
from pydfs.cli.commands import COMMANDS
from pydfs.cli.transfer import _size as _parse_size

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
    "link_create": ["-s", "/target", "/link"],
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
    args = parser.parse_args(["put", "--replication", "3", "-b", "64M", "local.bin", "/remote"])
    assert (args.paths, args.replication, args.block_size, args.recursive) == (
        ["local.bin", "/remote"],
        3,
        64 * 1024**2,
        False,
    )
    args = parser.parse_args(["--json", "mkdir", "-p", "/a/b"])
    assert (args.json, args.parents, args.paths) == (True, True, ["/a/b"])
    args = parser.parse_args(["cp", "/a"])
    assert (args.paths, args.force) == (["/a"], False)
    args = parser.parse_args(["mv", "/a", "/b", "/d"])
    assert (args.sources, args.dst) == (["/a", "/b"], "/d")


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "--json", "-q", "--namenode", "http://nn:1", "--debug"],
        ["--json", "ls", "-q", "--namenode", "http://nn:1", "--debug"],
        ["--json", "-q", "--namenode", "http://nn:1", "--debug", "ls"],
        ["--namenode", "http://nn:1", "ls", "--json", "-q", "--debug"],
        ["admin", "user", "list", "--namenode=http://nn:1", "--json", "-q", "--debug"],
    ],
)
def test_global_options_before_and_after_the_command(argv):
    for parser in (cli._parser(cli._command(argv)), cli._parser()):
        args = parser.parse_args(argv)
        assert (args.namenode, args.json, args.quiet, args.debug) == (
            "http://nn:1",
            True,
            True,
            True,
        )


def test_global_options_default_and_are_kept_when_given_before():
    args = cli._parser().parse_args(["ls"])
    assert (args.namenode, args.json, args.quiet, args.debug) == (None, False, False, False)
    args = cli._parser().parse_args(["--namenode", "http://before:1", "stat", "/f"])
    assert args.namenode == "http://before:1"  # not reset by the command's own defaults


def test_login_takes_the_namenode_it_is_told_to_use():
    # `pydfs admin user add` tells a new user to run exactly this
    args = cli._parser().parse_args(["login", "--namenode", "http://nn:7800"])
    assert args.namenode == "http://nn:7800"


def test_usage_errors_are_one_line_naming_the_command(capsys):
    assert cli.main(["mv", "/a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pydfs mv: ") and "--help" in err[0]  # as typed
    assert cli.main(["lss"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pydfs: unknown command 'lss'; did you mean `ls`? (see `pydfs --help`)"]
    assert cli.main(["admin", "usr", "list"]) == 2
    assert "did you mean `user`?" in capsys.readouterr().err
    assert cli.main(["--json", "lss"]) == 2
    import json

    error = json.loads(capsys.readouterr().err)
    assert error["error"] == "usage" and error["exit"] == 2 and "`ls`" in error["message"]


def test_every_command_help_names_its_aliases_and_the_global_options(capsys):
    for word in ("ls", "9", "read_directory", "du", "put", "admin"):
        with pytest.raises(SystemExit) as info:
            cli.main([word, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "global options (before or after the command)" in out and "--json" in out
    with pytest.raises(SystemExit):
        cli.main(["ls", "--help"])
    out = capsys.readouterr().out
    assert "pydfs 9, pydfs read_directory, pydfs ls" in out and "-l " in out


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


def _words(parser):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_modules_table_names_every_other_command():
    table = {w for c in COMMANDS for w in (c.name, c.alias) if w}
    assert _words(cli._parser()) == table.union(*cli._MODULES.values())


@pytest.mark.parametrize("word", sorted(_words(cli._parser())))
def test_a_run_builds_only_its_own_command(word):
    assert word in _words(cli._parser(word))
    assert len(_words(cli._parser(word))) <= 5
    assert _words(cli._parser("no_such_command")) == _words(cli._parser())


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["ls", "/"], "ls"),
        (["--json", "-q", "--debug", "--quiet", "stat", "/f"], "stat"),
        (["--namenode", "http://nn:7800", "ls"], "ls"),
        (["--namenode=http://nn:7800", "ls"], "ls"),
        (["--namenode", "ls", "stat"], "stat"),  # an option's value is no command
        (["-h", "ls"], None),  # top-level help lists every command
        (["--help"], None),
        (["--js", "ls"], None),  # an abbreviation: argparse decides what it means
        (["-qh", "ls"], None),
        (["--", "ls"], None),
        (["--namenode"], None),
        ([], None),
    ],
)
def test_command_word(argv, command):
    assert cli._command(argv) == command


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["--json", "ls", "/d"],
        ["--namenode", "http://nn:7800", "-q", "put", "-r", "-b", "64M", "local.bin", "/r"],
        ["ls", "--json", "-l", "/d"],
        ["chown", "-R", "alice:staff", "/d"],
        ["admin", "user", "add", "bob", "--admin"],
        ["fsck", "--files"],
        ["cluster", "up", "--datanodes", "3"],
    ],
)
def test_one_command_parser_reads_a_line_as_all_of_them_do(argv):
    assert cli._parser(cli._command(argv)).parse_args(argv) == cli._parser().parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "--help"],
        ["ls", "--no-such-option"],
        ["put", "-b", "lots", "x"],
        ["mv", "/a"],
        ["--json", "chmod", "9", "/f"],
        ["admin"],
        ["--namenode", "-q", "ls"],
    ],
)
def test_one_command_parser_has_the_same_help_and_errors(argv, capsys):
    said = []
    for parser in (cli._parser(cli._command(argv)), cli._parser()):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        said.append((info.value.code, capsys.readouterr()))
    assert said[0] == said[1]


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


@pytest.mark.parametrize("argv", [["head", "-n", "-1", "f"], ["tail", "-c", "x", "f"]])
def test_counts_are_not_negative(argv, capsys):
    assert cli.main(argv) == 2
    assert "not a count" in capsys.readouterr().err

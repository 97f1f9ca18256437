import os
import stat
from pathlib import Path

import pytest

from pydfs import config
from pydfs.config import ClientConfig, DataNodeConfig, NameNodeConfig
from pydfs.errors import InvalidArgument


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("PYDFS_") or name == "XDG_CONFIG_HOME":
            monkeypatch.delenv(name)


def toml(tmp_path, text):
    path = tmp_path / "pydfs.toml"
    path.write_text(text)
    return str(path)


def test_defaults(tmp_path):
    cfg = config.load(NameNodeConfig, "namenode", {"data_dir": str(tmp_path)}, None)
    assert cfg == NameNodeConfig(data_dir=tmp_path)
    assert cfg.port == config.DEFAULT_NAMENODE_PORT
    assert isinstance(cfg.data_dir, Path)


def test_precedence_defaults_toml_env_flags(tmp_path, monkeypatch):
    path = toml(
        tmp_path,
        f'[namenode]\ndata_dir = "{tmp_path}"\nport = 1111\nreplication = 3\n'
        "block_size = 1048576\ndead_after = 9.5\n"
        '[datanode]\nport = 9999\nnamenode = "http://elsewhere"\n',
    )
    monkeypatch.setenv("PYDFS_NAMENODE_PORT", "2222")
    monkeypatch.setenv("PYDFS_NAMENODE_REPLICATION", "4")
    flags = {"port": 3333, "replication": None, "host": None}
    cfg = config.load(NameNodeConfig, "namenode", flags, path)
    assert cfg.port == 3333  # flag beats env and TOML
    assert cfg.replication == 4  # env beats TOML; a None flag is unset
    assert cfg.block_size == 1048576  # TOML beats the default
    assert cfg.dead_after == 9.5
    assert cfg.host == "127.0.0.1"  # default
    assert cfg.data_dir == tmp_path


def test_env_values_are_coerced(tmp_path, monkeypatch):
    monkeypatch.setenv("PYDFS_DATANODE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PYDFS_DATANODE_NAMENODE", "http://nn:7800")
    monkeypatch.setenv("PYDFS_DATANODE_CAPACITY", "1000")
    monkeypatch.setenv("PYDFS_DATANODE_HEARTBEAT_INTERVAL", "0.5")
    cfg = config.load(DataNodeConfig, "datanode", {}, None)
    assert cfg == DataNodeConfig(
        data_dir=tmp_path, namenode="http://nn:7800", capacity=1000, heartbeat_interval=0.5
    )


def test_unknown_option_in_toml(tmp_path):
    path = toml(tmp_path, f'[namenode]\ndata_dir = "{tmp_path}"\nreplicas = 3\n')
    with pytest.raises(InvalidArgument, match="replicas"):
        config.load(NameNodeConfig, "namenode", {}, path)


@pytest.mark.parametrize(("option", "value"), [("PORT", "http"), ("DEAD_AFTER", "soon")])
def test_non_numbers(tmp_path, monkeypatch, option, value):
    monkeypatch.setenv(f"PYDFS_NAMENODE_{option}", value)
    with pytest.raises(InvalidArgument):
        config.load(NameNodeConfig, "namenode", {"data_dir": str(tmp_path)}, None)


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_open_uploads", 0), ("upload_lifetime", 0), ("safe_mode_wait", -1)],
)
def test_limits_out_of_range(tmp_path, option, value):
    flags = {"data_dir": str(tmp_path), option: value}
    with pytest.raises(InvalidArgument, match=option):
        config.load(NameNodeConfig, "namenode", flags, None)


def test_missing_required_option_and_bad_files(tmp_path):
    with pytest.raises(InvalidArgument):
        config.load(NameNodeConfig, "namenode", {}, None)
    with pytest.raises(InvalidArgument):
        config.load(NameNodeConfig, "namenode", {}, str(tmp_path / "missing.toml"))
    with pytest.raises(InvalidArgument):
        config.load(NameNodeConfig, "namenode", {}, toml(tmp_path, "[namenode\n"))


def test_client_config_round_trip_is_private(tmp_path):
    path = tmp_path / "conf" / "client.toml"
    written = ClientConfig(namenode="http://nn:7800", user='o"brien\\x').write(path)
    assert written == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ClientConfig.read(path) == ClientConfig("http://nn:7800", 'o"brien\\x')
    ClientConfig(namenode="http://other").write(path)
    assert ClientConfig.read(path) == ClientConfig("http://other", None)
    assert [p.name for p in path.parent.iterdir()] == ["client.toml"]


def test_client_config_location(tmp_path, monkeypatch):
    assert ClientConfig.read(tmp_path / "absent.toml") == ClientConfig()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.client_config_path() == tmp_path / "xdg" / "pydfs" / "client.toml"
    monkeypatch.setenv("PYDFS_CONFIG", str(tmp_path / "explicit.toml"))
    ClientConfig(user="bob").write()
    assert (tmp_path / "explicit.toml").exists()
    assert ClientConfig.read() == ClientConfig(user="bob")


def test_unreadable_client_config(tmp_path):
    path = tmp_path / "client.toml"
    path.write_text("[client\n")
    with pytest.raises(InvalidArgument):
        ClientConfig.read(path)


def test_the_client_config_takes_several_name_nodes_and_a_failover_timeout(tmp_path):
    path = tmp_path / "client.toml"
    path.write_text('[client]\nnamenode = ["http://a:1", " http://b:2/ "]\nfailover_timeout = 45\n')
    read = ClientConfig.read(path)
    assert read.namenode == "http://a:1,http://b:2" and read.failover_timeout == 45.0
    read.write(path)  # as pydfs login rewrites it: the list is kept
    assert ClientConfig.read(path) == read
    path.write_text('[client]\nfailover_timeout = "soon"\n')
    with pytest.raises(InvalidArgument, match="failover_timeout"):
        ClientConfig.read(path)


def test_name_node_lists_resolve_from_argument_env_or_config(tmp_path, monkeypatch):
    from pydfs.client.aio import resolve_namenodes

    monkeypatch.setenv("PYDFS_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("PYDFS_NAMENODE", raising=False)
    assert resolve_namenodes("a:1, https://b:2/,") == ["http://a:1", "https://b:2"]
    assert resolve_namenodes(["http://a:1", "b:2"]) == ["http://a:1", "http://b:2"]
    monkeypatch.setenv("PYDFS_NAMENODE", "x:1,y:2")
    assert resolve_namenodes(None) == ["http://x:1", "http://y:2"]
    monkeypatch.setenv("PYDFS_NAMENODE", " , ")
    with pytest.raises(InvalidArgument, match="no name node configured"):
        resolve_namenodes(None)


def test_a_name_node_named_twice_is_kept_once_in_order():
    assert config.namenode_urls("http://b:1, http://a:1/,http://b:1/ ,http://a:1") == [
        "http://b:1",
        "http://a:1",
    ]
    assert config.namenode_urls(["http://a:1", "http://a:1/"]) == ["http://a:1"]

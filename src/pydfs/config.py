"""Typed settings per role, parsed once at start-up.

Load order: defaults < TOML file (``--config``) < ``PYDFS_<ROLE>_<OPTION>`` environment
variables (e.g. ``PYDFS_NAMENODE_PORT``) < command-line flags. Every option is documented in
``docs/pydfs.sample.toml``.

The settings are msgspec Structs, not dataclasses: every CLI command imports this module, and
making the three dataclasses cost it more than the rest of the module.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from pydfs.errors import InvalidArgument

MiB = 1024 * 1024
DEFAULT_NAMENODE_PORT = 7800

C = TypeVar("C", bound=msgspec.Struct)


class NameNodeConfig(msgspec.Struct, frozen=True):
    data_dir: Path
    metadata: str = "sqlite"  # "sqlite" (in data_dir), sqlite:///path or postgresql://...
    host: str = "127.0.0.1"
    port: int = DEFAULT_NAMENODE_PORT
    advertise: str | None = None
    replication: int = 2
    block_size: int = 64 * MiB
    dead_after: float = 60.0
    upload_lease: float = 600.0
    upload_lifetime: float = 86400.0  # seconds an upload may stay open, renewals included
    max_open_uploads: int = 256  # uploads one user may have open at once
    safe_mode_wait: float = 30.0  # seconds after start writes may wait for data nodes
    replication_interval: float = 3.0
    leader_lease: float = 10.0  # seconds a leader's lease on background work runs unrenewed
    max_copies_per_node: int = 4
    copy_timeout: float = 120.0
    umask: int = 0o022  # mode bits new files and directories do not get
    block_token_lifetime: float = 600.0  # seconds a block access token stays good
    secret_file: Path | None = None  # the cluster secret; default: <data_dir>/cluster.secret
    tls_cert: Path | None = None  # PEM certificate (chain): serve HTTPS instead of HTTP
    tls_key: Path | None = None
    tls_ca: Path | None = None  # CA bundle the web UI's own client verifies this node with
    head_timeout: float = 20.0  # seconds for a request head (from connecting or its first byte)
    body_timeout: float = 20.0  # seconds for a body, plus one per KiB received
    keepalive_timeout: float = 30.0  # seconds an idle connection is kept
    max_connections: int = 4096  # connections at once; at most half the open-file limit
    log_level: str = "INFO"
    backup_every: float = 0.0  # seconds between metadata backups kept on disk; 0: none
    backup_dir: Path | None = None  # where they are kept; default: <data_dir>/backups
    backup_keep: int = 7  # how many are kept (the oldest go)

    def __post_init__(self) -> None:
        if self.backup_every < 0 or self.backup_keep < 1:
            raise InvalidArgument("backup_every must be 0 or more, backup_keep at least 1")
        if self.max_open_uploads < 1:
            raise InvalidArgument("max_open_uploads must be at least 1")
        if self.upload_lifetime <= 0:
            raise InvalidArgument("upload_lifetime must be more than 0 seconds")
        if self.safe_mode_wait < 0:
            raise InvalidArgument("safe_mode_wait must be 0 seconds or more")
        if not 0.5 <= self.leader_lease <= 600:
            raise InvalidArgument("leader_lease must be between 0.5 and 600 seconds")


def namenode_urls(value: str | Sequence[str]) -> list[str]:
    """The name nodes of a cluster, written as one URL, a comma-separated list or a TOML list;
    each once (a data node heartbeats to each, a client fails over to each), in order."""
    items = value.split(",") if isinstance(value, str) else value
    urls = list(dict.fromkeys(u.strip().rstrip("/") for u in items if u.strip()))
    if not urls:
        raise InvalidArgument("no name node URL given")
    return urls


class DataNodeConfig(msgspec.Struct, frozen=True):
    data_dir: Path
    namenode: str | list[str]  # every name node of the cluster: it heartbeats to each
    host: str = "127.0.0.1"
    port: int = 0
    advertise: str | None = None
    capacity: int | None = None  # bytes; None: the free space of the disk
    heartbeat_interval: float = 3.0
    report_interval: float = 3600.0
    scan_rate: int = 8 * MiB  # bytes/s the background scrubber reads
    scan_interval: float = 86400.0  # seconds from the start of one full scrub to the next
    copy_bandwidth: int = 100 * MiB  # bytes/s of replication copies sent by this node
    max_copies: int = 4  # replication copies sent at once
    stall_timeout: float = 30.0  # seconds a downstream node may take no bytes before it is dropped
    secret_file: Path | None = None  # a copy of the name node's cluster.secret
    tls_cert: Path | None = None  # PEM certificate (chain): serve HTTPS instead of HTTP
    tls_key: Path | None = None
    tls_ca: Path | None = None  # CA bundle to verify the name node and peer data nodes
    head_timeout: float = 20.0  # seconds for a request head (from connecting or its first byte)
    body_timeout: float = 20.0  # seconds for a body, plus one per KiB received
    keepalive_timeout: float = 30.0  # seconds an idle connection is kept
    max_connections: int = 4096  # connections at once; at most half the open-file limit
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        namenode_urls(self.namenode)

    @property
    def namenodes(self) -> list[str]:
        return namenode_urls(self.namenode)


def load(cls: type[C], section: str, flags: Mapping[str, Any], config_file: str | None) -> C:
    """Build *cls* from the TOML ``[section]``, the environment and *flags* (None = unset)."""
    values: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                values.update(tomllib.load(f).get(section, {}))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument(f"cannot read config file {config_file}: {exc}") from None
    fields = {f.name: f for f in msgspec.structs.fields(cls)}
    for name in fields:
        env = os.environ.get(f"PYDFS_{section.upper()}_{name.upper()}")
        if env is not None:
            values[name] = env
        if flags.get(name) is not None:
            values[name] = flags[name]
    unknown = set(values) - set(fields)
    if unknown:
        raise InvalidArgument(f"unknown {section} option(s): {', '.join(sorted(unknown))}")
    try:
        return cls(**{k: _coerce(fields[k].type, v, k) for k, v in values.items()})
    except TypeError as exc:
        raise InvalidArgument(f"{section} configuration: {exc}") from None


def _coerce(annotation: Any, value: Any, name: str) -> Any:
    kinds = typing.get_args(annotation) or (annotation,)  # int | None: (int, NoneType)
    try:
        if Path in kinds:
            return Path(value).expanduser()
        if name == "umask" and isinstance(value, str):
            return int(value, 8)  # written as in a shell: 022
        if int in kinds:
            return None if value in (None, "") else int(value)
        if float in kinds:
            return float(value)
    except ValueError:
        raise InvalidArgument(f"option {name}: {value!r} is not a number") from None
    return value


# --- client configuration -----------------------------------------------------------------


def client_config_path() -> Path:
    if "PYDFS_CONFIG" in os.environ:
        return Path(os.environ["PYDFS_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pydfs" / "client.toml"


class ClientConfig(msgspec.Struct, frozen=True):
    """What ``pydfs login`` (or ``pydfs cluster up``) saves; mode 0600, as it holds a token.
    *namenode* is every name node of the cluster, comma-separated (the file may hold a TOML
    list); *failover_timeout* the seconds a call goes on trying them (``rpc.Backoff``)."""

    namenode: str | None = None
    user: str | None = None
    token: str | None = None
    ca: str | None = None  # CA bundle that verifies an HTTPS cluster
    failover_timeout: float | None = None

    @classmethod
    def read(cls, path: Path | None = None) -> ClientConfig:
        path = path or client_config_path()
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f).get("client", {})
        except FileNotFoundError:
            return cls()
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument(f"cannot read client config {path}: {exc}") from None
        namenode = data.get("namenode")
        if isinstance(namenode, list):
            namenode = ",".join(namenode_urls(namenode))
        timeout = data.get("failover_timeout")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise InvalidArgument(f"client config {path}: failover_timeout must be seconds > 0")
        return cls(namenode, data.get("user"), data.get("token"), data.get("ca"), _seconds(timeout))

    def write(self, path: Path | None = None) -> Path:
        path = path or client_config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["[client]"]
        for key in ("namenode", "user", "token", "ca"):
            value = getattr(self, key)
            if value is not None:
                lines.append(f"{key} = {_toml_str(value)}")
        if self.failover_timeout is not None:
            lines.append(f"failover_timeout = {self.failover_timeout!r}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

"""``pydfs cluster up --namenodes 2 --metadata postgres``: a PostgreSQL of the cluster's own, kept
in its directory, two name nodes that share it, and a second start that finds every file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pydfs import Client, config

START_TIMEOUT = 90.0


@contextmanager
def cluster_up(root: Path, *args: str) -> Iterator[dict[str, list[str]]]:
    """Run ``pydfs cluster up`` until it is ready; yield what it printed, by the first word of
    each line; stop it as Ctrl-C would (SIGTERM) and check that it stopped cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env["PYDFS_CONFIG"] = str(root / "client.toml")
    argv = [sys.executable, "-m", "pydfs", "cluster", "up", "--dir", str(root / "c")]
    proc = subprocess.Popen(
        [*argv, "--port", "0", "--no-check", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    printed: dict[str, list[str]] = {}
    try:
        for line in proc.stdout:  # ends at the process's exit, if it fails to start
            if line.startswith("Press Ctrl-C"):
                break
            if line.strip():
                word, *rest = line.split()
                printed.setdefault(word, []).extend(rest[:1])
        else:
            pytest.fail(f"cluster up exited {proc.wait()}: {proc.stderr.read()}")  # type: ignore[union-attr]
        yield printed
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=START_TIMEOUT)
    assert proc.returncode == 0, err
    assert "stopped; files are kept" in out


def test_two_name_nodes_on_the_clusters_own_postgresql(postgres_bin: Path, tmp_path: Path) -> None:
    postgres_dir = tmp_path / "c" / "postgres"
    try:
        with cluster_up(tmp_path, "--namenodes", "2", "--metadata", "postgres") as printed:
            first, second = printed["namenode"][0], printed["namenode-2"][0]
            assert printed["PostgreSQL"][0].startswith("postgresql://")
            saved = config.ClientConfig.read(tmp_path / "client.toml")
            assert saved.namenode == f"{first},{second}"
            with Client(first, token=saved.token) as one, Client(second, token=saved.token) as two:
                one.mkdir("/ha", parents=True)
                one.write_bytes("/ha/f", b"written through the first")
                assert two.read_bytes("/ha/f") == b"written through the first"
                two.write_bytes("/ha/g", b"and through the second")
                assert one.read_bytes("/ha/g") == b"and through the second"
        with cluster_up(tmp_path, "--namenodes", "2", "--metadata", "postgres") as printed:
            token = config.ClientConfig.read(tmp_path / "client.toml").token
            for url in (printed["namenode"][0], printed["namenode-2"][0]):
                with Client(url, token=token) as fs:
                    assert fs.read_bytes("/ha/f") == b"written through the first"
                    assert fs.read_bytes("/ha/g") == b"and through the second"
    finally:
        if postgres_dir.is_symlink():  # as root, kept where its own user may reach it
            shutil.rmtree(postgres_dir.resolve(), ignore_errors=True)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--namenodes", "2"], "several name nodes need a shared metadata database"),
        (["--namenodes", "0"], "at least one name node"),
        (["--metadata", "mysql://db"], "give sqlite, postgres, or a postgresql:// URL"),
    ],
)
def test_bad_cluster_up_arguments_are_one_line_errors(
    tmp_path: Path, args: list[str], said: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env["PYDFS_CONFIG"] = str(tmp_path / "client.toml")
    up = subprocess.run(
        [sys.executable, "-m", "pydfs", "cluster", "up", "--dir", str(tmp_path / "c"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert up.returncode != 0
    assert said in up.stderr and len(up.stderr.strip().splitlines()) == 1, up.stderr
    assert not (tmp_path / "c" / "namenode").exists()  # nothing started

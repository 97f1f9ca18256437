"""The mount against a local directory: the same random operations on both, every result and
the final trees compared (as JuiceFS's fsrand does)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from pydfs.cluster import LocalCluster
from tests.integration.test_mount import mounted

NAMES = st.sampled_from(["a", "b", "d/a", "d/c", "e", "d/e/f"])
DIRS = st.sampled_from(["d", "e", "d/e"])


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except OSError as exc:
        return "error", exc.errno


class Differential(RuleBasedStateMachine):
    local: Path
    remote: Path

    def __init__(self) -> None:
        super().__init__()
        for top in (self.local, self.remote):
            for entry in os.listdir(top):
                p = top / entry
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    def both(self, op: Callable[[Path], Any]) -> Any:
        mine = outcome(lambda: op(self.local))
        theirs = outcome(lambda: op(self.remote))
        assert mine == theirs
        return mine

    @rule(name=NAMES, data=st.binary(max_size=3000))
    def create(self, name: str, data: bytes) -> None:
        self.both(lambda top: (top / name).write_bytes(data))

    @rule(name=NAMES, offset=st.integers(0, 5000), data=st.binary(min_size=1, max_size=2000))
    def write_at(self, name: str, offset: int, data: bytes) -> None:
        def op(top: Path) -> int:
            fd = os.open(top / name, os.O_WRONLY)
            try:
                return os.pwrite(fd, data, offset)
            finally:
                os.close(fd)

        self.both(op)

    @rule(name=NAMES, data=st.binary(min_size=1, max_size=500))
    def append(self, name: str, data: bytes) -> None:
        def op(top: Path) -> None:
            with open(top / name, "ab") as f:
                f.write(data)

        self.both(op)

    @rule(name=NAMES, size=st.integers(0, 6000))
    def truncate(self, name: str, size: int) -> None:
        self.both(lambda top: os.truncate(top / name, size))

    @rule(src=NAMES | DIRS, dst=NAMES | DIRS)
    def rename(self, src: str, dst: str) -> None:
        self.both(lambda top: os.rename(top / src, top / dst))

    @rule(name=DIRS)
    def mkdir(self, name: str) -> None:
        self.both(lambda top: (top / name).mkdir())

    @rule(name=DIRS)
    def rmdir(self, name: str) -> None:
        self.both(lambda top: (top / name).rmdir())

    @rule(name=NAMES)
    def unlink(self, name: str) -> None:
        self.both(lambda top: (top / name).unlink())

    @rule(name=NAMES | DIRS, mode=st.sampled_from([0o600, 0o644, 0o755, 0o700]))
    def chmod(self, name: str, mode: int) -> None:
        self.both(lambda top: (top / name).chmod(mode))

    @rule(name=NAMES)
    def read(self, name: str) -> None:
        self.both(lambda top: (top / name).read_bytes())

    @invariant()
    def same_tree(self) -> None:
        self.both(tree)


def tree(top: Path) -> list[tuple[str, int, bytes | None]]:
    found = []
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            p = Path(root) / name
            st_ = p.stat()
            content = None if p.is_dir() else p.read_bytes()
            found.append((str(p.relative_to(top)), st_.st_mode, content))
    return sorted(found)


@pytest.fixture
def dirs(shared_cluster: LocalCluster, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    with mounted(shared_cluster, tmp_path / "m") as where:
        remote = where / "tmp" / "fsrand"
        remote.mkdir()
        local = tmp_path / "local"
        local.mkdir()
        yield local, remote


def test_mount_matches_a_local_directory(dirs: tuple[Path, Path]) -> None:
    Differential.local, Differential.remote = dirs
    run_state_machine_as_test(
        Differential,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )

"""A mixed workload from several clients while data nodes die and return at random; and the name
node killed in the middle of deletes. At the end, every acknowledged write reads back.

The chaos run prints its seed and every operation and kill; replay with PYDFS_CHAOS_SEED=<seed>
(and PYDFS_CHAOS_SECONDS to run longer). Thread timing still varies between runs, but each
worker's sequence of operations and the sequence of kills follow from the seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pydfs import Client, PydfsError
from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE, block_files, wait_healthy

pytestmark = pytest.mark.fault

ABSENT = None  # a model value: the path does not exist


class Worker:
    """One client working in its own directory, with a model of what must be there."""

    def __init__(self, n: int, url: str, rng: random.Random, log: Callable[[str], None]) -> None:
        self.n = n
        self.url = url
        self.rng = rng
        self.log = log
        self.dir = f"/chaos/w{n}"
        # path -> every content it may have: one when the last write was acknowledged, several
        # when a write failed (it may or may not have happened).
        self.model: dict[str, set[bytes | None]] = {}
        self.read_errors = 0
        self.counter = 0

    def _payload(self) -> bytes:
        size = self.rng.choice([0, 1, 1000, BLOCK_SIZE - 1, BLOCK_SIZE + 7, 2 * BLOCK_SIZE + 99])
        return self.rng.randbytes(size)

    def _names(self) -> list[str]:
        return sorted(p for p, v in self.model.items() if v != {ABSENT})

    def step(self, fs: Client) -> None:
        existing = self._names()
        op = self.rng.choice(["put", "put", "overwrite", "move", "delete", "read", "read"])
        if op in ("overwrite", "move", "delete", "read") and not existing:
            op = "put"
        if op == "put" or op == "overwrite":
            if op == "put":
                self.counter += 1
                path = f"{self.dir}/f{self.counter}"
            else:
                path = self.rng.choice(existing)
            data = self._payload()
            try:
                fs.write_bytes(path, data)
            except PydfsError as exc:
                self.log(f"w{self.n} {op} {path} ({len(data)} B) FAILED: {exc}")
                self.model[path] = self.model.get(path, {ABSENT}) | {data}
            else:
                self.log(f"w{self.n} {op} {path} ({len(data)} B) ok")
                self.model[path] = {data}
        elif op == "move":
            src = self.rng.choice(existing)
            self.counter += 1
            dst = f"{self.dir}/m{self.counter}"
            try:
                fs.move(src, dst)
            except PydfsError as exc:
                self.log(f"w{self.n} move {src} {dst} FAILED: {exc}")
                self.model[dst] = self.model[src] | {ABSENT}
                self.model[src] = self.model[src] | {ABSENT}
            else:
                self.log(f"w{self.n} move {src} {dst} ok")
                self.model[dst] = self.model[src]
                self.model[src] = {ABSENT}
        elif op == "delete":
            path = self.rng.choice(existing)
            try:
                fs.delete(path)
            except PydfsError as exc:
                self.log(f"w{self.n} delete {path} FAILED: {exc}")
                self.model[path] = self.model[path] | {ABSENT}
            else:
                self.log(f"w{self.n} delete {path} ok")
                self.model[path] = {ABSENT}
        else:
            path = self.rng.choice(existing)
            try:
                data: bytes | None = fs.read_bytes(path)
            except FileNotFoundError:
                data = ABSENT
            except PydfsError as exc:
                # A block may be briefly out of reach while both of its live copies' nodes
                # cycle; unavailable is allowed mid-chaos, wrong bytes never are.
                self.read_errors += 1
                self.log(f"w{self.n} read {path} unavailable: {exc}")
                return
            assert data in self.model[path], f"w{self.n} read {path}: content never written"
            self.log(f"w{self.n} read {path} ok")

    def verify(self, fs: Client) -> int:
        present = {e.path for e in fs.ls(self.dir)}
        for path, possible in self.model.items():
            if path in present:
                data = fs.read_bytes(path)
                assert data in possible, f"{path}: final content was never acknowledged"
            else:
                assert ABSENT in possible, f"{path}: acknowledged but gone"
        assert present <= set(self.model), f"unexpected files: {present - set(self.model)}"
        return len(present)


def test_chaos_workload_while_datanodes_die(cluster_factory: Callable[..., LocalCluster]) -> None:
    seed = int(os.environ.get("PYDFS_CHAOS_SEED", random.randrange(2**32)))
    duration = float(os.environ.get("PYDFS_CHAOS_SECONDS", "15"))
    lines: list[str] = []
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            lines.append(f"{time.monotonic() - started:7.2f} {line}")

    started = time.monotonic()
    print(f"chaos seed {seed} for {duration}s (replay: PYDFS_CHAOS_SEED={seed})")
    cluster = cluster_factory(3)
    master = random.Random(seed)
    workers = [Worker(n, cluster.url, random.Random(master.random()), log) for n in range(3)]
    chaos_rng = random.Random(master.random())
    errors: list[BaseException] = []
    deadline = time.monotonic() + duration
    with cluster.client() as fs:
        for w in workers:
            fs.mkdir(w.dir, parents=True)

    def work(worker: Worker) -> None:
        try:
            with cluster.client() as fs:
                while time.monotonic() < deadline:
                    worker.step(fs)
        except BaseException as exc:
            errors.append(exc)

    def chaos() -> None:
        # Never more than R - 1 = 1 data node down at once.
        try:
            while time.monotonic() < deadline:
                node = chaos_rng.choice(cluster.datanodes)
                log(f"chaos: SIGKILL {node.name}")
                node.kill()
                time.sleep(chaos_rng.uniform(0.3, 2.0))
                log(f"chaos: restart {node.name}")
                node.start()
                node.wait_ready()
                time.sleep(chaos_rng.uniform(0.5, 2.0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    threads.append(threading.Thread(target=chaos))
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    try:
        assert not errors, errors
        for node in cluster.datanodes:
            if not node.running:
                node.start()
                node.wait_ready()
        cluster.wait_for_registered()
        with cluster.client() as fs:
            healed = wait_healthy(cluster, fs, timeout=60)
            files = sum(w.verify(fs) for w in workers)
        ops = sum(" ok" in line or "FAILED" in line for line in lines)
        kills = sum("SIGKILL" in line for line in lines)
        print(
            f"chaos: {ops} operations, {kills} kills, {files} files verified, healthy "
            f"{healed:.1f}s after the last restart"
        )
        assert ops > 20 and kills >= 2
    except BaseException:
        print("\n".join(lines))
        raise


def _referenced_blocks(fs: Client, path: str = "/") -> set[str]:
    found: set[str] = set()
    for entry in fs.ls(path):
        if entry.type == "dir":
            found |= _referenced_blocks(fs, entry.path)
        else:
            found |= {b.id for b in fs.info(entry.path).blocks or []}
    return found


def test_namenode_killed_mid_delete_stays_consistent(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(2)
    with cluster.client() as fs:
        for d in range(4):
            fs.mkdir(f"/tree{d}/sub", parents=True)
            for i in range(10):
                fs.write_bytes(f"/tree{d}/sub/f{i}", os.urandom(BLOCK_SIZE + i))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env.update(
        PYDFS_NAMENODE=cluster.url,
        PYDFS_CONFIG=str(tmp_path / "c.toml"),
        PYDFS_TOKEN=cluster.admin_token,
    )

    def rmdir(d: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "pydfs", "rmdir", "--yes", f"/tree{d}"]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # The command as the killed runs give it works: it deletes a tree when nothing is killed.
    assert rmdir(3).communicate(timeout=60)[1] == b""
    with cluster.client() as fs:
        assert not fs.exists("/tree3")
    for d, delay in enumerate([0.0, 0.05, 0.2]):
        proc = rmdir(d)
        time.sleep(delay)
        cluster.namenode.kill()
        _, err = proc.communicate(timeout=60)
        # It finished, or lost its name node: never refused for anything else.
        assert proc.returncode == 0 or (b"token" not in err and b"permission" not in err), err
        cluster.restart_namenode()
        with cluster.client() as fs:
            try:
                names = {e.name for e in fs.ls(f"/tree{d}/sub")}
            except FileNotFoundError:
                names = set()  # the delete committed: all of it is gone
            assert names in (set(), {f"f{i}" for i in range(10)}), names
            for name in names:
                assert len(fs.read_bytes(f"/tree{d}/sub/{name}")) >= BLOCK_SIZE
    cluster.wait_for_live(2)
    with cluster.client() as fs:
        wait_healthy(cluster, fs)
        referenced = _referenced_blocks(fs)
    # Blocks of deleted files leave the disks; blocks of surviving files stay.
    cluster.wait_until(lambda: block_files(cluster) == referenced, 20, "disks match the namespace")

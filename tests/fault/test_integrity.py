"""Never a wrong byte: replica files swapped, forged, truncated and deleted on a data node's disk,
and a write token used again after its upload, against real processes.

Each replica is bound to its block end to end: the trailer names the block (a file copied over
another block's is refused), a reader compares the block CRC a data node serves with the one
the name node recorded, and the name node counts a replica only with that CRC. Every bad or
missing replica a reader meets is reported, quarantined (or forgotten) and healed; the scrubber
finds the ones no reader meets.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pydfs import Client, checksum, tokens, wire
from pydfs.checksum import BlockChecksums
from pydfs.cluster import LocalCluster, NodeProcess
from pydfs.namenode import REPORT_TRANSIT
from tests.conftest import BLOCK_SIZE, block_bytes, block_path, node_id, wait_healthy

pytestmark = pytest.mark.fault

HEAL_WITHIN = 30.0  # seconds: a bad or lost replica is replaced within this (stated bound)
SIZE = 300_000  # two blocks: 262,144 bytes and 37,856


def first_block(fs: Client, path: str) -> wire.BlockInfo:
    return (fs.info(path).blocks or [])[0]


def holder(cluster: LocalCluster, block: wire.BlockInfo, n: int = 0) -> NodeProcess:
    by_id = {node_id(node): node for node in cluster.datanodes}
    return by_id[sorted(x.id for x in block.nodes)[n]]


def reads_stay_right(cluster: LocalCluster, path: str, data: bytes, times: int = 12) -> None:
    """Fresh clients (replicas in a new random order each time) all read *data*."""
    for _ in range(times):
        with cluster.client() as fs:
            assert fs.read_bytes(path) == data


def replica_healed(
    cluster: LocalCluster, fs: Client, node: NodeProcess, block: str, data: bytes
) -> None:
    """Wait until *node* holds *block* again, whole, naming it and holding *data*, and fsck is
    clean."""

    def good() -> bool:
        try:
            with open(block_path(node, block), "rb") as f:
                sums = BlockChecksums.read(f.fileno())
                return sums.block_id == block and os.pread(f.fileno(), sums.size, 0) == data
        except (OSError, checksum.ChecksumMismatch):
            return False

    cluster.wait_until(good, HEAL_WITHIN, f"block {block} healed on {node.name}")
    wait_healthy(cluster, fs, HEAL_WITHIN)


def test_a_replica_file_swapped_for_another_blocks_is_never_served(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(2)
    a, d = os.urandom(SIZE), os.urandom(SIZE)
    with cluster.client() as fs:
        fs.write_bytes("/a", a)
        fs.write_bytes("/d", d)
        a0, d0 = first_block(fs, "/a"), first_block(fs, "/d")
        assert a0.size == d0.size
        node = holder(cluster, a0)
        shutil.copyfile(block_path(node, d0.id), block_path(node, a0.id))
        reads_stay_right(cluster, "/a", a)
        replica_healed(cluster, fs, node, a0.id, a[:BLOCK_SIZE])
        assert list((node.data_dir / "quarantine").glob(f"{a0.id}*"))


def test_a_replica_with_a_forged_trailer_is_caught_by_its_block_crc(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """Another block's bytes under a trailer that names this block and validates: only the CRC
    the name node recorded tells them apart. The replica stops counting and is replaced."""
    cluster = cluster_factory(2)
    a, d = os.urandom(SIZE), os.urandom(SIZE)
    with cluster.client() as fs:
        fs.write_bytes("/a", a)
        a0 = first_block(fs, "/a")
        node = holder(cluster, a0)
        other = d[:BLOCK_SIZE]
        chunks = [other[i : i + wire.CHUNK_SIZE] for i in range(0, BLOCK_SIZE, wire.CHUNK_SIZE)]
        forged = BlockChecksums(
            a0.id,
            wire.CHUNK_SIZE,
            BLOCK_SIZE,
            checksum.crc(other),
            [checksum.crc(c) for c in chunks],
        )
        block_path(node, a0.id).write_bytes(other + forged.trailer())
        reads_stay_right(cluster, "/a", a)
        replica_healed(cluster, fs, node, a0.id, a[:BLOCK_SIZE])


def test_a_deleted_replica_is_reported_by_its_reader_and_healed(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(2)
    a = os.urandom(SIZE)
    with cluster.client() as fs:
        fs.write_bytes("/a", a)
        a0 = first_block(fs, "/a")
        node = holder(cluster, a0)
        assert fs.fsck().status == "HEALTHY"
        block_path(node, a0.id).unlink()
        # Each fresh reader tries the replicas in a random order: 24 of them all missing the
        # deleted one is a chance of one in 2**24 (with 6 it was one in 64, and it happened).
        reads_stay_right(cluster, "/a", a, times=24)
        # The readers that met the 404 reported it: fsck no longer calls one copy healthy.
        seen_degraded = False
        deadline = time.monotonic() + HEAL_WITHIN
        while time.monotonic() < deadline and not block_path(node, a0.id).exists():
            seen_degraded |= fs.fsck().status != "HEALTHY"
            time.sleep(0.05)
        assert seen_degraded or block_path(node, a0.id).exists()
        replica_healed(cluster, fs, node, a0.id, a[:BLOCK_SIZE])


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_the_scrubber_finds_a_replica_no_reader_meets(
    cluster_factory: Callable[..., LocalCluster], damage: str
) -> None:
    cluster = cluster_factory(2, datanode_args=["--scan-interval", "1", "--scan-rate", "0"])
    a = os.urandom(SIZE)
    with cluster.client() as fs:
        fs.write_bytes("/a", a)
        a0 = first_block(fs, "/a")
        node = holder(cluster, a0)
        path = block_path(node, a0.id)
        if damage == "delete":
            time.sleep(REPORT_TRANSIT + 0.5)  # older than a block report's allowance for its trip
            path.unlink()
        else:
            os.truncate(path, 1000)
        cluster.wait_until(
            lambda: fs.fsck().status != "HEALTHY" or (path.exists() and path.stat().st_size > 1000),
            HEAL_WITHIN,
            "the damaged replica noticed",
        )
        replica_healed(cluster, fs, node, a0.id, a[:BLOCK_SIZE])
        assert fs.read_bytes("/a") == a


# --- a write token used again ----------------------------------------------------------------


def http(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def framed(data: bytes) -> bytes:
    assert len(data) <= wire.CHUNK_SIZE
    return (
        wire.FRAME.pack(len(data), checksum.crc(data))
        + data
        + wire.FRAME.pack(0, checksum.crc(data))
    )


def test_a_leftover_write_token_cannot_change_a_committed_block(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """Bob uploads, the admin copies his file (the copy shares its block); bob then PUTs other
    bytes under that block id with the grant's token, to every data node: none takes them, and
    after ``setrep 3`` and a trim back to one the copy still reads what bob first wrote."""
    cluster = cluster_factory(3)
    with cluster.client() as admin:
        bob_token = admin.add_user("bob")
    bearer = {"Authorization": f"Bearer {bob_token}", "Content-Type": "application/json"}
    original, planted = b"what bob wrote" * 100, b"what bob planted" * 100
    body = json.dumps({"path": "/tmp/m.bin", "replication": 2}).encode()
    status, grant = http("POST", f"{cluster.url}/v1/uploads", body, bearer)
    assert status == 200, grant
    block = grant["block"]
    block_id, token = block["block_id"], block["token"]
    octets = {wire.H_BLOCK_TOKEN: token, "Content-Type": "application/octet-stream"}
    stored = []
    for target in block["targets"]:
        status, ack = http("PUT", f"{target['url']}/v1/blocks/{block_id}", framed(original), octets)
        assert status == 200, ack
        stored += ack["nodes"]
    commit = {"blocks": [{"block_id": block_id, "size": len(original),
                          "crc": checksum.crc(original), "nodes": stored}]}  # fmt: skip
    status, _ = http(
        "POST", f"{cluster.url}/v1/uploads/{grant['upload_id']}/commit",
        json.dumps(commit).encode(), bearer,
    )  # fmt: skip
    assert status == 200
    with cluster.client() as admin:
        admin.copy("/tmp/m.bin", "/copy.bin")

        def plant() -> list[int]:
            return [
                http("PUT", f"{n.url}/v1/blocks/{block_id}", framed(planted), octets)[0]
                for n in cluster.datanodes
            ]

        assert all(status in (400, 401) for status in plant())  # held, or not named
        admin.setrep("/copy.bin", 3)
        wait_healthy(cluster, admin)
        assert all(status in (400, 401) for status in plant())
        admin.setrep("/copy.bin", 1)
        admin.setrep("/tmp/m.bin", 1)
        cluster.wait_until(
            lambda: sum(block_path(n, block_id).exists() for n in cluster.datanodes) == 1,
            HEAL_WITHIN,
            "the surplus replicas trimmed",
        )
        assert all(status in (400, 401) for status in plant())  # a trimmed node remembers
        admin.setrep("/copy.bin", 3)
        wait_healthy(cluster, admin)
        for _ in range(6):
            with cluster.client() as fs:
                assert fs.read_bytes("/copy.bin") == original
        for n in cluster.datanodes:
            assert block_bytes(n, block_id) == original


def test_a_write_token_works_only_on_the_nodes_its_grant_named(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(3)
    secret = (cluster.namenode.data_dir / tokens.SECRET_FILE).read_text().strip().encode()
    first, second, third = cluster.datanodes
    block_id = hashlib.md5(b"granted to two").hexdigest()
    grant = [(node_id(first), first.url), (node_id(second), second.url)]
    token = tokens.block_token(secret, block_id, "w", 600, grant)
    octets = {wire.H_BLOCK_TOKEN: token, "Content-Type": "application/octet-stream"}
    status, body = http("PUT", f"{third.url}/v1/blocks/{block_id}", framed(b"x"), octets)
    assert status == 401 and "does not name" in body["message"]
    status, body = http("PUT", f"{second.url}/v1/blocks/{block_id}", framed(b"x"), octets)
    assert status == 200 and body["nodes"] == [node_id(second)]
    assert not block_path(third, block_id).exists()


# --- on a schedule, while clients read and write -----------------------------------------------


def test_replica_files_damaged_on_a_schedule_never_give_a_reader_a_wrong_byte(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    """Every 0.3 s a replica file on some data node is swapped for another block's of the same
    size, truncated or deleted, while two clients write new files and three read every file
    back. Each block is damaged on one node at most, so one good replica always remains: every
    read must succeed with the bytes written, and once the damage stops, every block is back at
    its replication factor, each replica whole, within ``HEAL_WITHIN``."""
    seed = int(os.environ.get("PYDFS_CHAOS_SEED", random.randrange(2**32)))
    print(f"PYDFS_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    cluster = cluster_factory(3, datanode_args=["--scan-interval", "2", "--scan-rate", "0"])
    files: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []
    reads = [0]

    def writer(n: int) -> None:
        with cluster.client() as fs:
            i = 0
            while not stop.is_set():
                path, data = f"/w{n}-{i}", os.urandom(rng.choice([BLOCK_SIZE, SIZE, 5000]))
                fs.write_bytes(path, data)
                with lock:
                    files[path] = data
                i += 1
                time.sleep(0.05)

    def reader() -> None:
        with cluster.client() as fs:
            while not stop.is_set():
                with lock:
                    if not files:
                        continue
                    path = random.choice(sorted(files))
                    want = files[path]
                try:
                    got = fs.read_bytes(path)
                except Exception as exc:
                    failures.append(f"read of {path} failed: {exc}")
                    continue
                if got != want:
                    failures.append(f"{path}: wrong bytes")
                reads[0] += 1

    damaged: set[str] = set()  # block ids: a block whose every replica is damaged is lost

    def damage() -> str:
        node = rng.choice(cluster.datanodes)
        blocks = sorted((node.data_dir / "blocks").glob("*/*.blk"))
        fresh = [b for b in blocks if b.stem not in damaged]
        if not fresh:
            return "nothing"
        victim = rng.choice(fresh)
        damaged.add(victim.stem)
        kind = rng.choice(["swap", "truncate", "delete"])
        try:
            if kind == "swap":
                size = victim.stat().st_size
                same = [b for b in blocks if b != victim and b.stat().st_size == size]
                if not same:
                    return "nothing"
                shutil.copyfile(rng.choice(same), victim)
            elif kind == "truncate":
                os.truncate(victim, victim.stat().st_size // 2)
            else:
                victim.unlink()
        except FileNotFoundError:
            return "nothing"
        return kind

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    done: dict[str, int] = {}
    try:
        time.sleep(1.0)
        for _ in range(40):
            kind = damage()
            done[kind] = done.get(kind, 0) + 1
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    print(f"damage done: {done}; {reads[0]} reads; {len(files)} files")
    assert not failures, failures
    assert reads[0] > 20 and sum(v for k, v in done.items() if k != "nothing") > 20
    by_id = {node_id(node): node for node in cluster.datanodes}

    def whole(fs: Client) -> bool:
        """fsck is clean and says the truth: each block's two replicas hold its bytes."""
        report = fs.fsck()
        if report.healthy != report.blocks or report.corrupt:
            return False
        for path, data in files.items():
            offset = 0
            for block in fs.info(path).blocks or []:
                want = data[offset : offset + block.size]
                offset += block.size
                if len(block.nodes) != 2:
                    return False
                for ref in block.nodes:
                    try:
                        if block_bytes(by_id[ref.id], block.id) != want:
                            return False
                    except (OSError, checksum.ChecksumMismatch):
                        return False
        return True

    # A damaged replica is found by the next reader that meets it or by the scrubber's next
    # pass (every 2 s here), and replaced within seconds of that.
    with cluster.client() as fs:
        started = time.monotonic()
        cluster.wait_until(lambda: whole(fs), HEAL_WITHIN, "every replica whole again")
        print(f"every replica whole {time.monotonic() - started:.1f}s after the damage ended")
        for path, data in files.items():
            assert fs.read_bytes(path) == data

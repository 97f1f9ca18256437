"""The scrubber (verify, quarantine, resumable passes, rate) and the copy throttle.

Sleeps are recorded by a fake ``asyncio.sleep`` and clocks are faked, so no test waits.
"""

import asyncio
import os
from types import SimpleNamespace

import pytest

from pydfs import checksum, wire
from pydfs.checksum import BlockChecksums
from pydfs.datanode import scanner as scanner_module
from pydfs.datanode import transfer
from pydfs.datanode.blockstore import BlockStore
from pydfs.datanode.heartbeat import Heartbeats
from pydfs.datanode.scanner import Scanner
from pydfs.datanode.transfer import Throttle

CHUNK = 16


def bid(n: int) -> str:
    return f"{n:032x}"


def write_block(store, block_id, data):
    writer = store.writer(block_id, None)
    for i in range(0, len(data), CHUNK):
        chunk = data[i : i + CHUNK]
        writer.write_chunk(chunk, checksum.crc(chunk))
    return asyncio.run(writer.commit(checksum.crc(data)))


def fake_dn(tmp_path, scan_rate=0):
    """What the scanner uses of a DataNode: its store, its config and the heartbeat's news."""
    return SimpleNamespace(
        store=BlockStore(tmp_path, CHUNK),
        config=SimpleNamespace(scan_rate=scan_rate),
        heartbeats=Heartbeats(SimpleNamespace(), [SimpleNamespace()]),  # type: ignore[arg-type]
    )


@pytest.fixture
def dn(tmp_path):
    return fake_dn(tmp_path)


@pytest.fixture
def sleeps(monkeypatch):
    """Every asyncio.sleep is recorded and returns at once."""
    requested = []

    async def sleep(delay, result=None):
        requested.append(delay)
        return result

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return requested


def flip_byte(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def quarantined(store):
    return sorted(p.name for p in store.quarantine_dir.iterdir())


# --- verify ---------------------------------------------------------------------------------


def test_verify_accepts_a_good_block(dn):
    write_block(dn.store, bid(1), os.urandom(3 * CHUNK + 5))
    write_block(dn.store, bid(2), os.urandom(2 * CHUNK))
    write_block(dn.store, bid(3), b"")
    scanner = Scanner(dn)
    assert scanner.verify(bid(1)) is not None
    assert scanner.verify(bid(2)) is not None
    assert scanner.verify(bid(3)) is not None


@pytest.mark.parametrize("offset", [0, CHUNK + 3, 3 * CHUNK + 4])
def test_verify_rejects_a_flipped_byte(dn, offset):
    write_block(dn.store, bid(1), os.urandom(3 * CHUNK + 5))
    flip_byte(dn.store.path(bid(1)), offset)
    assert Scanner(dn).verify(bid(1)) is None


@pytest.mark.parametrize("keep", [0, CHUNK, 3 * CHUNK + 4, 3 * CHUNK + 5, -1])
def test_verify_rejects_a_truncated_block(dn, keep):
    write_block(dn.store, bid(1), os.urandom(3 * CHUNK + 5))
    path = dn.store.path(bid(1))
    path.write_bytes(path.read_bytes()[:keep])
    assert Scanner(dn).verify(bid(1)) is None


def test_verify_rejects_a_block_that_grew(dn):
    write_block(dn.store, bid(1), os.urandom(2 * CHUNK))
    with open(dn.store.path(bid(1)), "ab") as f:
        f.write(b"x")
    assert Scanner(dn).verify(bid(1)) is None


def test_verify_rejects_a_damaged_trailer(dn):
    data = os.urandom(3 * CHUNK + 5)
    sums = write_block(dn.store, bid(1), data)
    path = dn.store.path(bid(1))
    scanner = Scanner(dn)

    path.write_bytes(data + b"garbage")
    assert scanner.verify(bid(1)) is None
    path.write_bytes(data + sums.trailer()[4:])  # a chunk CRC short
    assert scanner.verify(bid(1)) is None
    path.write_bytes(data + sums.trailer())
    for at in range(len(sums.trailer())):  # any bit of the trailer wrong
        flip_byte(path, len(data) + at)
        assert scanner.verify(bid(1)) is None, at
        flip_byte(path, len(data) + at)
    wrong_block_crc = BlockChecksums(
        sums.block_id, sums.chunk_size, sums.size, sums.crc ^ 1, sums.chunk_crcs
    )
    path.write_bytes(data + wrong_block_crc.trailer())  # a footer that validates, but wrong
    assert scanner.verify(bid(1)) is None

    path.write_bytes(data + sums.trailer())
    assert scanner.verify(bid(1)) is not None


def test_a_block_whose_trailer_is_garbled_is_quarantined_and_reported(dn):
    # What a lost sidecar was in the first format: the replica can be neither verified nor
    # served, so it is bad (not a deletion in progress).
    data = os.urandom(CHUNK)
    write_block(dn.store, bid(1), data)
    path = dn.store.path(bid(1))
    path.write_bytes(path.read_bytes()[:-8] + b"\xff" * 8)
    assert Scanner(dn).verify(bid(1)) is None
    assert asyncio.run(Scanner(dn).verify_and_report(bid(1))) is False
    assert dn.heartbeats.links[0].corrupt == [bid(1)]
    assert not dn.store.exists(bid(1))
    assert quarantined(dn.store) == [f"{bid(1)}.blk"]
    assert (dn.store.count, dn.store.used) == (0, 0)


def test_verify_of_a_block_deleted_meanwhile_is_not_a_failure(dn):
    assert asyncio.run(Scanner(dn).verify_and_report(bid(1))) is True
    assert dn.heartbeats.links[0].corrupt == []


def test_a_replica_missing_when_the_name_node_asks_is_reported_lost(dn):
    assert asyncio.run(Scanner(dn).verify_and_report(bid(1), ordered=True)) is False
    assert dn.heartbeats.links[0].corrupt == [bid(1)]


def test_a_replica_found_good_when_the_name_node_asks_is_reported_with_its_crc(dn):
    data = os.urandom(2 * CHUNK + 1)
    write_block(dn.store, bid(1), data)
    assert asyncio.run(Scanner(dn).verify_and_report(bid(1), ordered=True)) is True
    assert dn.heartbeats.links[0].received == [
        wire.Received(bid(1), len(data), checksum.crc(data), "v")
    ]
    assert dn.heartbeats.links[0].corrupt == []


def test_a_block_file_swapped_for_another_blocks_is_quarantined(dn):
    """Same size, same valid trailer, but it names the other block (a file copied over)."""
    data, other = os.urandom(2 * CHUNK), os.urandom(2 * CHUNK)
    write_block(dn.store, bid(1), data)
    write_block(dn.store, bid(2), other)
    dn.store.path(bid(1)).write_bytes(dn.store.path(bid(2)).read_bytes())
    assert asyncio.run(Scanner(dn).verify_and_report(bid(1))) is False
    assert dn.heartbeats.links[0].corrupt == [bid(1)]
    assert not dn.store.exists(bid(1)) and dn.store.exists(bid(2))


# --- verify_and_report ----------------------------------------------------------------------


def test_verify_and_report_quarantines_a_bad_replica(dn):
    data = os.urandom(2 * CHUNK)
    write_block(dn.store, bid(1), data)
    write_block(dn.store, bid(2), data)
    flip_byte(dn.store.path(bid(1)), 1)
    scanner = Scanner(dn)
    assert asyncio.run(scanner.verify_and_report(bid(2))) is True
    assert dn.heartbeats.links[0].corrupt == []

    assert asyncio.run(scanner.verify_and_report(bid(1))) is False
    assert not dn.store.exists(bid(1))
    assert quarantined(dn.store) == [f"{bid(1)}.blk"]
    assert dn.heartbeats.links[0].corrupt == [bid(1)]
    assert scanner.corrupt_found == 1
    assert (dn.store.count, dn.store.used) == (1, dn.store.path(bid(2)).stat().st_size)
    assert dn.store.exists(bid(2))


# --- run_once -------------------------------------------------------------------------------


def test_run_once_quarantines_the_bad_and_keeps_the_good(dn):
    for n in range(1, 6):
        write_block(dn.store, bid(n), os.urandom(CHUNK * n))
    flip_byte(dn.store.path(bid(2)), 0)
    path = dn.store.path(bid(4))
    path.write_bytes(path.read_bytes()[:-1])
    scanner = Scanner(dn)
    assert asyncio.run(scanner.run_once()) == 2
    assert scanner.verified == 5
    assert sorted(dn.heartbeats.links[0].corrupt) == [bid(2), bid(4)]
    assert sorted(dn.store.list()) == [bid(1), bid(3), bid(5)]
    assert quarantined(dn.store) == [f"{bid(2)}.blk", f"{bid(4)}.blk"]
    assert not scanner.cursor_file.exists()  # the pass completed

    assert asyncio.run(scanner.run_once()) == 0  # nothing left to find
    assert scanner.verified == 8
    assert len(dn.heartbeats.links[0].corrupt) == 2


def test_run_once_resumes_after_the_cursor(dn):
    for n in range(1, 5):
        write_block(dn.store, bid(n), os.urandom(CHUNK))
    flip_byte(dn.store.path(bid(1)), 0)  # before the cursor: not reached by this pass
    flip_byte(dn.store.path(bid(4)), 0)
    scanner = Scanner(dn)
    scanner.cursor_file.write_text(bid(2) + "\n")
    assert asyncio.run(scanner.run_once()) == 1
    assert scanner.verified == 2  # bid(3) and bid(4)
    assert dn.heartbeats.links[0].corrupt == [bid(4)]
    assert dn.store.exists(bid(1))
    assert not scanner.cursor_file.exists()

    assert asyncio.run(scanner.run_once()) == 1  # the next pass starts over
    assert dn.heartbeats.links[0].corrupt == [bid(4), bid(1)]


class Interrupted(Exception):
    pass


def test_an_interrupted_pass_resumes_after_the_last_verified_block(tmp_path, monkeypatch):
    dn = fake_dn(tmp_path, scan_rate=1024)
    for n in range(1, 5):
        write_block(dn.store, bid(n), os.urandom(CHUNK))
    calls = []

    async def sleep_then_crash(delay, result=None):
        calls.append(delay)
        if len(calls) == 2:
            raise Interrupted  # the process stops during the pass

    monkeypatch.setattr(asyncio, "sleep", sleep_then_crash)
    with pytest.raises(Interrupted):
        asyncio.run(Scanner(dn).run_once())
    assert (tmp_path / "scanner.cursor").read_text() == bid(2)

    dn.config.scan_rate = 0
    scanner = Scanner(dn)  # a restarted node
    assert asyncio.run(scanner.run_once()) == 0
    assert scanner.verified == 2  # bid(3) and bid(4) only
    assert not scanner.cursor_file.exists()


def test_run_once_on_an_empty_store(dn, sleeps):
    scanner = Scanner(dn)
    assert asyncio.run(scanner.run_once()) == 0
    assert scanner.verified == 0
    assert sleeps == []
    assert not scanner.cursor_file.exists()


def test_scan_rate_zero_is_unthrottled(dn, sleeps):
    for n in range(1, 4):
        write_block(dn.store, bid(n), os.urandom(4 * CHUNK))
    assert asyncio.run(Scanner(dn).run_once()) == 0
    assert sleeps == []


def test_scan_rate_paces_the_pass_by_block_file_size(tmp_path, sleeps, monkeypatch):
    dn = fake_dn(tmp_path, scan_rate=32)  # bytes per second
    sizes = [CHUNK, 4 * CHUNK, 2 * CHUNK + 3]
    for n, size in enumerate(sizes, 1):
        write_block(dn.store, bid(n), os.urandom(size))
    monkeypatch.setattr(scanner_module, "time", SimpleNamespace(monotonic=lambda: 100.0))
    assert asyncio.run(Scanner(dn).run_once()) == 0
    # The bytes read: the block's and its trailer's (4 per chunk, and the 48-byte footer).
    assert sleeps == [(size + 4 * -(-size // CHUNK) + 48) / 32 for size in sizes]


def test_scan_rate_counts_the_time_verifying_took(tmp_path, sleeps, monkeypatch):
    dn = fake_dn(tmp_path, scan_rate=32)
    write_block(dn.store, bid(1), os.urandom(CHUNK + 8))  # 24 + 2*4 + 48 B: 2.5 s worth
    write_block(dn.store, bid(2), os.urandom(CHUNK))  # 16 + 4 + 48 B: 2.125 s worth
    ticks = iter([0.0, 0.5, 10.0, 13.0])  # verifying bid(1) took 0.5 s, bid(2) took 3 s
    monkeypatch.setattr(scanner_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    asyncio.run(Scanner(dn).run_once())
    assert sleeps == [2.0, 0.0]


# --- Throttle -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, sleeps):
    """The throttle's clock, advanced by every (fake) sleep."""
    fake = FakeClock()
    monkeypatch.setattr(transfer, "time", fake)

    async def sleep(delay, result=None):
        sleeps.append(delay)
        fake.now += delay
        return result

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return fake


def test_throttle_rate_zero_never_sleeps(clock, sleeps):
    throttle = Throttle(0)

    async def main():
        for _ in range(100):
            await throttle.take(10**9)

    asyncio.run(main())
    assert sleeps == []


def test_throttle_lets_a_burst_of_one_second_through(clock, sleeps):
    throttle = Throttle(1000)
    asyncio.run(throttle.take(1000))
    assert sleeps == []


def test_throttle_makes_taking_more_than_the_allowance_take_time(clock, sleeps):
    throttle = Throttle(1000)
    start = clock.now

    async def main():
        for _ in range(5):
            await throttle.take(1000)

    asyncio.run(main())
    assert sleeps == [1.0, 1.0, 1.0, 1.0]
    assert clock.now - start == pytest.approx(4.0)  # 5000 bytes: the burst, then 1000 B/s


def test_throttle_refills_with_time_but_never_beyond_one_second(clock, sleeps):
    throttle = Throttle(1000)

    async def main():
        await throttle.take(1000)  # the whole allowance
        await throttle.take(500)  # 500 over: half a second
        clock.now += 0.5  # the sleep and this: 1000 more allowed, 500 of them owed
        await throttle.take(1000)  # 500 over again
        clock.now += 60.0  # idle: the allowance is capped at one second's worth
        await throttle.take(2000)

    asyncio.run(main())
    assert sleeps == pytest.approx([0.5, 0.5, 1.0])

"""pandas and pyarrow reading and writing pydfs:// URLs through the fsspec filesystem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs
import pytest

from pydfs.cluster import LocalCluster
from pydfs.fsspec import PydfsFileSystem
from tests.conftest import BLOCK_SIZE


@pytest.fixture(scope="module")
def base(shared_cluster: LocalCluster, admin_env: None) -> str:
    return "pydfs://" + shared_cluster.url.removeprefix("http://")


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "value": rng.normal(size=rows),
            "label": rng.choice(["alpha", "beta", "gamma"], size=rows),
        }
    )


def test_parquet_round_trip(base: str, shared_cluster: LocalCluster) -> None:
    df = frame(60_000)  # about 1.5 MB: several 256 KiB blocks
    url = f"{base}/pandas/table.parquet"
    df.to_parquet(url, compression=None)
    with shared_cluster.client() as client:
        assert len(client.info("/pandas/table.parquet").blocks or []) > 2
        assert client.info("/pandas/table.parquet").size > 2 * BLOCK_SIZE
    pd.testing.assert_frame_equal(pd.read_parquet(url), df)
    pd.testing.assert_frame_equal(pd.read_parquet(url, columns=["label"]), df[["label"]])


def test_pyarrow_dataset_over_a_directory(base: str, shared_cluster: LocalCluster) -> None:
    parts = [frame(20_000, seed) for seed in range(4)]
    for i, part in enumerate(parts):
        part.to_parquet(f"{base}/dataset/part-{i}.parquet", compression=None)
    fs = PydfsFileSystem(namenode=shared_cluster.url)
    dataset = ds.dataset(
        "/dataset", filesystem=pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
    )
    assert sorted(dataset.files) == [f"/dataset/part-{i}.parquet" for i in range(4)]
    table = dataset.to_table().to_pandas()
    expected = pd.concat(parts, ignore_index=True)
    got = table.sort_values(["id", "value"], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(["id", "value"], ignore_index=True))
    assert dataset.count_rows(filter=ds.field("label") == "beta") == int(
        (expected["label"] == "beta").sum()
    )


def test_csv_round_trip(base: str) -> None:
    df = frame(5_000, seed=7)
    url = f"{base}/pandas/table.csv"
    df.to_csv(url, index=False)
    pd.testing.assert_frame_equal(pd.read_csv(url), df)
    chunks = list(pd.read_csv(url, chunksize=1_000))
    assert len(chunks) == 5
    pd.testing.assert_frame_equal(pd.concat(chunks), df)


def test_missing_file_is_file_not_found(base: str) -> None:
    with pytest.raises(FileNotFoundError):
        pd.read_csv(f"{base}/pandas/nope.csv")

"""Dataset digests: the same content gives the same digest whatever holds it; different content differs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import modelyard as my
from modelyard.tracking.datasets import dataset_from


def test_pandas_numpy_arrow_and_files(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]})
    d1 = dataset_from(df, name="train")
    assert d1 == dataset_from(df.copy(), name="train")
    assert d1.num_rows == 3 and d1.schema_ is not None and d1.schema_["x"] == "float64"
    assert d1.schema_["y"] in ("object", "str")  # pandas 3 names its string dtype "str"
    assert dataset_from(df.assign(x=[1.0, 2.0, 3.5])).digest != d1.digest
    assert dataset_from(pa.Table.from_pandas(df)).digest == d1.digest  # same content, same digest

    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    a = dataset_from(arr)
    assert a.digest == dataset_from(arr.copy(order="F")).digest and a.num_rows == 4
    assert a.digest != dataset_from(arr.astype(np.float64)).digest  # dtype is part of the content

    f = tmp_path / "data.csv"
    f.write_text("x\n1\n")
    assert dataset_from(f).digest == dataset_from(str(f)).digest
    assert dataset_from(f).source == f.resolve().as_uri()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("1")
    before = dataset_from(folder).digest
    (folder / "a.csv").rename(folder / "b.csv")
    assert dataset_from(folder).digest != before


def test_unsupported_and_missing(tmp_path: Path) -> None:
    with pytest.raises(my.InvalidArgument, match="pandas DataFrame"):
        dataset_from({"a": 1})
    with pytest.raises(my.InvalidArgument, match="does not exist"):
        dataset_from(tmp_path / "nope.csv")


def test_log_dataset_is_searchable() -> None:
    df = pd.DataFrame({"x": range(10)})
    with my.start_run(experiment="ds") as run:
        item = my.log_dataset(df, name="digits", context="training")
    got = my.Client().get_run(run.run_id).inputs
    assert got[0].dataset.digest == item.dataset.digest and got[0].context == "training"
    found = my.search_runs("ds", f"datasets.digest = '{item.dataset.digest}'")
    assert [r.run_id for r in found] == [run.run_id]

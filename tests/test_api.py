from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

import synthforge
from synthforge.data.io import read_table, write_table_atomic
from synthforge.errors import DataError, ModelError
from synthforge.testing import _DATA as CONFORMANCE_CSV


def test_fit_sample_save_load_with_polars(adult, tmp_path):
    model = synthforge.fit(adult, generator="copula", seed=1)
    rows = model.sample(500, conditions={"sex": "Female"}, seed=2)
    assert isinstance(rows, pl.DataFrame) and (rows["sex"] == "Female").all()
    model.save(tmp_path / "model")
    loaded = synthforge.load(tmp_path / "model")
    assert loaded.sample(300, seed=4).equals(model.sample(300, seed=4))


def test_pandas_in_pandas_out(adult):
    model = synthforge.fit(adult.to_pandas(), seed=0)
    assert isinstance(model.sample(10, seed=0), pd.DataFrame)


def test_column_overrides_and_identifier_handling(adult):
    table = adult.with_row_index("member").with_columns(pl.format("M{}", pl.col("member")).alias("member_code"))
    model = synthforge.fit(table, columns={"member": {"kind": "identifier", "handling": "drop"},
                                           "member_code": "identifier"}, seed=0)
    sample = model.sample(100, seed=1)
    assert "member" not in sample.columns and sample["member_code"].str.starts_with("syn_").all()


def test_run_recipe_from_a_dict(tmp_path):
    source = tmp_path / "data.parquet"
    pl.read_csv(CONFORMANCE_CSV).write_parquet(source)
    result = synthforge.run_recipe({"seed": 1, "source": {"path": str(source)}, "holdout": 0.2,
                                    "output": {"rows": 200, "path": str(tmp_path / "out"), "format": "ipc"}})
    assert pl.read_ipc(result.dataset_path).height == 200


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".ndjson", ".arrow"])
def test_every_format_round_trips(adult, tmp_path, suffix):
    path = write_table_atomic(adult.head(100), tmp_path / f"t{suffix}")
    assert read_table(path).equals(adult.head(100))


def test_unreadable_files_and_models_give_clear_errors(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="could not read .*broken.parquet as parquet"):
        read_table(tmp_path / "broken.parquet")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_table(tmp_path / "table.xyz")
    with pytest.raises(ModelError, match="has no config.json"):
        synthforge.load(tmp_path)

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


# --- for people who know SDV and scikit-learn -------------------------------------------------------------------


def test_evaluate_is_exported_and_scores_frames_against_a_holdout(adult, tmp_path):
    import importlib

    assert "evaluate" in synthforge.__all__
    importlib.import_module("synthforge.evaluation")  # a submodule named evaluate would shadow the function
    train, holdout = adult.head(3000), adult.tail(1000)
    synthetic = synthforge.fit(train, seed=0).sample(1000, seed=1)
    results = synthforge.evaluate(train.to_pandas(), synthetic, holdout=holdout, target="income",
                                  checks=["column_shapes", "detection", "ml_efficacy", "dcr_share"],
                                  out=tmp_path / "report")
    scored = {r.name: r for r in results}
    assert {"column_shapes", "detection", "ml_efficacy", "dcr_share", "exact_copies"} <= set(scored)
    assert scored["ml_efficacy"].details["target"] == "income" and scored["dcr_share"].score is not None
    assert (tmp_path / "report" / "report.html").exists() and (tmp_path / "report" / "report.json").exists()


def test_saving_a_model_to_a_file_name_is_refused_not_made_a_folder(adult, tmp_path):
    model = synthforge.fit(adult.head(500), seed=0)
    with pytest.raises(ModelError, match="a model is a folder"):
        model.save(tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl").exists()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="it is a file"):
        model.save(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("kind", ["pandas", "polars"])
def test_a_dataframe_of_conditions_gives_one_row_for_each_of_its_rows(adult, kind):
    model = synthforge.fit(adult, seed=0)
    wanted = pl.DataFrame({"sex": ["Female", "Male", "Female", None, "Male"], "age": [30, 61, 30, 45, None]})
    rows = model.sample(5, conditions=wanted.to_pandas() if kind == "pandas" else wanted, seed=3)
    rows = pl.from_pandas(rows) if isinstance(rows, pd.DataFrame) else rows
    assert rows.height == 5
    assert rows["sex"].to_list()[:3] == ["Female", "Male", "Female"] and rows["sex"][4] == "Male"
    assert rows["age"].to_list()[:4] == [30, 61, 30, 45]
    assert rows.equals(model.sample(5, conditions=wanted, seed=3))  # same seed, same rows
    with pytest.raises(synthforge.SynthForgeError, match="one row for each of its rows"):
        model.sample(3, conditions=wanted)

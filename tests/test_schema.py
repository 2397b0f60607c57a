from __future__ import annotations

import math

import polars as pl
import pytest

from synthforge.data.schema import ColumnKind, ColumnOverride, enforce, infer_schema, prepare_source
from synthforge.errors import DataError


def test_adult_kinds_are_inferred(adult):
    schema = infer_schema(adult)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["age"] == ColumnKind.integer and kinds["fnlwgt"] == ColumnKind.integer
    assert kinds["workclass"] == ColumnKind.categorical and kinds["income"] == ColumnKind.categorical
    assert schema["workclass"].null_rate > 0 and schema["age"].null_rate == 0


def test_identifiers_free_text_booleans_dates_and_floats():
    n = 200
    table = pl.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "full_name": [f"Person Number{i}" for i in range(n)],
        "notes": [f"this is a long free text note number {i} about the case" for i in range(n)],
        "row_id": list(range(n)),
        "flag": [i % 3 == 0 for i in range(n)],
        "when": pl.date_range(pl.date(2020, 1, 1), pl.date(2020, 1, 1) + pl.duration(days=n - 1), eager=True),
        "amount": [i * 1.25 for i in range(n)],
        "colour": ["red", "green", "blue", "red"] * (n // 4),
    })
    kinds = {c.name: c.kind for c in infer_schema(table).columns}
    assert kinds == {
        "customer_id": ColumnKind.identifier, "full_name": ColumnKind.identifier, "notes": ColumnKind.free_text,
        "row_id": ColumnKind.identifier, "flag": ColumnKind.boolean, "when": ColumnKind.datetime,
        "amount": ColumnKind.continuous, "colour": ColumnKind.categorical,
    }
    assert infer_schema(table)["amount"].decimals == 2


def test_overrides_win_and_unknown_override_columns_are_named(adult):
    schema = infer_schema(adult, {"education-num": ColumnOverride(kind=ColumnKind.categorical)})
    assert schema["education-num"].kind == ColumnKind.categorical
    with pytest.raises(DataError, match="source.columns names 'agee'.*its columns are: age"):
        infer_schema(adult, {"agee": ColumnOverride(kind=ColumnKind.integer)})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)}), "no rows"),
        (pl.DataFrame({"a": [1.0, math.nan, 3.0], "b": [1, 2, 3]}), "'a' has 1 NaN or infinite value.*row 2"),
        (pl.DataFrame({"a": [1.0, math.inf, 3.0], "b": [1, 2, 3]}), "nan_as_null"),
        (pl.DataFrame({"a": [f"v{i % 1500}" for i in range(9000)], "b": list(range(9000))}),
         "'a' has 1,500 distinct values.*kind: identifier"),
    ],
    ids=["empty", "nan", "inf", "huge-cardinality"],
)
def test_unlearnable_data_gets_an_actionable_message(table, message):
    with pytest.raises(DataError, match=message):
        infer_schema(table)


def test_constant_and_all_null_columns_are_kept_as_they_are_with_a_note():
    table = pl.DataFrame({"a": [1, 2, 3], "b": [None, None, None], "c": ["x", "x", "x"], "d": ["y", None, "y"]})
    schema = infer_schema(table)
    assert schema["b"].kind == schema["c"].kind == ColumnKind.constant
    assert schema["c"].value == "x" and schema["b"].value is None
    assert "every row" in schema["c"].note and "source.drop" in schema["c"].note
    assert schema["d"].kind == ColumnKind.categorical  # present or missing is information


def test_a_text_column_of_mostly_rare_values_is_regenerated_not_pooled():
    table = pl.DataFrame({"county": [f"c{i % 300}" for i in range(400)], "x": list(range(400))})
    schema = infer_schema(table)
    assert schema["county"].kind == ColumnKind.identifier and "pooled as rare" in schema["county"].note
    common = pl.DataFrame({"city": [f"c{i % 30}" for i in range(400)], "x": list(range(400))})
    assert infer_schema(common)["city"].kind == ColumnKind.categorical


def test_every_problem_is_reported_at_once():
    table = pl.DataFrame({"a": [1.0, math.nan, 3.0] * 2100, "b": [f"v{i}" for i in range(1050)] * 6,
                          "c": [1.0, math.inf, 2.0] * 2100, "d": list(range(6300))})
    with pytest.raises(DataError) as raised:
        infer_schema(table)
    message = str(raised.value)
    assert message.startswith("3 columns cannot be learned")
    assert all(f"column {name!r}" in message for name in "abc")


def test_nan_as_null_and_drop_prepare_the_source():
    table = pl.DataFrame({"a": [1.0, math.nan, math.inf, 2.0], "b": [1, 2, 3, 4], "c": ["x", "y", "x", "y"]})
    prepared = prepare_source(table, drop=["c"], nan_as_null=True)
    assert prepared.columns == ["a", "b"] and prepared["a"].null_count() == 2
    infer_schema(prepared)
    with pytest.raises(DataError, match="source.drop names 'z'"):
        prepare_source(table, drop=["z"])


def test_enforce_restores_types_bounds_and_precision(adult):
    schema = infer_schema(adult.with_columns((pl.col("age") / 4).alias("quarter_age")))
    decoded = pl.DataFrame({"age": [16.6, 200.2], "quarter_age": [10.123456, 5.5], "sex": ["Male", "Female"]})
    enforced = enforce(decoded, schema)
    assert enforced["age"].to_list() == [17, 90] and enforced.schema["age"] == pl.Int64
    assert enforced["quarter_age"].to_list() == [10.12, 5.5]

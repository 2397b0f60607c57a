from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from synthforge.data.encoder import RARE, EncoderConfig, TableEncoder
from synthforge.data.schema import ColumnKind, ColumnOverride, infer_schema
from synthforge.errors import ConditionError
from synthforge.testing import conformance_table


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """Adult rows with nulls in categorical and numeric columns, a date and a float column."""
    return conformance_table().drop("person_id").with_columns((pl.col("fnlwgt") / 1000).alias("fnlwgt_k"))


@pytest.mark.parametrize("numeric", ["quantile", "mode_specific", "minmax"])
@pytest.mark.parametrize("categorical", ["onehot", "index"])
def test_round_trip_is_exact(table, numeric, categorical):
    schema = infer_schema(table)
    config = EncoderConfig(numeric=numeric, categorical=categorical, min_category_count=1)
    encoder = TableEncoder(config).fit(table, schema, seed=0)
    matrix = encoder.encode(table)
    assert matrix.dtype == np.float32 and matrix.shape == (table.height, encoder.width)
    decoded = encoder.decode(matrix)
    for column in table.columns:
        if column == "fnlwgt_k":
            assert np.allclose(decoded[column].to_numpy(), table[column].to_numpy(), rtol=1e-5)
        else:
            assert decoded[column].equals(table[column]), column


def test_round_trip_is_exact_in_float64(table):
    schema = infer_schema(table)
    encoder = TableEncoder(EncoderConfig(min_category_count=1)).fit(table, schema)
    decoded = encoder.decode(encoder.encode(table).astype(np.float64))
    assert np.allclose(decoded["fnlwgt_k"].to_numpy(), table["fnlwgt_k"].to_numpy(), rtol=1e-5, atol=0)


def test_spans_describe_the_matrix(table):
    schema = infer_schema(table)
    encoder = TableEncoder(EncoderConfig(numeric="mode_specific", categorical="onehot")).fit(table, schema)
    assert encoder.spans_[0].start == 0 and encoder.spans_[-1].stop == encoder.width
    for left, right in zip(encoder.spans_, encoder.spans_[1:], strict=False):
        assert left.stop == right.start
    roles = {(s.column, s.role) for s in encoder.spans_}
    assert ("hours-per-week", "null") in roles and ("age", "mode") in roles and ("workclass", "value") in roles
    matrix = encoder.encode(table)
    for span in encoder.spans_:
        if span.kind == "onehot":
            assert np.allclose(matrix[:, span.start:span.stop].sum(axis=1), 1.0)


def test_rare_and_excess_categories_are_pooled():
    values = [f"common{i % 3}" for i in range(3000)] + [f"rare{i}" for i in range(100_000)]
    table = pl.DataFrame({"c": values, "x": np.arange(len(values)) % 97})
    schema = infer_schema(table, {"c": ColumnOverride(kind=ColumnKind.categorical)})
    encoder = TableEncoder(EncoderConfig(categorical="onehot", max_categories=50)).fit(table, schema)
    assert encoder.spans_of("c")[0].width == 4  # three common values + the rare pool
    decoded = encoder.decode(encoder.encode(table.head(3010)))
    assert decoded["c"].to_list()[3005] == RARE and decoded["c"].to_list()[:3] == ["common0", "common1", "common2"]


def test_state_is_json_and_reloads_identically(table):
    schema = infer_schema(table)
    encoder = TableEncoder(EncoderConfig(numeric="mode_specific")).fit(table, schema, seed=3)
    state = json.loads(json.dumps(encoder.state()))
    reloaded = TableEncoder.from_state(state, schema)
    matrix = encoder.encode(table)
    assert np.array_equal(reloaded.encode(table), matrix)
    assert reloaded.decode(matrix).equals(encoder.decode(matrix))


@pytest.mark.parametrize("categorical", ["onehot", "index"])
def test_low_cardinality_integers_can_be_learned_as_categories_of_their_values(table, categorical):
    schema = infer_schema(table)
    config = EncoderConfig(numeric="mode_specific", categorical=categorical, discrete_integer_max=32,
                           min_category_count=1)
    encoder = TableEncoder(config).fit(table, schema, seed=0)
    spans = {span.role: span for span in encoder.spans_of("education-num")}
    assert spans["value"].kind == categorical and spans["value"].n_categories == table["education-num"].n_unique()
    assert encoder.spans_of("age")[0].kind == "numeric", "age has more than 32 distinct values: still a number"
    decoded = encoder.decode(encoder.encode(table))
    assert decoded["education-num"].equals(table["education-num"]) and decoded["education-num"].dtype == pl.Int64
    reloaded = TableEncoder.from_state(json.loads(json.dumps(encoder.state())), schema)
    assert np.array_equal(reloaded.encode(table), encoder.encode(table))


def test_rare_integer_values_go_to_the_nearest_common_value():
    column = pl.Series("stars", [1] * 50 + [2] * 40 + [3] * 2 + [5] * 30 + [None] * 5, dtype=pl.Int32)
    table = pl.DataFrame([column])
    encoder = TableEncoder(EncoderConfig(discrete_integer_max=10, min_category_count=5)).fit(table, infer_schema(table))
    value, null = encoder.spans_of("stars")
    assert (value.role, value.n_categories, null.role) == ("value", 3, "null")
    decoded = encoder.decode(encoder.encode(table))["stars"]
    assert decoded.dtype == pl.Int32 and decoded.null_count() == 5
    assert decoded.drop_nulls().value_counts(sort=True).sort("stars").rows() == [(1, 50), (2, 42), (5, 30)]


def test_a_column_that_is_a_function_of_another_is_derived_not_learned(table):
    schema = infer_schema(table)
    # (min_category_count=1: this 2,000-row sample has one Preschool row, and a source may hold no rare value)
    encoder = TableEncoder(EncoderConfig(derive_functions=True, min_category_count=1)).fit(table, schema, seed=0)
    # education and education-num are one-to-one: the earlier column is learned, the other derived from it.
    assert encoder.derived_["education-num"]["source"] == "education"
    assert encoder.spans_of("education-num") == [] and "education-num" not in encoder.columns
    assert "sex" not in encoder.derived_, "relationship almost determines sex; almost is not a function"
    matrix = encoder.encode(table)
    assert matrix.shape[1] == encoder.width
    decoded = encoder.decode(matrix)
    assert decoded["education-num"].equals(table["education-num"]) and decoded.columns[-1] == "education-num"
    reloaded = TableEncoder.from_state(json.loads(json.dumps(encoder.state())), schema)
    assert reloaded.decode(matrix).equals(decoded)
    # Conditioning the derived column conditions its source; a value no single source gives is refused.
    pinned = encoder.encode_value("education-num", 13)
    (span,) = pinned
    assert span.column == "education" and encoder.transformer("education").categories_[pinned[span].argmax()] == \
        "Bachelors"
    with pytest.raises(ConditionError, match="derived from 'education'.*never seen"):
        encoder.encode_value("education-num", 99)


def test_rare_values_and_identifier_like_columns_are_never_sources():
    rows = 200
    table = pl.DataFrame({
        "code": [f"c{i}" for i in range(rows)],  # every row its own value: everything is a function of it
        "group": ["a", "b"] * (rows // 2),
        "label": ["x", "y"] * (rows // 2),
    })
    encoder = TableEncoder(EncoderConfig(derive_functions=True)).fit(table, infer_schema(table))
    assert set(encoder.derived_) == {"label"} and encoder.derived_["label"]["source"] == "group"

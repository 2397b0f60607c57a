from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from synthforge.data.encoder import RARE, EncoderConfig, TableEncoder
from synthforge.data.schema import ColumnKind, ColumnOverride, infer_schema
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

"""Hostile or messy input ends in a clear error, in bounded time and memory, or in a correct result (issue 38)."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import polars as pl
import pytest
import yaml

from synthforge.data.schema import ColumnKind, infer_schema, to_internal, to_source
from synthforge.engine import run, validate_recipe
from synthforge.errors import DataError, RecipeError
from synthforge.recipe import load_recipe, parse_overrides

from .conftest import DATA


def alias_bomb(levels: int) -> str:
    """A few hundred bytes of nested aliases that expand to 10**levels values ("billion laughs")."""
    lines = ["seed: 1", "source: {path: adult.csv}", "generator:", "  name: copula", "  params:",
             '    a0: &a0 ["lol"]']
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, "output: {path: out}"]) + "\n"


@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path, levels):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(alias_bomb(levels))
    assert len(recipe.read_bytes()) < 700
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(RecipeError, match=r"bomb.yaml:\d+: .*expands to more than 100,000 values"):
        load_recipe(recipe)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 50 * 2**20, (elapsed, peak)


def test_modest_aliases_still_work(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("seed: 1\nsource: {path: a.csv}\ngenerator: {name: copula}\n"
                      "output: &out {path: out, rows: 10}\nchecks: [{name: column_shapes}]\n")
    assert load_recipe(recipe).output.rows == 10


def test_a_recipe_that_contains_itself_or_nests_too_deep_is_refused(tmp_path):
    looped = tmp_path / "loop.yaml"
    looped.write_text("seed: 1\nx: &a [1, *a]\n")
    with pytest.raises(RecipeError, match="cannot contain itself"):
        load_recipe(looped)
    deep = tmp_path / "deep.yaml"
    deep.write_text("seed: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(RecipeError, match="nest"):
        load_recipe(deep)


def test_an_override_is_bounded_like_a_recipe():
    assert parse_overrides(["a=5", "b=[x, y]", "c=: not yaml", "d="]) == {"a": 5, "b": ["x", "y"], "c": ": not yaml",
                                                                          "d": ""}
    bomb = "[" + ", ".join(["[" + ", ".join(["x"] * 400) + "]"] * 400) + "]"  # 160,000 values, no aliases
    with pytest.raises(RecipeError, match="expands to more than"):
        parse_overrides([f"generator.params.x={bomb}"])


def small_recipe(tmp_path: Path, **extra: object) -> Path:
    pl.read_csv(DATA / "adult_4k.csv").head(500).write_csv(tmp_path / "adult.csv")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "source": {"path": "adult.csv"}, "generator": {"name": "copula"},
                                    "output": {"path": "out", "rows": 200}, **extra}))
    return path


@pytest.mark.parametrize("rule", ["(" * 5000 + "age" + ")" * 5000 + " > 1", "age" + " + age" * 2500 + " > 1",
                                  "-" * 60 + "age > 1", "abs(" * 30 + "age" + ")" * 30 + " > 1"])
def test_a_huge_or_deep_rule_is_a_clear_error_with_its_line(tmp_path, rule):
    path = small_recipe(tmp_path, constraints=[{"check": rule}])
    with pytest.raises(RecipeError, match=r"recipe.yaml:\d+.*(characters long|nests more than|more than 200)"):
        load_recipe(path)
    result = subprocess.run([sys.executable, "-m", "synthforge.cli", "validate", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_a_derived_quotient_by_zero_is_missing_not_infinite(tmp_path):
    frame = pl.DataFrame({"a": [float(i % 10) for i in range(400)], "z": [i % 3 for i in range(400)]})
    frame = frame.with_columns(pl.when(pl.col("z") != 0).then(pl.col("a") / pl.col("z")).alias("r"))
    frame.write_csv(tmp_path / "ratios.csv")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "source": {"path": "ratios.csv"}, "generator": {"name": "copula"},
                                    "constraints": [{"derive": "r = a / z"}], "output": {"path": "out", "rows": 300},
                                    "checks": [{"name": "column_shapes"}]}))
    result = run(path)
    synthetic = pl.read_csv(result.dataset_path)
    zero = synthetic.filter(pl.col("z") == 0)
    assert zero.height and zero.get_column("r").null_count() == zero.height
    assert synthetic.filter(pl.col("z") != 0).get_column("r").is_finite().all()


def related_tables(tmp_path: Path, child_keys: list[str]) -> Path:
    parents = pl.DataFrame({"pid": list(range(1, 201)), "region": [["north", "south", "east"][i % 3]
                                                                     for i in range(200)]})
    parents.write_csv(tmp_path / "parents.csv")
    pl.DataFrame({"cid": list(range(len(child_keys))), "pid": child_keys,
                  "kind": [["a", "b"][i % 2] for i in range(len(child_keys))]}).write_parquet(tmp_path / "kids.parquet")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 1, "generator": {"name": "copula"}, "output": {"path": "out"},
        "source": {"tables": {"parents": {"path": "parents.csv", "primary_key": "pid"},
                              "kids": {"path": "kids.parquet", "primary_key": "cid",
                                       "foreign_keys": [{"column": "pid", "parent": "parents"}]}}}}))
    return path


def test_a_key_stored_as_text_in_one_table_and_a_number_in_the_other_is_joined(tmp_path):
    path = related_tables(tmp_path, [str(1 + i % 200) for i in range(600)])
    validate_recipe(load_recipe(path))
    result = run(path)
    kids, parents = (pl.read_csv(result.output_path / f"{name}.csv") for name in ("kids", "parents"))
    assert kids.get_column("pid").is_in(parents.get_column("pid").implode()).all()


def test_a_key_that_cannot_be_read_in_its_parents_type_names_both_tables(tmp_path):
    path = related_tables(tmp_path, [str(1 + i % 200) if i else "P-7" for i in range(600)])
    with pytest.raises(DataError, match=r"recipe.yaml:\d+: .*String in 'kids' but Int64 in 'parents'.*'P-7'"):
        validate_recipe(load_recipe(path))


@pytest.mark.parametrize(("values", "written"), [
    (["2024-01-05", "05/02/2024", "2024-03-07", "12/23/2024"], "%Y-%m-%d"),
    (["1987-04-12", "12.04.1987", "1990-01-31"], "%Y-%m-%d"),
    (["2024-01-05T10:00:00Z", "2024-07-05T11:30:00+01:00", "2024-03-01T10:00:00+02:00"], "%Y-%m-%dT%H:%M:%S%:z"),
])
def test_a_column_of_mixed_date_formats_is_read_as_dates(values, written):
    table = pl.DataFrame({"when": values * 20, "n": list(range(len(values) * 20))})
    schema = infer_schema(table)
    column = schema["when"]
    assert column.kind == ColumnKind.datetime and column.format.split("|")[0] == written
    parsed = to_internal(table, schema).get_column("when")
    assert parsed.null_count() == 0 and parsed.dtype.is_temporal()
    back = to_source(to_internal(table, schema), schema).get_column("when")
    assert to_internal(pl.DataFrame({"when": back}), schema).get_column("when").equals(parsed)


def test_a_column_all_in_one_offset_keeps_it():
    values = ["2024-01-05T10:00:00+02:00", "2024-07-05T11:30:00+02:00", "2024-03-01T23:59:59+02:00"] * 20
    table = pl.DataFrame({"at": values})
    schema = infer_schema(table)
    internal = to_internal(table, schema)
    assert to_source(internal, schema).get_column("at").to_list() == values


def test_a_column_of_several_offsets_is_written_in_its_most_common_one_at_the_same_instants():
    values = ["2024-01-05T10:00:00+01:00", "2024-02-01T08:30:00+01:00", "2024-07-05T11:30:00+02:00"] * 20
    table = pl.DataFrame({"at": values})
    schema = infer_schema(table)
    assert schema["at"].format == "%Y-%m-%dT%H:%M:%S%:z@+01:00"
    internal = to_internal(table, schema)
    written = to_source(internal, schema).get_column("at")
    assert written.str.ends_with("+01:00").all()
    assert written.head(3).to_list() == ["2024-01-05T10:00:00+01:00", "2024-02-01T08:30:00+01:00",
                                         "2024-07-05T10:30:00+01:00"]
    assert to_internal(pl.DataFrame({"at": written}), schema).get_column("at").equals(internal.get_column("at"))

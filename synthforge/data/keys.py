"""Keys found in a folder of tables: ``synthforge profile <folder>`` proposes ``source.tables`` as SDV's
``detect_from_dataframes`` does.

A table's primary key is its first column of text or whole numbers that is never null and never repeated.
A column is a foreign key of another table when every value it holds is one of that table's primary keys:
text columns by that inclusion alone; whole numbers also need a name that says so (the parent's key's
name, or the parent's name before ``_id``), since small integers (counts, years) fall inside any
numbered key. A table's first foreign key makes it a child (:mod:`synthforge.relational`): the one never
null, to the largest parent, as for a database's catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from synthforge.errors import DataError

TABLE_SUFFIXES = (".csv", ".parquet", ".ndjson", ".jsonl", ".ipc", ".arrow", ".feather")


def _key_like(dtype: pl.DataType) -> bool:
    return dtype == pl.String or dtype.is_integer()


def primary_key(frame: pl.DataFrame) -> str | None:
    for name, dtype in frame.schema.items():
        column = frame.get_column(name)
        if _key_like(dtype) and frame.height > 1 and column.null_count() == 0 and column.n_unique() == frame.height:
            return name
    return None


def _names_its_parent(column: str, parent: str, key: str) -> bool:
    singular = parent.removesuffix("s")
    return column.lower() in (key.lower(), f"{singular}_{key}".lower(), f"{singular}_id".lower(),
                              f"{parent}_id".lower())


def find_keys(frames: dict[str, pl.DataFrame]) -> dict[str, dict[str, Any]]:
    """Per table: its primary key (or None) and its foreign keys ``[(column, parent)]``, the child's first."""
    keys = {name: primary_key(frame) for name, frame in frames.items()}
    found: dict[str, dict[str, Any]] = {}
    for name, frame in frames.items():
        references = []
        for column, dtype in frame.schema.items():
            if column == keys[name] or not _key_like(dtype):
                continue
            values = frame.get_column(column).drop_nulls().unique()
            if values.len() < 2:
                continue
            for parent, key in keys.items():
                if parent == name or key is None or frames[parent].schema[key] != dtype:
                    continue
                if dtype.is_integer() and not _names_its_parent(column, parent, key):
                    continue
                if values.is_in(frames[parent].get_column(key).implode()).all():
                    references.append((column, parent))
        references.sort(key=lambda ref: (frame.get_column(ref[0]).null_count() > 0, -frames[ref[1]].height))
        found[name] = {"primary_key": keys[name], "foreign_keys": references}
    return found


def folder_recipe(folder: Path, *, generator: str = "copula", pm: Any = None) -> str:
    """A recipe (YAML) of every table file in ``folder`` with the keys :func:`find_keys` proposes."""
    import yaml

    from synthforge.data.io import read_table

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no table files ({', '.join(TABLE_SUFFIXES)}).")
    frames = {path.stem: read_table(path, pm=pm) for path in files}
    keys = find_keys(frames)
    lines = [f"# synthforge profile of {folder}: {len(frames)} tables; keys proposed from the values (a column",
             "# never null nor repeated is a primary key; one whose values are all another table's keys refers",
             "# to it). Check them: a coincidence of these rows is not a key.", "#",
             "# table                          rows  primary key     foreign keys"]
    tables: dict[str, Any] = {}
    for path in files:
        name, found = path.stem, keys[path.stem]
        references = ", ".join(f"{column} → {parent}" for column, parent in found["foreign_keys"])
        lines.append(f"#   {name[:26]:<26} {frames[name].height:>8,}  {(found['primary_key'] or '-')[:14]:<14}  "
                     f"{references}".rstrip())
        entry: dict[str, Any] = {"path": str(path)}
        if found["primary_key"]:
            entry["primary_key"] = found["primary_key"]
        if found["foreign_keys"]:
            entry["foreign_keys"] = [{"column": column, "parent": parent} for column, parent in found["foreign_keys"]]
        tables[name] = entry
    lines += ["#", "# The first foreign key of a table makes it a child of that parent; reorder them to choose "
                   "another.", ""]
    recipe = {"version": 1, "name": folder.name, "seed": 0, "source": {"tables": tables}, "holdout": 0.2,
              "generator": {"name": generator}, "output": {"path": f"{folder.name}-synthetic"}}
    return "\n".join(lines) + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=120)

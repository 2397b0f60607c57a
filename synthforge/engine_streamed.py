"""The first steps of a run on a source larger than memory (``source.streaming``; :mod:`synthforge.data.streaming`).

:func:`streamed_source` decides whether a run streams; :func:`streamed_samples` reads the training and holdout
samples in one pass and infers the schema on them; the engine then fits with
:meth:`synthforge.generator.Generator.fit_streamed` on :class:`TrainingChunks` and carries on as it does in
memory, the checks and the report reading the samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from synthforge.data.io import _choose, convert_missing_markers, missing_marker_columns
from synthforge.data.schema import Schema, prepare_source, to_internal
from synthforge.data.streaming import MAX_HOLDOUT_ROWS, MemoryEstimate, StreamedSource, can_stream, estimate_in_memory
from synthforge.errors import DataError, RecipeError
from synthforge.plugins import SynthForgePluginManager
from synthforge.recipe import Recipe
from synthforge.seeds import derive_seed

#: An in-memory run peaks at about this many times its table's size in memory (Adult resampled to 400,000 rows:
#: a 48 MB frame, 880 MB peak RSS with the copula, imports included; its parsed copy, the split, the encoded
#: matrix, the samples and the checks' copies).
RUN_FOOTPRINT = 13
#: ``streaming: auto`` streams a table whose in-memory run would take more than this share of the memory.
AUTO_SHARE_OF_MEMORY = 0.5


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def streams_by_size(estimate: MemoryEstimate | None, file_bytes: int, memory: int) -> bool:
    """``streaming: auto``'s verdict: whether a run in memory would outgrow ``AUTO_SHARE_OF_MEMORY`` of
    ``memory``, judged on the table's rows and in-memory width (``estimate``); on the file's bytes only for a format
    that cannot be scanned (then ``RUN_FOOTPRINT`` times them, as a text file is about its size once read)."""
    size = estimate.bytes if estimate is not None else float(file_bytes)
    return RUN_FOOTPRINT * size > AUTO_SHARE_OF_MEMORY * memory


def streamed_source(recipe: Recipe, path: Path, pm: SynthForgePluginManager, supports_streaming: bool,
                    log: Callable[[str], None], memory: int | None = None) -> StreamedSource | None:
    """The source as chunks when the recipe streams it (``streaming: true``, or ``auto`` and a table whose run in
    memory would outgrow half the machine's ``memory``: :func:`streams_by_size`), else None; a streamed run the
    recipe cannot have is refused by key."""
    setting = recipe.source.streaming
    if setting is False or (setting == "auto" and not path.is_file()):  # a missing file: reading reports it
        return None
    if not path.is_file():
        raise DataError(f"source file {path} does not exist (or is a folder); source.streaming reads one file.")
    format = _choose(pm.readers(), path, recipe.source.format, "reader").format
    refusal = _why_not(recipe, format, supports_streaming)
    if setting == "auto":
        memory = memory or machine_memory()
        try:
            estimate = estimate_in_memory(path, format)
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
            estimate = None  # the reader says what is wrong with the file
        if not streams_by_size(estimate, path.stat().st_size, memory):
            return None
        if refusal:
            size = estimate.bytes if estimate is not None else path.stat().st_size
            log(f"{path.name} is about {size / 2**30:.1f} GiB in memory, and a run on it about {RUN_FOOTPRINT} "
                f"times that, over half of this machine's memory, but it is read into memory: {refusal}")
            return None
    elif refusal:
        raise RecipeError(f"{recipe.file}: source.streaming: true, but {refusal}")
    source = StreamedSource(path, format, seed=derive_seed(recipe.seed, "split"),
                            holdout_fraction=recipe.holdout.fraction, chunk_rows=recipe.source.chunk_rows,
                            prepare=lambda chunk: prepare_source(chunk, drop=recipe.source.drop,
                                                                 nan_as_null=recipe.source.nan_as_null))
    log(f"streaming {path.name}: {source.rows:,} rows in chunks of {source.chunk_rows:,}; the schema, the "
        f"encoding and the checks from a sample of about {min(recipe.source.sample_rows, source.rows):,} rows")
    return source


def _why_not(recipe: Recipe, format: str, supports_streaming: bool) -> str | None:
    if not can_stream(format):
        return f"a {format} file cannot be streamed (parquet, ipc, csv and ndjson can)."
    if not supports_streaming:
        return (f"generator {recipe.generator.name!r} trains on rows in memory (autoregressive, diffusion and vae "
                f"train from disk).")
    if recipe.output.mode not in ("synthesize", "conditions") or recipe.output.real_rows_included:
        return (f"output.mode {recipe.output.mode!r} puts or reads real rows beside the synthetic ones; a streamed "
                f"run synthesizes (modes synthesize and conditions).")
    if recipe.privacy is not None:
        return "a privacy budget reads every row in memory (DP-SGD samples from the whole table)."
    if recipe.holdout.path is not None:
        return "holdout.path: a streamed run splits its holdout off the source (holdout.fraction)."
    return None


def streamed_samples(recipe: Recipe, source: StreamedSource, infer: Callable[[pl.DataFrame], tuple[pl.DataFrame,
                     Schema]]) -> tuple[pl.DataFrame, pl.DataFrame | None, Schema]:
    """The training sample (internal form), the holdout sample and the schema inferred on the former; from then on
    ``source`` hands out chunks converted as the sample was."""
    train, holdout = source.samples(recipe.source.sample_rows, MAX_HOLDOUT_ROWS)
    markers = missing_marker_columns(train) if source.format == "csv" else {}
    train, schema = infer(convert_missing_markers(train, markers))
    invalid = recipe.source.invalid_policy
    read = source.prepare

    def prepare(chunk: pl.DataFrame) -> pl.DataFrame:
        return to_internal(convert_missing_markers(read(chunk), markers), schema, invalid=invalid)

    source.prepare = prepare
    if holdout is not None:
        holdout = to_internal(convert_missing_markers(holdout, markers), schema, invalid=invalid)
        holdout = holdout.select(train.columns).cast(train.schema, strict=False)
    return train, holdout, schema


@dataclass
class TrainingChunks:
    """The training rows of a streamed source as :meth:`Generator.fit_streamed` reads them."""

    source: StreamedSource
    sample: pl.DataFrame

    @property
    def rows(self) -> int:
        return self.source.training_rows

    def chunks(self) -> Iterator[pl.DataFrame]:
        return self.source.training_chunks()

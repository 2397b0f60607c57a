"""Sources larger than memory: read a chunk at a time, split and sampled by row, trained on from disk.

A streamed run (``source.streaming``) never holds the source in memory:

* :class:`StreamedSource` scans the file lazily (polars' ``scan_parquet``/``scan_ipc``/``scan_csv``/
  ``scan_ndjson``) and hands it out in chunks of ``chunk_rows``. Each row's place is decided by a number drawn
  from the seed and the row's position alone (:func:`row_uniforms`), so the holdout split and the samples are
  the same however the file is chunked, in one pass, with nothing kept per row.
* The schema and the encoder's statistics (quantiles, vocabularies, null rates) are learned on a seeded uniform
  sample of the training rows (``source.sample_rows``, 200,000 by default). For a quantile the
  Dvoretzky–Kiefer–Wolfowitz inequality bounds the error: with n sampled rows, every estimated rank is within
  ``sqrt(ln(2/α) / 2n)`` of the true one with probability 1 − α (n = 200,000, α = 0.01: 0.0036). A category
  rarer than that sample can see is pooled as ``_RARE_``, as a rare category is in memory.
* :class:`EncodedRows` holds every training row, encoded, in a file beside the output, read back one block at a
  time with plain reads (no memory map, whose touched pages would count as the process's memory), so a model
  trains on minibatches streamed from disk (:func:`synthforge.nn.training.train`).
* The checks and the report read the training sample and a holdout sample of at most ``MAX_HOLDOUT_ROWS``.

Peak memory is then a function of the chunk, the sample and the model, not of the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from synthforge.errors import DataError

#: Rows of the holdout kept for the checks of a streamed run.
MAX_HOLDOUT_ROWS = 50_000
#: The size of a block of encoded rows read back at a time (16,384 rows at most, 256 at least).
BLOCK_BYTES = 2**20

_SCANNERS: dict[str, Callable[..., pl.LazyFrame]] = {
    "parquet": pl.scan_parquet, "ipc": pl.scan_ipc, "ndjson": pl.scan_ndjson}


def can_stream(format: str) -> bool:
    return format in _SCANNERS or format == "csv"


#: Rows read from the top of a file to learn how wide a row is in memory.
WIDTH_SAMPLE_ROWS = 10_000


@dataclass(frozen=True)
class MemoryEstimate:
    """How large a table is once read: its rows (exact from parquet/IPC metadata, else estimated from the bytes
    of the first rows) and the bytes a row takes in memory (polars' estimate over the first rows)."""

    rows: int
    row_bytes: float
    exact_rows: bool

    @property
    def bytes(self) -> float:
        return self.rows * self.row_bytes


def estimate_in_memory(path: Path, format: str) -> MemoryEstimate | None:
    """The table's size in memory, read from its metadata and its first rows, never the whole file; None for a
    format that cannot be scanned. A compressed parquet file can be 20 times smaller on disk than in memory
    (10 million rows of Adult: 72 MB on disk, about 1.3 GB read), so its bytes on disk say little."""
    if format in ("parquet", "ipc"):
        scan = _SCANNERS[format](path)
        rows = int(scan.select(pl.len()).collect().item())  # from the footer's metadata: no data is read
        head = scan.head(WIDTH_SAMPLE_ROWS).collect()
        return MemoryEstimate(rows, head.estimated_size() / max(head.height, 1), True)
    if format not in ("csv", "ndjson"):
        return None
    # Text: the first rows' bytes on disk against their size in memory, scaled to the file's size.
    header = 1 if format == "csv" else 0
    with path.open("rb") as handle:
        lines = [handle.readline() for _ in range(WIDTH_SAMPLE_ROWS + header)]
    lines = [line for line in lines if line]
    body = sum(map(len, lines[header:]))
    if body == 0:
        return MemoryEstimate(0, 0.0, True)
    head = (pl.read_csv(path, n_rows=WIDTH_SAMPLE_ROWS, infer_schema_length=WIDTH_SAMPLE_ROWS)
            if format == "csv" else pl.read_ndjson(path, n_rows=WIDTH_SAMPLE_ROWS))
    sampled = len(lines) - header
    exact = sampled < WIDTH_SAMPLE_ROWS  # the whole file was read
    rows = sampled if exact else round((path.stat().st_size - sum(map(len, lines[:header]))) * sampled / body)
    return MemoryEstimate(rows, head.estimated_size() / max(head.height, 1), exact)


def row_uniforms(seed: int, start: int, count: int) -> np.ndarray:
    """A uniform number in [0, 1) for each row position ``start … start+count-1``, from the seed alone
    (splitmix64 of seed and position): the same row gets the same number in any chunk."""
    with np.errstate(over="ignore"):
        z = np.arange(start, start + count, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z += np.uint64(seed % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass
class StreamedSource:
    """A table file read in chunks, with a seeded split into training and holdout rows.

    ``prepare`` turns each raw chunk into what the run learns from (the recipe's ``drop`` and ``nan_as_null``,
    then the schema's conversions once there is a schema); ``holdout_fraction`` of the rows, chosen by
    :func:`row_uniforms`, are held out.
    """

    path: Path
    format: str
    seed: int
    holdout_fraction: float = 0.2
    chunk_rows: int = 100_000
    prepare: Callable[[pl.DataFrame], pl.DataFrame] = field(default=lambda chunk: chunk, repr=False)
    rows: int = 0

    def __post_init__(self) -> None:
        if not can_stream(self.format):
            raise DataError(f"{self.path}: a {self.format} file cannot be streamed; streaming reads parquet, Arrow "
                            f"IPC, csv and ndjson (set `source.streaming: false`, or convert the file).")
        self.rows = int(self._scan().select(pl.len()).collect(engine="streaming").item())

    def _scan(self) -> pl.LazyFrame:
        if self.format == "csv":  # missing markers ("NA") are converted per chunk, as the sample says
            return pl.scan_csv(self.path, infer_schema_length=10_000, null_values=[""])
        return _SCANNERS[self.format](self.path)

    def chunks(self) -> Iterator[tuple[int, pl.DataFrame]]:
        """(position of the first row, prepared chunk) for every chunk of the file, in order.

        Parquet and IPC are read slice by slice (a slice reads only the row groups it needs: a flat 120 MB peak
        reading 800,000 rows × 50 columns in 50,000-row slices, where polars' batched collect read ahead to
        270 MB); csv and ndjson, which a slice would parse from the top each time, in batches."""
        offset = 0
        try:
            if self.format in ("parquet", "ipc"):
                scan = self._scan()
                for offset in range(0, self.rows, self.chunk_rows):
                    yield offset, self.prepare(scan.slice(offset, self.chunk_rows).collect())
                return
            for chunk in self._scan().collect_batches(chunk_size=self.chunk_rows, engine="streaming"):
                yield offset, self.prepare(chunk)
                offset += chunk.height
        except pl.exceptions.ComputeError as error:
            raise DataError(f"{self.path}: reading it in chunks failed near row {offset:,}: {error}. A csv column "
                            f"whose first 10,000 values all look like numbers may hold text further down: give it "
                            f"a `kind` under source.columns, or convert the file to parquet.") from None

    def holdout_mask(self, offset: int, rows: int) -> np.ndarray:
        return row_uniforms(self.seed, offset, rows) < self.holdout_fraction

    def training_chunks(self) -> Iterator[pl.DataFrame]:
        for offset, chunk in self.chunks():
            held = self.holdout_mask(offset, chunk.height)
            yield chunk.filter(pl.Series(~held)) if held.any() else chunk

    @property
    def training_rows(self) -> int:
        return self.rows - self.holdout_rows

    @cached_property
    def holdout_rows(self) -> int:
        """The exact number of held-out rows, counted from the row numbers alone (once)."""
        return sum(int(self.holdout_mask(start, min(self.chunk_rows, self.rows - start)).sum())
                   for start in range(0, self.rows, self.chunk_rows))

    def samples(self, training: int, holdout: int = MAX_HOLDOUT_ROWS) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """A seeded uniform sample of about ``training`` training rows and of at most ``holdout`` holdout rows,
        in one pass."""
        f = self.holdout_fraction
        train_rate = min(1.0, training / max((1 - f) * self.rows, 1))
        holdout_rate = min(1.0, holdout / max(f * self.rows, 1)) if f else 0.0
        kept_train, kept_holdout = [], []
        for offset, chunk in self.chunks():
            u = row_uniforms(self.seed, offset, chunk.height)
            kept_train.append(chunk.filter(pl.Series((u >= f) & (u < f + (1 - f) * train_rate))))
            if f:
                kept_holdout.append(chunk.filter(pl.Series(u < f * holdout_rate)))
        train = pl.concat(kept_train, how="vertical_relaxed")
        held = pl.concat(kept_holdout, how="vertical_relaxed").head(holdout) if f else None
        if not train.height or (held is not None and not held.height):
            raise DataError(f"{self.path}: its {self.rows:,} rows leave an empty "
                            f"{'training sample' if not train.height else 'holdout'}; a table this small needs no "
                            f"streaming (set `source.streaming: false`).")
        return train, held


class TrainingStream(Protocol):
    """What :meth:`synthforge.generator.Generator.fit_streamed` learns from: the training rows' count, a sample
    of them in memory, and a fresh pass over all of them, chunk by chunk (each in the schema's internal form)."""

    rows: int
    sample: pl.DataFrame

    def chunks(self) -> Iterator[pl.DataFrame]: ...


class HashCounter:
    """64-bit row hashes counted out of memory: each chunk's hashes go to one of ``buckets`` files by their top
    bits as they arrive (:meth:`add`), then :meth:`rare` counts each file on its own, so memory holds a bucket (a
    64th of the rows' hashes) and the rare hashes found. Fed while a streamed fit encodes its chunks, the copy
    protection costs no pass of its own over the table."""

    def __init__(self, folder: Path | None = None, buckets: int = 64) -> None:
        import tempfile

        self._scratch = tempfile.TemporaryDirectory(prefix=".synthforge-hashes-", dir=folder)
        self._paths = [Path(self._scratch.name) / f"{b}.u64" for b in range(buckets)]
        self._handles = [open(path, "wb") for path in self._paths]  # noqa: SIM115 - closed by rare() or close()
        self._shift = np.uint64(64 - int(np.log2(buckets)))

    def add(self, hashes: np.ndarray) -> None:
        chunk = np.asarray(hashes, dtype=np.uint64)
        bucket = (chunk >> self._shift).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(len(self._handles) + 1))
        for b, handle in enumerate(self._handles):
            if bounds[b] < bounds[b + 1]:
                chunk[order[bounds[b] : bounds[b + 1]]].tofile(handle)

    def rare(self, below: int) -> np.ndarray:
        """The hashes added fewer than ``below`` times; the bucket files are gone after."""
        self._close_handles()
        rare = []
        try:
            for path in self._paths:
                values, counts = np.unique(np.fromfile(path, dtype=np.uint64), return_counts=True)
                rare.append(values[counts < below])
                path.unlink()
        finally:
            self.close()
        return np.concatenate(rare)

    def _close_handles(self) -> None:
        for handle in self._handles:
            handle.close()

    def close(self) -> None:
        self._close_handles()
        self._scratch.cleanup()


class EncodedRows:
    """Every training row, encoded, in a file on disk, and a sample of them in memory.

    What :meth:`synthforge.generator.Generator._fit` gets as ``data`` in a streamed run, when the generator
    declares ``supports_streaming``. ``len()`` and ``shape`` are the whole table's; ``sample`` (a numpy array) is
    what the statistics a model needs before training are taken from; :meth:`read` returns rows
    ``start:stop``; training reads blocks of ``block_rows`` in a shuffled order
    (:class:`synthforge.nn.training.StreamedRows`).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, path: Path, rows: int, width: int, sample: np.ndarray, block_rows: int | None = None) -> None:
        self.path, self.rows, self.width, self.sample = path, rows, width, sample
        # about BLOCK_BYTES a block, so the shuffle buffer's memory does not grow with a wide encoding
        self.block_rows = block_rows or int(np.clip(BLOCK_BYTES // max(width * self.dtype.itemsize, 1), 256, 16_384))

    @classmethod
    def write(cls, path: Path, chunks: Iterable[np.ndarray], width: int, sample: np.ndarray,
              block_rows: int | None = None) -> EncodedRows:
        rows = 0
        with open(path, "wb") as handle:
            for chunk in chunks:
                np.ascontiguousarray(chunk, dtype=cls.dtype).tofile(handle)
                rows += len(chunk)
        return cls(path, rows, width, sample.astype(cls.dtype), block_rows)

    def __len__(self) -> int:
        return self.rows

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.width

    @property
    def blocks(self) -> int:
        return -(-self.rows // self.block_rows)

    def block(self, index: int) -> np.ndarray:
        start = index * self.block_rows
        return self.read(start, min(start + self.block_rows, self.rows))

    def read(self, start: int, stop: int) -> np.ndarray:
        count = (stop - start) * self.width
        with open(self.path, "rb") as handle:
            values = np.fromfile(handle, dtype=self.dtype, count=count, offset=start * self.width * self.dtype.itemsize)
        return values.reshape(-1, self.width)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("EncodedRows do not fit in memory: read blocks (read, block) or use .sample; a generator "
                        "that needs the whole array must not declare supports_streaming.")

    def __reduce__(self) -> Any:  # to a Ray Train worker on this machine: the file's path, not its rows
        return type(self), (self.path, self.rows, self.width, self.sample, self.block_rows)

"""Reading and writing tables: csv, parquet, ndjson and Arrow IPC, as a built-in plugin.

Writers stream: ``open(path)`` returns a sink that takes one batch at a time, so a
10-million-row sample never has to sit in memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from synthforge.data.ownership import check_destination, check_file_destination, mark_owned
from synthforge.errors import DataError
from synthforge.hookspecs import hookimpl

if TYPE_CHECKING:
    from synthforge.plugins import SynthForgePluginManager


class Sink(Protocol):
    def write(self, batch: pl.DataFrame) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Reader:
    format: str
    extensions: tuple[str, ...]
    read_function: Any = field(repr=False)

    def read(self, path: Path, **options: Any) -> pl.DataFrame:
        return self.read_function(path, **options)


@dataclass(frozen=True)
class Writer:
    format: str
    extensions: tuple[str, ...]
    sink_class: Any = field(repr=False)

    def open(self, path: Path) -> Sink:
        return self.sink_class(path)


def _read_csv(path: Path, **options: Any) -> pl.DataFrame:
    ragged_rows = options.pop("ragged_rows", "refuse")
    _check_csv_shape(path, options.get("separator", ","), ragged_rows=ragged_rows)
    if ragged_rows == "allow":
        options.setdefault("truncate_ragged_lines", True)
    table = pl.read_csv(path, infer_schema_length=10_000, null_values=options.pop("null_values", [""]), **options)
    return numbers_with_missing_markers(table)


# What R, spreadsheets and databases write for a missing number. Read as missing only in a column whose every
# other value is a number: "NA" stays a value in a column of country codes (Namibia).
MISSING_MARKERS = ("NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "none", "-", "?", ".")


def numbers_with_missing_markers(table: pl.DataFrame) -> pl.DataFrame:
    """Text columns that hold numbers and a missing marker (``NA``, ``NULL``, ``-``…) as numbers with nulls."""
    return convert_missing_markers(table, missing_marker_columns(table))


def missing_marker_columns(table: pl.DataFrame) -> dict[str, pl.DataType]:
    """The text columns whose every value is a number or a missing marker (and some are markers), with the
    number type they hold."""
    found: dict[str, pl.DataType] = {}
    for name, dtype in table.schema.items():
        if dtype != pl.String:
            continue
        values = table.get_column(name)
        marked = values.is_in(list(MISSING_MARKERS))
        if not marked.any() or marked.sum() == values.len() - values.null_count():
            continue
        rest = values.filter(~marked & values.is_not_null()).str.strip_chars()
        if rest.cast(pl.Float64, strict=False).null_count():
            continue
        found[name] = pl.Int64 if rest.str.contains(r"^[+-]?\d+$").all() else pl.Float64
    return found


def convert_missing_markers(table: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    """``columns`` (from :func:`missing_marker_columns`) as numbers, their missing markers as nulls; a chunk of a
    streamed file is converted as its sample said."""
    converted = [pl.when(pl.col(name).is_in(list(MISSING_MARKERS))).then(None)
                 .otherwise(pl.col(name).str.strip_chars()).cast(dtype, strict=False).alias(name)
                 for name, dtype in columns.items() if table.schema.get(name) == pl.String]
    return table.with_columns(converted) if converted else table


def _check_csv_shape(path: Path, separator: str, ragged_rows: str) -> None:
    """Refuse what polars reads without a word: a header naming a column twice (the copy would become
    ``<name>_duplicated_0``) and, unless allowed, lines with fewer fields than the header (nulls)."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=separator)
        header = next(reader, [])
        _refuse_repeated_names(path, header)
        if ragged_rows == "allow":
            return
        ragged, examples = 0, []
        for row in reader:
            if row and len(row) != len(header):
                ragged += 1
                if len(examples) < 5:
                    examples.append(f"line {reader.line_num}: {len(row)}")
    if ragged:
        raise DataError(f"{path}: {ragged:,} line(s) hold another number of fields than the header's {len(header)} "
                        f"({', '.join(examples)}{', …' if ragged > len(examples) else ''}). Fix the file, or set "
                        f"`source.ragged_rows: allow` to read the missing fields as nulls.")


def _refuse_repeated_names(path: Path, header: list[str]) -> None:
    from collections import Counter

    counts = Counter(header)
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        named = ", ".join(f"{name!r} ({counts[name]} times)" for name in repeated)
        raise DataError(f"{path}: its header names {named}; a run would otherwise call the copies "
                        f"{repeated[0]!r}_duplicated_0, …. Give each column its own name in the file (or remove the "
                        f"copy) and run again.")


class _CsvSink:
    def __init__(self, path: Path) -> None:
        self.handle = open(path, "wb")  # noqa: SIM115 - the sink owns the handle across write() calls
        self.header = True

    def write(self, batch: pl.DataFrame) -> None:
        batch.write_csv(self.handle, include_header=self.header)
        self.header = False

    def close(self) -> None:
        self.handle.close()


class StreamSink:
    """CSV (a header first) or NDJSON batches to an open binary stream, such as standard output, left open."""

    TEXT_FORMATS = ("csv", "ndjson")

    def __init__(self, stream: Any, format: str = "csv") -> None:
        if format not in self.TEXT_FORMATS:
            raise DataError(f"only {' and '.join(self.TEXT_FORMATS)} are written to standard output, not {format!r}: "
                            f"name a file for {format}.")
        self.stream, self.format, self.header = stream, format, True

    def write(self, batch: pl.DataFrame) -> None:
        if self.format == "csv":
            batch.write_csv(self.stream, include_header=self.header)
        else:
            batch.write_ndjson(self.stream)
        self.header = False

    def close(self) -> None:
        self.stream.flush()


class _NdjsonSink:
    def __init__(self, path: Path) -> None:
        self.handle = open(path, "wb")  # noqa: SIM115 - the sink owns the handle across write() calls

    def write(self, batch: pl.DataFrame) -> None:
        batch.write_ndjson(self.handle)

    def close(self) -> None:
        self.handle.close()


class _ArrowSink:
    """Parquet and Arrow IPC through pyarrow's incremental writers."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind, self.writer = path, kind, None

    def write(self, batch: pl.DataFrame) -> None:
        table = batch.to_arrow()
        if self.writer is None:
            import pyarrow.ipc
            import pyarrow.parquet

            if self.kind == "parquet":
                self.writer = pyarrow.parquet.ParquetWriter(self.path, table.schema, compression="zstd")
            else:
                self.writer = pyarrow.ipc.new_file(str(self.path), table.schema)
        self.writer.write_table(table) if self.kind == "parquet" else self.writer.write(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


READERS = [
    Reader("csv", (".csv", ".csv.gz", ".tsv"), _read_csv),
    Reader("parquet", (".parquet", ".pq"), lambda path, **o: pl.read_parquet(path, **o)),
    Reader("ndjson", (".ndjson", ".jsonl"), lambda path, **o: pl.read_ndjson(path, **o)),
    Reader("ipc", (".arrow", ".ipc", ".feather"), lambda path, **o: pl.read_ipc(path, **o)),
]
WRITERS = [
    Writer("csv", (".csv",), _CsvSink),
    Writer("parquet", (".parquet", ".pq"), lambda path: _ArrowSink(path, "parquet")),
    Writer("ndjson", (".ndjson", ".jsonl"), _NdjsonSink),
    Writer("ipc", (".arrow", ".ipc", ".feather"), lambda path: _ArrowSink(path, "ipc")),
]


@hookimpl
def synthforge_readers() -> list[Reader]:
    return READERS


@hookimpl
def synthforge_writers() -> list[Writer]:
    return WRITERS


def _choose(options: list[Any], path: Path, format: str | None, what: str,
            how_to_say: str = "set `format:` explicitly") -> Any:
    if format is not None:
        for option in options:
            if option.format == format:
                return option
        known = ", ".join(sorted({o.format for o in options}))
        raise DataError(f"no {what} for format {format!r}; installed formats: {known}.")
    name = path.name.lower()
    for option in options:
        if any(name.endswith(extension) for extension in option.extensions):
            return option
    known = ", ".join(sorted(e for o in options for e in o.extensions))
    raise DataError(f"cannot tell the format of {path} from its extension ({known}); {how_to_say}.")


def read_table(path: str | Path, format: str | None = None, *, pm: SynthForgePluginManager | None = None,
               ragged_rows: str = "refuse", **options: Any) -> pl.DataFrame:
    """Read a table, with errors that name the file and say what went wrong."""
    path = Path(path)
    readers = pm.readers() if pm is not None else READERS
    reader = _choose(readers, path, format, "reader")
    if not path.exists():
        raise DataError(f"source file {path} does not exist.")
    if path.is_dir():
        raise DataError(f"source {path} is a folder; name a file.")
    if reader.format == "csv":
        options["ragged_rows"] = ragged_rows
    try:
        return reader.read(path, **options)
    except (pl.exceptions.PolarsError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"could not read {path} as {reader.format}: {first_line}") from error


def open_writer(path: Path, format: str | None = None, *, pm: SynthForgePluginManager | None = None) -> Sink:
    writers = pm.writers() if pm is not None else WRITERS
    return _choose(writers, path, format, "writer").open(path)


@contextlib.contextmanager
def atomic_table(path: str | Path, format: str | None = None, *, pm: SynthForgePluginManager | None = None,
                 overwrite: bool = False, protected: Iterable[tuple[str, Path]] = (),
                 how_to_say: str = "set `format:` explicitly") -> Iterator[Sink]:
    """A sink whose batches go to a hidden file beside ``path``, renamed into place when the block ends.

    The writer is chosen from ``path`` (or ``format``) before anything is created, so a bad
    extension names the file asked for (and ``how_to_say`` the format instead); a block that raises
    leaves no file behind. An existing file is replaced only with ``overwrite``, and never a folder,
    a link or one of ``protected`` (the inputs of the command, by role).
    """
    path = Path(path)
    writer = _choose(pm.writers() if pm is not None else WRITERS, path, format, "writer", how_to_say)
    check_file_destination(path, protected, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        sink = writer.open(Path(temporary))
        try:
            yield sink
        finally:
            sink.close()
        with_umask(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextlib.contextmanager
def stream_table(stream: Any, format: str = "csv") -> Iterator[Sink]:
    """A sink writing to ``stream`` (standard output: ``sample --out -``), flushed when the block ends."""
    sink = StreamSink(stream, format)
    try:
        yield sink
    finally:
        sink.close()


def write_table_atomic(table: pl.DataFrame, path: str | Path, format: str | None = None, *,
                       pm: SynthForgePluginManager | None = None) -> Path:
    """Write ``table`` to a temporary file beside ``path``, then rename it into place (replacing a file there)."""
    with atomic_table(path, format, pm=pm, overwrite=True) as sink:
        sink.write(table)
    return Path(path)


def with_umask(path: Path) -> Path:
    """Give a file the permissions of any file the user creates (0666 less the umask).

    ``tempfile.mkstemp`` and safetensors create files 0600, so a model or dataset a teammate
    should read would otherwise be the owner's alone.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return path


# --- staging folders beside an output ----------------------------------------------------------
#
# Every output is built in a hidden sibling, ``.<name>.<stage>-<token>-<pid>@<host>``, and renamed into
# place. A process killed mid-run leaves its sibling behind; the owner's pid and host in the name tell
# the next run (and ``synthforge jobs gc``) that nobody is writing it any more.

_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<stage>tmp|failed|old)-(?P<token>[0-9a-f]{8,12})"
                      r"(?:-(?P<pid>\d+)@(?P<host>.+))?$")
# A staging folder named before owners were recorded is taken as abandoned after this long.
_UNOWNED_AFTER_SECONDS = 3600


def staging_path(destination: Path, stage: str = "tmp") -> Path:
    """A fresh hidden sibling of ``destination`` that names this process as its owner."""
    token = uuid.uuid4().hex[:12]
    return destination.parent / f".{destination.name}.{stage}-{token}-{owner_tag()}"


def owner_tag() -> str:
    """This process as the owner of what it is writing, for a file or folder name: ``<pid>@<host>``."""
    return f"{os.getpid()}@{socket.gethostname()}"


def owner_gone(path: Path, pid: str | None, host: str | None) -> bool:
    """Whether nobody writes ``path`` any more: its owner (``pid`` on ``host``) is dead on this host, or, named
    before owners were recorded (no pid), it has not changed for an hour."""
    if pid is None or not host:
        try:
            return time.time() - path.stat().st_mtime > _UNOWNED_AFTER_SECONDS
        except OSError:
            return False
    return host == socket.gethostname() and not process_alive(int(pid))


def replace_atomically(source: Path, destination: Path, *, protected: Iterable[tuple[str, Path]] = (),
                       kind: str = "output") -> None:
    """Put the folder ``source`` at ``destination``, marked as SynthForge's; an existing destination is swapped
    out, then removed, but only when it holds nothing SynthForge did not write (:mod:`synthforge.data.ownership`):
    otherwise :class:`~synthforge.data.ownership.OutputRefused` is raised and both are left as they were."""
    check_destination(destination, protected)
    mark_owned(source, kind)
    if destination.exists():
        retired = staging_path(destination, "old")
        os.replace(destination, retired)
        os.replace(source, destination)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(source, destination)


@contextlib.contextmanager
def staged_folder(destination: Path, *, protected: Iterable[tuple[str, Path]] = (),
                  kind: str = "output") -> Iterator[Path]:
    """A fresh staging folder beside ``destination`` to build an output in: put in its place
    (:func:`replace_atomically`, the same ownership rules) when the block ends, removed if it raises."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(destination)
    staging.mkdir()
    try:
        yield staging
        replace_atomically(staging, destination, protected=protected, kind=kind)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def abandoned_staging(destination: Path) -> list[Path]:
    """The staging siblings of ``destination`` whose owner process is gone (on this host)."""
    if not destination.parent.is_dir():
        return []
    found = []
    for candidate in destination.parent.iterdir():
        match = _STAGING.match(candidate.name)
        if match and match["name"] == destination.name and owner_gone(candidate, match["pid"], match["host"]):
            found.append(candidate)
    return sorted(found)


def remove_abandoned_staging(destination: Path) -> list[Path]:
    """Remove what killed runs left beside ``destination``; return what was removed."""
    removed = []
    for path in abandoned_staging(destination):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts as gone)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True

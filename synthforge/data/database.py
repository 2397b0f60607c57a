"""A database as a source of related tables (``source.database``) and as the target of a run (``output.database``).

Reading: the catalog (SQLAlchemy's inspector) gives each table's columns and types, its primary key, its
foreign keys, NOT NULL, UNIQUE and CHECK constraints; :func:`database_tables` turns it into the
``source.tables`` a recipe of related tables gives (primary key, foreign keys, ``unique`` and simple
``check`` rules), so :mod:`synthforge.engine_tables` runs unchanged; the rows are read in chunks through a
server-side cursor.

Writing: :func:`open_target` creates the source's DDL (types, primary keys, NOT NULL, UNIQUE, foreign keys)
in the target and loads the synthetic tables parents first (COPY on PostgreSQL, executemany elsewhere),
all in one transaction that commits only when the caller's block ends without an error, so a failed run
or gate leaves the target as it was.

Credentials never reach a recipe, a manifest, a log or an error: a URL names them as ``${VARIABLE}``
(expanded from the environment when connecting) or the recipe gives ``password_file:``; every URL shown is
masked (:func:`masked`), and every database error is shown with the password cut out (:func:`database_error`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from synthforge.errors import DataError, RecipeError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from synthforge.recipe import Recipe

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: a CHECK a rule can keep: ``column op number`` or ``column op column``, casts and parentheses aside
_SIMPLE_CHECK = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=|<>|!=|=|<|>)\s*(-?\d+(?:\.\d+)?|[A-Za-z_]\w*)\s*$")


def is_database_url(text: str) -> bool:
    """Whether ``text`` names a database (``dialect[+driver]://…``) rather than a file."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+]*://", text) is not None


# --- connecting, with the password kept out of sight ------------------------------------------


def connection_url(url: str, password_file: Path | None = None, *, key: str = "source.database",
                   base: Path | None = None) -> sa.URL:
    """The URL to connect with: ``${VARIABLE}`` expanded from the environment, the password read from
    ``password_file`` where given, ``postgresql://`` driven by psycopg (the driver SynthForge installs), a
    relative SQLite file relative to ``base`` (the recipe's folder, as every path of a recipe)."""
    import sqlalchemy as sa

    def variable(match: re.Match[str]) -> str:
        if match.group(1) not in os.environ:
            raise RecipeError(f"{key}: the environment variable {match.group(1)!r} the URL names is not set; set it "
                              f"(export {match.group(1)}=…) or give password_file:.")
        return os.environ[match.group(1)]

    expanded = VARIABLE.sub(variable, url)
    try:
        parsed = sa.make_url(expanded)
    except sa.exc.ArgumentError:
        raise RecipeError(f"{key}: {masked(url)!r} is not a database URL; write it as SQLAlchemy does, e.g. "
                          f"postgresql://user@host/db or sqlite:///file.db.") from None
    if password_file is not None:
        try:
            parsed = parsed.set(password=password_file.read_text(encoding="utf-8").strip())
        except OSError as error:
            raise RecipeError(f"{key}: password_file {str(password_file)!r} cannot be read ({error.strerror}).") \
                from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if (base is not None and parsed.get_backend_name() == "sqlite" and parsed.database
            and parsed.database != ":memory:" and not parsed.database.startswith("file:")
            and not Path(parsed.database).is_absolute()):
        parsed = parsed.set(database=str(base / parsed.database))
    return parsed


def database_file(url: str, base: Path) -> Path | None:
    """The file a SQLite URL names (relative to ``base``), or None for a server's database."""
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(VARIABLE.sub("x", url))
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return base / parsed.database.removeprefix("file:").split("?")[0]


def source_url(recipe: Recipe) -> sa.URL:
    source = recipe.source
    assert source.database is not None
    return connection_url(source.database, recipe.resolve(source.password_file) if source.password_file else None,
                          base=recipe.resolve(Path(".")))


def target_url(recipe: Recipe) -> sa.URL:
    """``output.database``, refused where it is the source itself (a run never replaces its input)."""
    from synthforge.recipe import recipe_locator

    output = recipe.output
    assert output.database is not None
    url = connection_url(output.database, recipe.resolve(output.password_file) if output.password_file else None,
                         key="output.database", base=recipe.resolve(Path(".")))
    file = database_file(output.database, recipe.resolve(Path(".")))
    folder = recipe.resolve(output.path)
    if file is not None and file.resolve().is_relative_to(folder):
        where = recipe_locator(recipe)(("output", "database"))
        raise RecipeError(f"{where}output.database: the SQLite file {str(file)!r} lies inside output.path, which a "
                          f"run replaces whole; put it beside the folder.")
    if recipe.source.database is not None:
        source = source_url(recipe)
        default = "public" if url.get_backend_name() == "postgresql" else None
        if (_place(source), recipe.source.database_schema or default) == \
                (_place(url), output.database_schema or default):
            where = recipe_locator(recipe)(("output", "database"))
            raise RecipeError(f"{where}output.database is the source database itself; a run never writes into "
                              f"its input: give another database, or another schema (output.schema).")
    return url


def _place(url: sa.URL) -> str:
    if url.get_backend_name() == "sqlite" and url.database:
        return f"sqlite:{Path(url.database).resolve()}"
    return url.set(password=None, drivername=url.get_backend_name()).render_as_string()


def masked(url: str | sa.URL) -> str:
    """``url`` with its password as ``***``: the only form of a URL a log, a report or an error shows."""
    import sqlalchemy as sa

    try:
        return (url if isinstance(url, sa.URL) else sa.make_url(url)).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def database_error(error: Exception, url: sa.URL, what: str) -> DataError:
    """A database failure as an error a user can act on, without the password or SQLAlchemy's boilerplate."""
    text = str(getattr(error, "orig", None) or error).split("\n(Background on this error")[0].strip()
    if url.password:
        text = text.replace(str(url.password), "***")
    return DataError(f"{what} ({masked(url)}): {text}")


def create_engine(url: sa.URL) -> sa.Engine:
    """An engine whose transactions cover DDL too; SQLite also checks foreign keys on every insert."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    if url.get_backend_name() == "sqlite":
        # pysqlite starts a transaction at the first INSERT only, so a CREATE TABLE would commit on its own;
        # SQLAlchemy's documented remedy: let SQLAlchemy say BEGIN itself.
        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys = ON")

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql("BEGIN")
    return engine


# --- the catalog ---------------------------------------------------------------------------------


@dataclass
class ForeignKey:
    columns: list[str]
    parent: str
    parent_columns: list[str]
    name: str | None = None


@dataclass
class TableCatalog:
    """One table as the catalog describes it."""

    name: str
    columns: dict[str, str]  # name → type, as the database names it
    nullable: dict[str, bool]
    primary_key: list[str]
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    unique: list[list[str]] = field(default_factory=list)
    checks: list[tuple[str | None, str]] = field(default_factory=list)


def read_catalog(connection: sa.Connection, schema: str | None, tables: list[str] | None, *, where: str) \
        -> dict[str, TableCatalog]:
    """The catalog of ``tables`` (default: every table of ``schema``), parents first."""
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    present = inspector.get_table_names(schema=schema)
    if tables:
        missing = [t for t in tables if t not in present]
        if missing:
            raise RecipeError(f"{where}the database has no table {', '.join(map(repr, missing))}"
                              f"{f' in schema {schema!r}' if schema else ''}; its tables: "
                              f"{', '.join(present) or 'none'}.")
    chosen = list(tables) if tables else present
    if not chosen:
        raise DataError(f"{where}the database has no tables{f' in schema {schema!r}' if schema else ''}.")
    found: dict[str, TableCatalog] = {}
    for name in chosen:
        columns = inspector.get_columns(name, schema=schema)
        entry = TableCatalog(name, {c["name"]: str(c["type"]) for c in columns},
                             {c["name"]: bool(c["nullable"]) for c in columns},
                             list(inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or []))
        for key in inspector.get_foreign_keys(name, schema=schema):
            entry.foreign_keys.append(ForeignKey(list(key["constrained_columns"]), key["referred_table"],
                                                 list(key["referred_columns"]), key.get("name")))
        entry.unique = [list(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema)]
        entry.unique += [list(i["column_names"]) for i in inspector.get_indexes(name, schema=schema)
                         if i.get("unique") and list(i["column_names"]) not in entry.unique
                         and None not in i["column_names"]]
        with contextlib.suppress(NotImplementedError):
            entry.checks = [(c.get("name"), c["sqltext"]) for c in inspector.get_check_constraints(name, schema=schema)]
        found[name] = entry
    _refuse_what_cannot_be_kept(found, where)
    return found


def _refuse_what_cannot_be_kept(tables: dict[str, TableCatalog], where: str) -> None:
    problems = []
    for table in tables.values():
        if len(table.primary_key) > 1:
            problems.append(f"table {table.name!r} has a composite primary key ({', '.join(table.primary_key)}); "
                            f"SynthForge keys a table by one column")
        for key in table.foreign_keys:
            label = f"foreign key {key.name!r}" if key.name else "a foreign key"
            if len(key.columns) > 1:
                problems.append(f"table {table.name!r}: {label} ({', '.join(key.columns)}) → {key.parent} is "
                                f"composite; SynthForge follows one-column keys")
            elif key.parent not in tables:
                problems.append(f"table {table.name!r}: {label} ({key.columns[0]}) refers to {key.parent!r}, which "
                                f"is not among the tables read; add it to source.tables")
            elif key.parent_columns != tables[key.parent].primary_key:
                problems.append(f"table {table.name!r}: {label} ({key.columns[0]}) refers to "
                                f"{key.parent}.{', '.join(key.parent_columns)}, not to its primary key")
    if problems:
        raise DataError(f"{where}" + "; ".join(problems) + ". Leave such tables out with source.tables: [...], "
                        "or export them to files and describe them under source.tables.")


def simple_check(sqltext: str) -> str | None:
    """A CHECK as a SynthForge rule (``dep_delay >= -100``), or None for one a rule cannot state."""
    text = re.sub(r"::[A-Za-z_ ]+(\[\])?", "", sqltext)  # PostgreSQL's casts
    text = re.sub(r"'(-?\d+(?:\.\d+)?)'", r"\1", text)  # quoted numbers, as PostgreSQL writes them back
    if re.search(r"\w\s*\(", text):  # a function call: no rule states it
        return None
    text = text.replace("(", " ").replace(")", " ")
    match = _SIMPLE_CHECK.match(text)
    if match is None:
        return None
    left, op, right = match.groups()
    op = {"=": "==", "<>": "!="}.get(op, op)
    return f"{left} {op} {right}"


# --- the source: catalog and rows as a recipe's source.tables ----------------------------------------


def database_tables(recipe: Recipe, log: Callable[[str], None] | None = None) \
        -> tuple[Recipe, dict[str, pl.DataFrame]]:
    """``recipe`` with its ``source.tables`` filled in from the database's catalog (the recipe's own per-table
    options kept, its keys first), and every table's rows."""
    from synthforge.recipe import ForeignKeySpec, TableSpec, recipe_locator

    source = recipe.source
    assert source.database is not None
    where = recipe_locator(recipe)(("source", "database"))
    url = source_url(recipe)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            catalog = read_catalog(connection, source.database_schema, list(source.tables) or None, where=where)
            frames = {name: read_rows(connection, name, source.database_schema, catalog[name], source.chunk_rows)
                      for name in catalog}
    except (RecipeError, DataError):
        raise
    except Exception as error:  # the driver's errors: a refused connection, a missing right, …
        if type(error).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "sqlite3"):
            raise
        raise database_error(error, url, f"{where}source.database: reading the database failed") from None
    finally:
        engine.dispose()
    empty = [name for name, frame in frames.items() if frame.height == 0]
    if empty:
        rest = [name for name in frames if name not in empty]
        raise DataError(f"{where}source.database: {', '.join(map(repr, empty))} "
                        f"{'has' if len(empty) == 1 else 'have'} no rows, nothing to learn from; leave "
                        f"{'it' if len(empty) == 1 else 'them'} out with source.tables: [{', '.join(rest)}].")
    tables = {}
    for name, entry in catalog.items():
        given = source.tables.get(name) or TableSpec()
        set_by_recipe = given.model_fields_set
        keys = sorted(entry.foreign_keys, key=lambda k: _parent_rank(k, frames[name], frames))
        rules = list(given.constraints)
        stated = {rule.describe() for rule in rules}
        for columns in entry.unique:
            if len(columns) == 1 and columns != entry.primary_key and f"unique: {columns[0]}" not in stated:
                rules.append(_rule({"unique": columns[0]}))
        for check_name, sqltext in entry.checks:
            rule = simple_check(sqltext)
            if rule is not None and rule not in stated:
                rules.append(_rule(rule))
            elif rule is None and log is not None:
                log(f"table {name!r}: CHECK {check_name or sqltext!r} is not a rule SynthForge can state; the "
                    f"target keeps it and refuses rows that break it")
        tables[name] = given.model_copy(update={
            "primary_key": given.primary_key if "primary_key" in set_by_recipe else
            (entry.primary_key[0] if entry.primary_key else None),
            "foreign_keys": given.foreign_keys if "foreign_keys" in set_by_recipe else
            [ForeignKeySpec(column=k.columns[0], parent=k.parent) for k in keys],
            "constraints": rules})
    expanded = recipe.model_copy(deep=True)
    expanded.source = source.model_copy(update={"tables": tables})
    return expanded, frames


def _rule(value: Any) -> Any:
    from synthforge.constraints import Constraint

    return Constraint.model_validate(value)


def _parent_rank(key: ForeignKey, child: pl.DataFrame, frames: dict[str, pl.DataFrame]) -> tuple[int, int]:
    """The first foreign key makes a table a child: one that is never null, to the largest parent (a flight
    belongs to its plane more than to its airline)."""
    column = key.columns[0]
    nulls = child.get_column(column).null_count() if column in child.columns else child.height
    return (1 if nulls else 0, -frames[key.parent].height)


def read_rows(connection: sa.Connection, name: str, schema: str | None, entry: TableCatalog, chunk_rows: int) \
        -> pl.DataFrame:
    """One table's rows, ``chunk_rows`` at a time through a server-side cursor; exact decimals as floats."""
    import sqlalchemy as sa

    # the catalog's types: a dialect storing dates as text (SQLite) then hands back dates
    table = sa.Table(name, sa.MetaData(), autoload_with=connection, schema=schema)
    if connection.dialect.name == "postgresql":
        return _copy_out(connection, table)
    streamed = connection.execution_options(stream_results=True, max_row_buffer=chunk_rows)
    result = streamed.execute(sa.select(table))
    chunks = []
    while rows := result.fetchmany(chunk_rows):
        chunks.append(pl.DataFrame([tuple(row) for row in rows], schema=list(entry.columns), orient="row",
                                   infer_schema_length=None))
    frame = pl.concat(chunks, how="vertical_relaxed") if chunks else pl.DataFrame(
        schema={c: pl.String for c in entry.columns})
    decimals = [c for c, t in frame.schema.items() if isinstance(t, pl.Decimal)]
    return frame.with_columns(pl.col(decimals).cast(pl.Float64)) if decimals else frame


def _copy_out(connection: sa.Connection, table: sa.Table) -> pl.DataFrame:
    """PostgreSQL's COPY TO, read by polars' CSV reader: 1M flights in a few seconds, not a Python tuple a row.
    Times with a zone come as UTC; booleans as PostgreSQL's t/f; types polars has no reader for, as text."""
    preparer = connection.dialect.identifier_preparer
    selected, types, after = [], {}, []
    for column in table.columns:
        quoted = preparer.quote(column.name)
        dtype = _frame_type(column.type)
        if isinstance(dtype, pl.Datetime):
            # one fixed layout (PostgreSQL leaves out a fraction's trailing zeros, and the fraction when it is 0)
            zoned = getattr(column.type, "timezone", False)
            selected.append(f"to_char({quoted}{' AT TIME ZONE ' + repr('UTC') if zoned else ''}, "
                            f"'YYYY-MM-DD\"T\"HH24:MI:SS.US') AS {quoted}")
            parsed = pl.col(column.name).str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False)
            after.append(parsed.dt.replace_time_zone("UTC") if zoned else parsed)
        else:
            selected.append(quoted)
            if dtype == pl.Boolean:
                after.append(pl.col(column.name) == "t")
            elif dtype == pl.Time:
                after.append(pl.col(column.name).str.to_time(strict=False))
        types[column.name] = dtype if dtype in (pl.Int64, pl.Float64, pl.Date) else pl.String
    buffer = io.BytesIO()
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY (SELECT {', '.join(selected)} FROM {preparer.format_table(table)}) TO STDOUT "
                     f"(FORMAT csv)") as copy:
        for data in copy:
            buffer.write(data)
    if buffer.tell() == 0:
        return pl.DataFrame(schema=types)
    buffer.seek(0)
    frame = pl.read_csv(buffer, has_header=False, new_columns=list(types), schema=types)
    return frame.with_columns(after) if after else frame


# --- the target ----------------------------------------------------------------------------------


def target_metadata(source_url: sa.URL | None, source_schema: str | None, relations: Any,
                    frames: dict[str, pl.DataFrame], schema: str | None, target_backend: str) -> sa.MetaData:
    """The target's tables: the source database's DDL (types, keys, NOT NULL, UNIQUE, CHECK on the same kind of
    database) where there is one, else types from the synthetic frames and the recipe's keys."""
    import sqlalchemy as sa

    metadata = sa.MetaData(schema=schema)
    if source_url is not None:
        source = create_engine(source_url)
        try:
            reflected = sa.MetaData()
            reflected.reflect(source, schema=source_schema, only=list(relations.tables))
        finally:
            source.dispose()
        same_kind = source_url.get_backend_name() == target_backend
        for name in relations.order():
            table = reflected.tables[f"{source_schema}.{name}" if source_schema else name]
            copied = table.to_metadata(metadata, schema=schema)
            for column in copied.columns:
                # the source's sequences, functions and identities: the target takes the synthetic keys as they are
                column.server_default = None
                column.identity = None
                column.autoincrement = False
                if not same_kind:
                    column.type = _generic(column.type)
            if not same_kind:
                for constraint in [c for c in copied.constraints if isinstance(c, sa.CheckConstraint)]:
                    copied.constraints.discard(constraint)
        return metadata
    for name in relations.order():
        frame = frames[name]
        primary = relations.primary_keys[name]
        columns = [sa.Column(c, _sql_type(t), primary_key=c == primary, nullable=c != primary
                             and frame.get_column(c).null_count() > 0, autoincrement=False)
                   for c, t in frame.schema.items()]
        keys = [sa.ForeignKeyConstraint([r.column], [f"{f'{schema}.' if schema else ''}{r.parent}."
                                                     f"{relations.primary_keys[r.parent]}"])
                for r in relations.relations if r.child == name]
        sa.Table(name, metadata, *columns, *keys)
    return metadata


def _generic(column_type: Any) -> Any:
    import sqlalchemy as sa

    try:
        return column_type.as_generic()
    except NotImplementedError:
        return sa.Text()


def _sql_type(dtype: pl.DataType) -> Any:
    import sqlalchemy as sa

    if dtype.is_integer():
        return sa.BigInteger()
    if dtype.is_float():
        return sa.Float(precision=53)
    if dtype == pl.Boolean:
        return sa.Boolean()
    if dtype == pl.Date:
        return sa.Date()
    if isinstance(dtype, pl.Datetime):
        return sa.DateTime(timezone=dtype.time_zone is not None)
    if dtype == pl.Time:
        return sa.Time()
    return sa.Text()


def _frame_type(column_type: Any) -> pl.DataType:
    import sqlalchemy as sa

    for kind, dtype in ((sa.Boolean, pl.Boolean), (sa.Integer, pl.Int64), (sa.Float, pl.Float64),
                        (sa.Numeric, pl.Float64), (sa.DateTime, pl.Datetime("us")), (sa.Date, pl.Date),
                        (sa.Time, pl.Time), (sa.String, pl.String)):
        if isinstance(column_type, kind):
            return dtype
    return pl.String


def as_columns(frame: pl.DataFrame, table: sa.Table) -> pl.DataFrame:
    """``frame`` in the target table's columns and types (whole numbers rounded, absent columns null)."""
    import sqlalchemy as sa

    expressions = []
    for column in table.columns:
        dtype = _frame_type(column.type)
        if column.name not in frame.columns:
            expressions.append(pl.lit(None, dtype=dtype).alias(column.name))
            continue
        value = pl.col(column.name)
        current = frame.schema[column.name]
        if dtype == pl.Int64 and current.is_float():
            value = value.round(0)
        if isinstance(dtype, pl.Datetime) and isinstance(current, pl.Datetime):
            if current.time_zone is not None and not getattr(column.type, "timezone", False):
                value = value.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            expressions.append(value.alias(column.name))
            continue
        if current == pl.String and dtype.is_temporal():  # a CSV's text
            if isinstance(dtype, pl.Datetime) and getattr(column.type, "timezone", False):
                parsed = value.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", time_unit="us", strict=False)
            elif isinstance(dtype, pl.Datetime):
                parsed = value.str.to_datetime(time_unit="us", strict=False)
            else:
                parsed = {pl.Date: value.str.to_date, pl.Time: value.str.to_time}[dtype](strict=False)
            expressions.append(parsed.alias(column.name))
            continue
        if isinstance(column.type, sa.Numeric) and not isinstance(column.type, sa.Float) and column.type.scale:
            value = value.cast(pl.Float64, strict=False).round(column.type.scale)
        expressions.append(value.cast(dtype, strict=False).alias(column.name))
    return frame.select(expressions)


@dataclass
class Target:
    """An open transaction on the target database, its tables created; :meth:`load` fills one."""

    connection: sa.Connection
    metadata: sa.MetaData
    url: sa.URL
    rows: dict[str, int] = field(default_factory=dict)

    def load(self, name: str, batches: Iterator[pl.DataFrame]) -> None:
        table = self.metadata.tables[f"{self.metadata.schema}.{name}" if self.metadata.schema else name]
        for batch in batches:
            frame = as_columns(batch, table)
            if frame.height == 0:
                continue
            if self.url.get_backend_name() == "postgresql":
                self._copy(table, frame)
            else:
                self.connection.execute(table.insert(), frame.to_dicts())
            self.rows[name] = self.rows.get(name, 0) + frame.height

    def _copy(self, table: sa.Table, frame: pl.DataFrame) -> None:
        """PostgreSQL's COPY, fed CSV from polars: many times faster than INSERTs."""
        preparer = self.connection.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(c.name) for c in table.columns)
        # Text columns are quoted always, so an empty string stays one and an empty field is a null.
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, quote_style="non_numeric", null_value="")
        cursor = self.connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())


def _existing(connection: sa.Connection, schema: str | None, names: list[str]) -> list[str]:
    import sqlalchemy as sa

    present = set(sa.inspect(connection).get_table_names(schema=schema))
    return [name for name in names if name in present]


def _refuse_filled(connection: sa.Connection, url: sa.URL, schema: str | None, names: list[str], where: str) -> None:
    import sqlalchemy as sa

    filled = [name for name in names if connection.execute(
        sa.select(sa.literal(1)).select_from(sa.table(name, schema=schema)).limit(1)).first()]
    if filled:
        raise DataError(f"{where}output.database: the target ({masked(url)}) already holds rows in "
                        f"{', '.join(map(repr, filled))}; point output.database elsewhere, or say "
                        f"if_exists: replace to replace those tables.")


def check_target(url: sa.URL, schema: str | None, names: list[str], if_exists: str, *, where: str) -> None:
    """Before anything is fitted: a target holding rows in these tables is refused unless ``replace``
    (:func:`open_target` looks again, in its transaction)."""
    if if_exists == "replace":
        return
    file = _sqlite_file(url)
    if file is not None and not file.exists():  # nothing to refuse; connecting would create the file
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _refuse_filled(connection, url, schema, _existing(connection, schema, names), where)
    except (DataError, RecipeError):
        raise
    except Exception as error:
        if type(error).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "sqlite3"):
            raise
        raise database_error(error, url, f"{where}output.database: the target cannot be read") from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def open_target(url: sa.URL, metadata: sa.MetaData, if_exists: str, *, where: str,
                log: Callable[[str], None]) -> Iterator[Target]:
    """One transaction on the target: an existing non-empty table of the same name refused (or, with
    ``if_exists: replace``, dropped), the tables created; committed when the block ends without an error,
    rolled back otherwise — the target then is as it was."""
    import sqlalchemy as sa

    file = _sqlite_file(url)
    created = file is not None and not file.exists()  # a failed write removes it: the target was no file
    committed = False
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            schema = metadata.schema
            if schema and url.get_backend_name() == "postgresql":
                connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            ours = _existing(connection, schema, [t.name for t in metadata.sorted_tables])
            if if_exists != "replace":
                _refuse_filled(connection, url, schema, ours, where)
            ours = [metadata.tables[f"{schema}.{name}" if schema else name] for name in ours]
            for table in reversed(ours):
                table.drop(connection)
                log(f"dropped the target's table {table.name!r} (if_exists: replace)")
            if url.get_backend_name() == "postgresql":
                # A foreign key added after the rows is checked in one join; while loading, a trigger per row
                # checks it (1M flights with four keys: 115 s against 6.6 s).
                for table in metadata.sorted_tables:
                    for column in table.columns:  # what create_all would create first: the enum types
                        if isinstance(column.type, sa.Enum) and hasattr(column.type, "create"):
                            column.type.create(connection, checkfirst=True)
                    connection.execute(sa.schema.CreateTable(table, include_foreign_key_constraints=[]))
                later = [key for table in metadata.sorted_tables for key in table.foreign_key_constraints]
            else:
                metadata.create_all(connection)
                later = []
            yield Target(connection, metadata, url)
            for key in later:
                connection.execute(sa.schema.AddConstraint(key))
        committed = True
    except (DataError, RecipeError):
        raise
    except Exception as error:
        if type(error).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "sqlite3"):
            raise
        raise database_error(error, url, f"{where}output.database: writing the target failed, nothing was "
                                         f"written") from None
    finally:
        engine.dispose()
        if created and not committed and file is not None:
            file.unlink(missing_ok=True)


def _sqlite_file(url: sa.URL) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


# --- profile ---------------------------------------------------------------------------------------


def database_recipe(url: str, schema: str | None = None, password_file: Path | None = None, *,
                    generator: str = "copula") -> str:
    """``synthforge profile <URL>``: a recipe (YAML) of the database's tables, keys and rules that runs as it
    is. A password written in ``url`` is replaced by ``${PGPASSWORD}``: a recipe never holds one."""
    import sqlalchemy as sa
    import yaml

    from synthforge.recipe import load_recipe

    parsed = sa.make_url(VARIABLE.sub("x", url)) if is_database_url(url) else None
    if parsed is None:
        raise RecipeError(f"{masked(url)!r} is not a database URL (dialect://…).")
    written = url
    if parsed.password is not None and not VARIABLE.search(url):
        written = masked(url).replace(":***@", ":${PGPASSWORD}@", 1)
    source: dict[str, Any] = {"database": written, **({"schema": schema} if schema else {})}
    if password_file is not None:
        source["password_file"] = str(password_file)
    stem = Path(parsed.database or "database").stem or "database"
    draft = {"source": source, "output": {"path": f"{stem}-synthetic"}}
    recipe = load_recipe(draft)
    if written != url:  # read with the password given, write the recipe with the variable
        recipe.source.database = url
    expanded, frames = database_tables(recipe)
    from synthforge.engine_tables import load_tables
    from synthforge.plugins import get_plugin_manager

    _, _, schemas = load_tables(expanded, get_plugin_manager(), frames)  # the keys checked, as a run would
    lines = [f"# synthforge profile of {masked(url)}{f' schema {schema!r}' if schema else ''}: "
             f"{len(frames)} tables", "#", "# table                          rows  primary key     foreign keys"]
    tables: dict[str, Any] = {}
    for name, spec in expanded.source.tables.items():
        keys = ", ".join(f"{k.column} → {k.parent}" for k in spec.foreign_keys)
        lines.append(f"#   {name[:26]:<26} {frames[name].height:>8,}  {(spec.primary_key or '-')[:14]:<14}  {keys}"
                     .rstrip())
        entry: dict[str, Any] = {}
        if spec.primary_key:
            entry["primary_key"] = spec.primary_key
        if spec.foreign_keys:
            entry["foreign_keys"] = [{"column": k.column, "parent": k.parent} for k in spec.foreign_keys]
        if spec.constraints:
            entry["constraints"] = [rule.check if rule.check is not None else {rule.kind: getattr(rule, rule.kind)}
                                    for rule in spec.constraints]
        tables[name] = entry
    keys = {(name, key) for name, spec in expanded.source.tables.items()
            for key in [spec.primary_key, *(k.column for k in spec.foreign_keys)] if key}
    unlearned = [f"#   {name}.{column.name}: {column.kind.value}, {column.note}" for name, schema in schemas.items()
                 for column in schema.columns if not column.kind.learned and (name, column.name) not in keys]
    if unlearned:
        lines += ["#", "# Not learned, written back as the kind says (identifiers and personal columns regenerated,",
                  "# never copied); give a kind under tables.NAME.columns to learn one:", *unlearned]
    if written != url:
        lines += ["#", "# The URL's password is read from $PGPASSWORD: a recipe never holds one."]
    lines += ["#", "# The first foreign key of a table makes it a child of that parent (its rows are generated per",
              "# parent row); reorder them to choose another. Run it: synthforge run <this file>.", ""]
    recipe_data = {"version": 1, "name": stem, "seed": 0,
                   "source": {**source, "tables": tables}, "holdout": 0.2, "generator": {"name": generator},
                   "output": {"path": f"{stem}-synthetic", "database": f"sqlite:///{stem}-synthetic.db"}}
    return "\n".join(lines) + yaml.safe_dump(recipe_data, sort_keys=False, allow_unicode=True, width=120)

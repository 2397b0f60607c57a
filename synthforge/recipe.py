"""Recipes: YAML read as data (never code), validated into pydantic models.

Every error names the file, the line and the key path, and suggests the key that
was probably meant. Paths in a recipe are relative to the recipe file, so a recipe
runs the same from any working directory.

A minimal recipe::

    seed: 42
    source: {path: data/adult/train.csv}
    generator: {name: copula}
    output: {mode: synthesize, rows: 32561, path: ../out/adult-synthetic}
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from synthforge.checks.base import OnFail
from synthforge.constraints import Constraint
from synthforge.data.schema import ColumnKind, ColumnOverride
from synthforge.errors import RecipeError, SynthForgeError
from synthforge.privacy.shares import DEFAULT_PRIVACY_SHARES

if TYPE_CHECKING:
    from synthforge.plugins import SynthForgePluginManager

Mode = Literal["synthesize", "augment", "rebalance", "conditions", "impute"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeneratorSpec(_Strict):
    name: str = Field("copula", description="A generator from `synthforge plugins`.")
    params: dict[str, Any] = Field(default_factory=dict, description="The generator's own typed parameters.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps, for neural generators.")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for this run (torch, BLAS, OpenMP); default: $SYNTHFORGE_THREADS, the "
                                "CPUs a Ray task was given, or this machine's cores (a worker divides them among "
                                "its concurrent jobs).")
    workers: int = Field(
        1, ge=1, le=1024, description="Above 1: train a torch generator data-parallel on this many Ray Train "
                                      "workers (one model; each worker a share of every batch).")
    checkpoint_path: str | None = Field(
        None, description="With workers: where Ray Train keeps checkpoints, a path every worker reaches (a shared "
                          "disk, s3://…; a folder is relative to the recipe); default: a temporary folder here.")
    max_failures: int = Field(2, ge=0, description="With workers: how many lost workers training survives, each "
                                                    "time restarting from the last checkpoint.")
    ray_address: str | None = Field(None, description="With workers: the Ray cluster to join (default: "
                                                      "$RAY_ADDRESS, else a local Ray started here).")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        # `generator: copula` (or `-p generator=copula`, to run a recipe with another installed generator)
        return {"name": value} if isinstance(value, str) else value


class _TableOptions(_Strict):
    """How one table is read and described; shared by a flat source and each table of a dataset."""

    format: str | None = Field(None, description="Reader to use; by default chosen from the file's extension.")
    columns: dict[str, ColumnOverride] = Field(
        default_factory=dict, description="Per-column kind and identifier handling, overriding inference."
    )
    drop: list[str] = Field(default_factory=list, description="Columns to leave out entirely.")
    nan_as_null: bool = Field(False, description="Treat NaN and ±inf in float columns as missing values.")
    max_categories: int = Field(1000, ge=2, description="Above this many distinct values, text needs a `kind`.")
    locale: str | None = Field(
        None, description="The Faker locale its personal columns (names, e-mails, phones, addresses) are written in: "
                          "en_US, en_GB, de_DE, fr_FR, …; default: the one their values suggest. "
                          "`columns.NAME.locale` sets one column's.")
    ragged_rows: Literal["refuse", "allow"] = Field(
        "refuse", description="CSV lines with another number of fields than the header: refused with their line "
                              "numbers, or allowed (missing fields read as nulls, extra ones dropped).")

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        from synthforge.data.fake import check_locale

        return None if value is None else check_locale(value)

    @property
    def invalid_policy(self) -> dict[str, str]:
        """What to do with a value of each column that does not parse (``columns.NAME.invalid``), for
        :func:`synthforge.data.schema.to_internal`."""
        return {name: column.invalid for name, column in self.columns.items()}

    @field_validator("columns", mode="before")
    @classmethod
    def _kind_shorthand(cls, value: Any) -> Any:
        """``columns: {name: identifier}`` is short for ``columns: {name: {kind: identifier}}``."""
        if isinstance(value, dict):
            return {k: {"kind": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class ForeignKeySpec(_Strict):
    """A column whose values are keys of another table's rows."""

    column: str = Field(description="The column of this table holding the key.")
    parent: str = Field(description="The table whose primary key it holds (a name under source.tables).")


class TableSpec(_TableOptions):
    """One table of a dataset of related tables (``source.tables``)."""

    path: Path | None = Field(None, description="csv, parquet, ndjson or Arrow IPC file; relative to the recipe "
                                                "file (none for a table of source.database).")
    primary_key: str | None = Field(None, description="The column that identifies each row (unique, no nulls).")
    foreign_keys: list[ForeignKeySpec] = Field(
        default_factory=list, description="Keys of other tables. The first makes this table a child of that "
                                          "parent: its rows are generated for each synthetic parent row, their "
                                          "number learned; further ones are references, chosen by a learned model.")
    sequence_by: str | None = Field(
        None, description="A child's column (date or number) that orders each parent's rows as a sequence; each "
                          "row is then generated given the rows before it.")
    constraints: list[Constraint] = Field(default_factory=list, description="This table's business rules.")
    target: str | None = Field(None, description="Column to predict, for this table's ML-efficacy checks.")
    generator: GeneratorSpec | None = Field(
        None, description="This table's own generator (default: the recipe's), e.g. the copula for a small lookup "
                          "table beside an autoregressive model for the rest.")

    @field_validator("foreign_keys", mode="before")
    @classmethod
    def _mapping_shorthand(cls, value: Any) -> Any:
        """``foreign_keys: {country_id: countries}`` is short for ``[{column: country_id, parent: countries}]``."""
        if isinstance(value, dict):
            return [{"column": column, "parent": parent} for column, parent in value.items()]
        return value


class SourceSpec(_TableOptions):
    """The real table to learn from (``path``), a dataset of related tables (``tables``), or a database's tables
    (``database``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: Path | None = Field(None, description="csv, parquet, ndjson or Arrow IPC file; relative to the recipe "
                                                "file.")
    tables: dict[str, TableSpec] = Field(
        default_factory=dict, description="Related tables by name, each with its file, primary key, foreign keys "
                                          "and, for a sequence, the column that orders it (instead of `path`). "
                                          "With `database`: the tables to read (a list of names, or options by "
                                          "name); default every table of the schema.")
    database: str | None = Field(
        None, description="A SQLAlchemy URL (postgresql://user@host/db, sqlite:///file.db) whose tables, keys, "
                          "NOT NULL, UNIQUE and CHECK constraints are read from the catalog. A password is never "
                          "written in it: name an environment variable (${PGPASSWORD}) or give password_file.")
    database_schema: str | None = Field(None, alias="schema", description="With `database`: the schema to read "
                                                                          "(default: the database's default).")
    password_file: Path | None = Field(None, description="With `database`: a file holding the password; relative "
                                                         "to the recipe.")
    streaming: bool | Literal["auto"] = Field(
        "auto", description="Read the source in chunks and train from disk, for a table larger than memory "
                            "(parquet, ipc, csv, ndjson; generators autoregressive, diffusion, vae; modes synthesize "
                            "and conditions). `auto`: when a run in memory would outgrow half the machine's memory, "
                            "judged on the rows and their width in memory (parquet/IPC metadata, the first rows), "
                            "not on the bytes on disk.")
    sample_rows: int = Field(200_000, ge=1_000, description="Streaming: the seeded sample of training rows the "
                                                            "schema, the encoding and the checks are learned on.")
    chunk_rows: int = Field(100_000, ge=1_000, description="Streaming: rows read from the file at a time.")
    images: Path | None = Field(
        None, description="A folder of labelled images in the ImageFolder layout: one subfolder per class, named "
                          "by its label, its images (PNG, JPEG, …; one size and colour mode) inside; relative to "
                          "the recipe file. Learned by an image generator (e.g. image_diffusion).")

    @field_validator("tables", mode="before")
    @classmethod
    def _names_shorthand(cls, value: Any) -> Any:
        """``tables: [flights, planes]`` (with ``database``) is short for ``tables: {flights: {}, planes: {}}``."""
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return {name: {} for name in value}
        return value

    @model_validator(mode="after")
    def _one_kind_of_source(self) -> SourceSpec:
        if self.database is not None:
            if self.path is not None or self.images is not None:
                raise ValueError("give one of `path` (one table), `tables` or `database` (related tables) or "
                                 "`images` (a folder of labelled images), not `database` with another")
            with_files = [name for name, table in self.tables.items() if table.path is not None]
            if with_files:
                raise ValueError(f"with `database`, tables are read from it: source.tables.{with_files[0]}.path "
                                 f"does not apply")
            if self.streaming is True or self.columns or self.drop:
                raise ValueError("with `database`, `streaming`, `columns` and `drop` do not apply; give columns "
                                 "and drop under each table (source.tables.NAME.columns)")
            return self
        if self.database_schema is not None or self.password_file is not None:
            raise ValueError("`schema` and `password_file` go with `database`")
        without = [name for name, table in self.tables.items() if table.path is None]
        if without:
            raise ValueError(f"source.tables.{without[0]} needs `path`, its file")
        given = [key for key, value in (("path", self.path), ("tables", self.tables), ("images", self.images))
                 if value]
        if len(given) != 1:
            raise ValueError("give one of `path` (one table), `tables` (related tables) or `images` (a folder of "
                             "labelled images), not " + (" and ".join(given) if given else "none"))
        if self.images is not None and (self.columns or self.drop or self.format):
            raise ValueError("`columns`, `drop` and `format` describe a table; `images` reads a folder of images")
        if self.tables and self.streaming is True:
            raise ValueError("streaming: true is for one table (`path`); related tables are read into memory")
        if self.tables and (self.columns or self.drop):
            raise ValueError("with `tables`, `columns` and `drop` go under each table (source.tables.NAME.columns)")
        return self

    @property
    def relational(self) -> bool:
        return bool(self.tables) or self.database is not None


class HoldoutSpec(_Strict):
    """Real rows the generator never sees; privacy and ML-efficacy checks compare against them."""

    fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of the source held out (seeded).")
    path: Path | None = Field(None, description="A separate holdout file instead of a split.")


class OutputSpec(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    mode: Mode = Field("synthesize", description="synthesize | augment | rebalance | conditions | impute.")
    path: Path = Field(description="Output folder; written atomically.")
    rows: int | None = Field(None, ge=0, description="Synthetic rows (default: as many as the source holds); "
                                                     "related tables: rows of the first root table with children, "
                                                     "the other roots scaled alike, children as learned.")
    format: str = Field("csv", description="Format of the dataset file: csv, parquet, ndjson or ipc.")
    column: str | None = Field(None, description="rebalance: the categorical column to rebalance.")
    shares: dict[str, float] | Literal["uniform"] = Field(
        "uniform", description="rebalance: the share of each value in the output."
    )
    conditions: dict[str, Any] = Field(default_factory=dict, description="conditions: fixed column values.")
    impute_path: Path | None = Field(
        None, description="impute: the table whose nulls are filled (default: the source); relative to the recipe.")
    label_column: str | None = Field(None, description="Add a boolean column marking synthetic rows.")
    include_real: bool | None = Field(
        None, description="Put the real training rows in the output (default: yes for augment and rebalance)."
    )
    batch_size: int = Field(100_000, ge=1, description="Rows sampled and written per batch (related tables: rows of "
                                                        "the main table, each batch with all its children).")
    save_model: bool = Field(True, description="Save the fitted model under model/.")
    sample_seed: int | None = Field(None, description="Seed for sampling only (default: derived from `seed`).")
    per_class: int | None = Field(
        None, ge=0, le=1_000_000, description="Images (source.images): synthetic images of each class (default: as "
                                              "many as the class has training images).")
    sampling: dict[str, Any] = Field(
        default_factory=dict, description="The generator's sampling params (its SampleParams, e.g. a diffusion "
                                          "model's steps and scheduler), for this run's sampling.")
    database: str | None = Field(
        None, description="Related tables: also write them into this database (a SQLAlchemy URL, password as "
                          "${VARIABLE} or password_file), with the source's DDL, in one transaction that commits "
                          "only when every gate passed.")
    database_schema: str | None = Field(None, alias="schema", description="With `database`: the schema to write "
                                                                          "into (created on PostgreSQL).")
    password_file: Path | None = Field(None, description="With `database`: a file holding the target's password.")
    if_exists: Literal["fail", "replace"] = Field(
        "fail", description="With `database`: a target already holding rows in a table of the same name is "
                            "refused (`fail`), or those tables are replaced (`replace`).")
    protect_rows_below: int | Literal[False] = Field(
        5, description="A synthetic row identical to a training row that fewer than this many training rows "
                       "share is drawn again; `off` turns this privacy protection off (and the report says so).")

    @field_validator("protect_rows_below", mode="before")
    @classmethod
    def _protection_off_by_name(cls, value: Any) -> Any:
        """Copy protection is a privacy gate: only an explicit ``off`` turns it off, never a 0 or a typo."""
        if value is False:
            return False
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"protect_rows_below is a row count ≥ 1, or `off` to turn copy protection off "
                             f"(got {value!r})")
        return value

    @model_validator(mode="after")
    def _mode_needs(self) -> OutputSpec:
        if self.mode == "rebalance" and not self.column:
            raise ValueError("mode 'rebalance' needs `column:`, the categorical column to rebalance")
        if self.mode == "conditions" and not self.conditions:
            raise ValueError("mode 'conditions' needs `conditions:`, e.g. {sex: Female}")
        if self.database is None and (self.database_schema is not None or self.password_file is not None):
            raise ValueError("`schema` and `password_file` go with `database`")
        if self.impute_path is not None and self.mode != "impute":
            raise ValueError("`impute_path` only applies to mode 'impute'")
        if isinstance(self.shares, dict):
            if any(v < 0 for v in self.shares.values()):
                raise ValueError("rebalance shares must be ≥ 0")
            total = sum(self.shares.values())
            if abs(total - 1) > 1e-6:
                raise ValueError(f"rebalance shares must add up to 1, they add up to {total:g}")
        return self

    @property
    def real_rows_included(self) -> bool:
        return self.include_real if self.include_real is not None else self.mode in ("augment", "rebalance")


class PrivacySpec(_Strict):
    """A differential-privacy budget for the run (synthforge.privacy): every look at the training rows is charged."""

    epsilon: float = Field(gt=0, le=1000, description="The run's ε: everything that reads the training rows "
                                                       "spends from it (1: strong, 10: moderate).")
    delta: float | None = Field(None, gt=0, lt=1, description="The run's δ; default min(1e-5, 0.1 / rows), well "
                                                              "below one in the number of rows.")
    shares: dict[Literal["preprocessing", "model"], float] = Field(
        default_factory=lambda: dict(DEFAULT_PRIVACY_SHARES),
        description="Shares of ε: the encoder's categories, bounds and distributions, and the model's training "
                    "(which takes whatever the first left).")
    max_grad_norm: float = Field(1.0, gt=0, description="DP-SGD: each row's gradient is clipped to this norm.")
    seeded_noise: bool = Field(False, description="Draw the noise from `seed`, for reproducible runs; the "
                                                  "guarantee then holds only while the seed is secret.")

    @field_validator("shares")
    @classmethod
    def _shares_add_up(cls, value: dict[str, float]) -> dict[str, float]:
        shares = DEFAULT_PRIVACY_SHARES | value
        if len(value) == 1:  # one share given: the other stage takes the rest
            (given, share), = value.items()
            shares[next(k for k in shares if k != given)] = 1 - share
        if any(not 0 < v <= 1 for v in shares.values()) or abs(sum(shares.values()) - 1) > 1e-6:
            raise ValueError(f"privacy.shares are each above 0 and add up to 1 (got {shares})")
        return shares


class CheckSpec(_Strict):
    name: str = Field(description="A check from `synthforge plugins`.")
    params: dict[str, Any] = Field(default_factory=dict)
    min: float | None = Field(None, description="The run fails (or warns) below this score.")
    max: float | None = Field(None, description="The run fails (or warns) above this score.")
    on_fail: OnFail | None = Field(None, description="error (default for privacy) or warn.")
    table: str | None = Field(None, description="Related tables: the one table this check's gate is for "
                                                "(default: every table; relational checks take none).")
    enabled: bool = Field(True, description="`off` turns this check off; the only way to turn off a check that "
                                            "runs in every run (exact_copies, identifier_leak), and the report "
                                            "says so in red.")


class Recipe(_Strict):
    version: Literal[1] = 1
    name: str | None = None
    description: str | None = None
    seed: int = Field(0, description="One seed for every random generator: split, encoder, model, sampling.")
    source: SourceSpec
    holdout: HoldoutSpec = Field(default_factory=HoldoutSpec)
    generator: GeneratorSpec = Field(default_factory=GeneratorSpec)
    output: OutputSpec
    target: str | None = Field(None, description="Column to predict, for ML-efficacy checks.")
    constraints: list[Constraint] = Field(
        default_factory=list, description="Business rules every output row keeps: comparisons ('end >= start'), "
                                          "fixed, null_together, derive, unique (see synthforge.constraints).")
    privacy: PrivacySpec | None = Field(
        None, description="Train with differential privacy at this (ε, δ); the spent budget is in the manifest, "
                          "the report and the CLI summary.")
    checks: list[CheckSpec] | None = Field(
        None, description="Checks and their gates; without this key every default check runs. The privacy gates "
                          "that run in every run (exact_copies, identifier_leak) run even when not listed."
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: str = PrivateAttr(default="<recipe>")

    @model_validator(mode="after")
    def _related_tables_need(self) -> Recipe:
        if not self.source.relational:
            return self
        if self.output.mode != "synthesize":
            raise ValueError(f"output.mode {self.output.mode!r} applies to one table; related tables are "
                             f"synthesized whole (mode: synthesize)")
        if self.holdout.path is not None:
            raise ValueError("holdout.path applies to one table; related tables hold out a fraction of their "
                             "root rows with all their children (holdout: {fraction: 0.2})")
        if self.constraints or self.target:
            raise ValueError("with source.tables, `constraints` and `target` go under each table "
                             "(source.tables.NAME.constraints)")
        return self

    @model_validator(mode="after")
    def _images_need(self) -> Recipe:
        if self.source.images is None:
            if self.output.per_class is not None:
                raise ValueError("output.per_class applies to images (source.images); a table's output counts "
                                 "`rows`")
            return self
        if self.output.mode not in ("synthesize", "augment"):
            raise ValueError(f"output.mode {self.output.mode!r} is not made for images yet; use synthesize or "
                             f"augment (with output.per_class)")
        if self.output.rows is not None:
            raise ValueError("images are counted per class: use output.per_class instead of output.rows")
        if self.holdout.path is not None or self.constraints or self.target or self.privacy is not None:
            raise ValueError("holdout.path, constraints, target and privacy apply to tables; an image run holds "
                             "out a fraction of each class (holdout: {fraction: 0.2})")
        return self

    @model_validator(mode="after")
    def _database_output_needs(self) -> Recipe:
        if self.output.database is not None and not self.source.relational:
            raise ValueError("output.database takes related tables (source.tables or source.database); a single "
                             "table's output is a file")
        return self

    @model_validator(mode="after")
    def _privacy_needs(self) -> Recipe:
        if self.privacy is None:
            return self
        if self.source.relational:
            raise ValueError("privacy: differential privacy covers one table for now; related tables cannot be "
                             "synthesized under a budget yet")
        if self.output.mode != "synthesize" or self.output.real_rows_included:
            raise ValueError(f"privacy: output.mode {self.output.mode!r} puts real rows or their shares in the "
                             f"output, which no budget covers; use mode: synthesize")
        fixed = [rule.describe() for rule in self.constraints if rule.fixed is not None]
        if fixed:
            raise ValueError(f"privacy: the rule {fixed[0]!r} keeps the combinations seen in the rows, which the "
                             f"budget does not pay for; declare what is allowed with `check:` rules instead")
        return self

    @field_validator("holdout", mode="before")
    @classmethod
    def _holdout_shorthand(cls, value: Any) -> Any:
        """``holdout: 0.2`` is short for ``holdout: {fraction: 0.2}``."""
        return {"fraction": value} if isinstance(value, int | float) else value

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    @property
    def file(self) -> str:
        return self._file

    def inputs(self) -> list[tuple[str, Path]]:
        """The files this recipe reads, by role: what no output of its run may hold or replace."""
        found: list[tuple[str, Path]] = []
        if self._file != "<recipe>":
            found.append(("the recipe", Path(self._file)))
        if self.source.path is not None:
            found.append(("the source", self.resolve(self.source.path)))
        if self.source.images is not None:
            found.append(("the source images", self.resolve(self.source.images)))
        found += [(f"the source table {name!r}", self.resolve(table.path))
                  for name, table in self.source.tables.items() if table.path is not None]
        if self.holdout.path is not None:
            found.append(("the holdout", self.resolve(self.holdout.path)))
        if self.output.impute_path is not None:
            found.append(("the table to impute", self.resolve(self.output.impute_path)))
        return found

    @property
    def copy_protection_below(self) -> int:
        """The row count under which copies are redrawn; 0 when the recipe turned protection off."""
        return self.output.protect_rows_below or 0

    def canonical_hash(self) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def recipe_json_schema() -> dict[str, Any]:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "SynthForge recipe"
    return schema


# --- loading, with line numbers --------------------------------------------------------


def load_recipe(source: str | Path | dict[str, Any], *, pm: SynthForgePluginManager | None = None,
                overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe file (or dict); with ``pm``, also check generator and check names and params.

    ``overrides`` maps dotted keys to values (``{"generator.params.epochs": 5}``),
    applied before validation, as ``--param key=value`` does on the command line.
    """
    if isinstance(source, dict):
        data, lines, file, base_dir = source, {}, "<recipe>", Path.cwd()
    else:
        path = Path(source)
        if not path.exists():
            raise RecipeError(f"recipe file {path} does not exist.")
        file, base_dir = str(path), path.resolve().parent
        data, lines = _parse_yaml(path.read_text(encoding="utf-8"), file)
    if not isinstance(data, dict):
        raise RecipeError(f"{file}: a recipe is a mapping of keys (source, generator, output, …), "
                          f"not {type(data).__name__}.")
    if overrides:
        data = apply_overrides(data, overrides, file)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(_format_errors(error, lines, file, data)) from None
    recipe._base_dir, recipe._file = base_dir, file
    recipe._lines = lines  # type: ignore[attr-defined]
    if pm is not None:
        validate_plugins(recipe, pm)
    return recipe


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key.path=value`` strings to a dict; values are read as YAML scalars (``5``, ``true``, ``[a, b]``)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key.strip():
            raise RecipeError(f"--param {item!r} is not key=value (e.g. generator.params.epochs=5).")
        try:
            overrides[key.strip()] = _parse_yaml(text, f"--param {key.strip()}")[0] if text.strip() else ""
        except RecipeError as error:  # bounded like a recipe: an alias bomb is refused, not read
            if "is empty" in str(error):
                overrides[key.strip()] = None
            elif "not valid YAML" in str(error):
                overrides[key.strip()] = text
            else:
                raise
    return overrides


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], file: str = "<recipe>") -> dict[str, Any]:
    """A copy of ``data`` with each dotted key set; a key into a non-mapping is an error that names it."""
    import copy

    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"{file}: --param {dotted}: {'.'.join(parts[: depth + 1])} is "
                                  f"{type(child).__name__}, not a mapping of keys.")
            node = child
        node[parts[-1]] = value
    return data


def validate_plugins(recipe: Recipe, pm: SynthForgePluginManager) -> None:
    """Check what only the installed plugins can tell: names exist and params are valid."""
    from synthforge.generator import validate_params

    lines: dict[tuple, int] = getattr(recipe, "_lines", {})
    where = _locator(lines, recipe.file)
    if recipe.generator.name == "auto":  # synthforge.autopick: checked here, chosen once the data is read
        from synthforge.autopick import AutoParams, candidates

        if recipe.source.relational:
            raise RecipeError(f"{where(('generator', 'name'))}generator.name: auto chooses for one table; name a "
                              f"generator for related tables.")
        try:
            validate_params(AutoParams, recipe.generator.params, "generator 'auto'")
        except SynthForgeError as error:
            raise RecipeError(f"{where(('generator', 'params'))}generator.params: {error}") from None
        candidates(recipe, pm)
        return
    try:
        generator = pm.get_generator(recipe.generator.name)
    except SynthForgeError as error:
        raise RecipeError(f"{where(('generator', 'name'))}generator.name: {error}") from None
    try:
        validate_params(generator.Params, recipe.generator.params, f"generator {generator.name!r}")
    except SynthForgeError as error:
        raise RecipeError(f"{where(('generator', 'params'))}generator.params: {error}") from None
    for table, spec in recipe.source.tables.items():
        if spec.generator is None:
            continue
        key = ("source", "tables", table, "generator")
        try:
            own = pm.get_generator(spec.generator.name)
            validate_params(own.Params, spec.generator.params, f"generator {own.name!r}")
        except SynthForgeError as error:
            raise RecipeError(f"{where(key)}source.tables.{table}.generator: {error}") from None
    from synthforge.image_generator import is_image_generator

    if is_image_generator(generator) != (recipe.source.images is not None):
        kind = "images" if recipe.source.images is not None else "tables"
        able = ", ".join(name for name, cls in pm.generators().items()
                         if is_image_generator(cls) == (kind == "images"))
        raise RecipeError(f"{where(('generator', 'name'))}generator.name: generator {generator.name!r} does not "
                          f"learn {kind} (the source is {'`images:`' if kind == 'images' else 'a table'}); "
                          f"generators that do: {able or 'none installed (pip install synthforge-images)'}.")
    try:
        validate_params(generator.SampleParams, recipe.output.sampling, f"generator {generator.name!r}'s sampling")
    except SynthForgeError as error:
        raise RecipeError(f"{where(('output', 'sampling'))}output.sampling: {error}") from None
    if recipe.privacy is not None and not generator.supports_privacy:
        able = ", ".join(name for name, cls in pm.generators().items() if cls.supports_privacy)
        raise RecipeError(f"{where(('generator', 'name'))}generator.name: generator {generator.name!r} cannot "
                          f"train with differential privacy (privacy: is set); generators that can: "
                          f"{able or 'none installed'}.")
    if recipe.output.mode == "impute" and not generator.supports_imputation:
        able = ", ".join(name for name, cls in pm.generators().items() if cls.supports_imputation)
        raise RecipeError(f"{where(('output', 'mode'))}output.mode: generator {generator.name!r} cannot impute; "
                          f"generators that can: {able or 'none installed (pip install synthforge-autoregressive)'}.")
    for index, spec in enumerate(recipe.checks or []):
        try:
            check = pm.get_check(spec.name)
            validate_params(check.Params, spec.params, f"check {spec.name!r}")
        except SynthForgeError as error:
            raise RecipeError(f"{where(('checks', index, 'name'))}checks[{index}]: {error}") from None


def recipe_locator(recipe: Recipe) -> Callable[[tuple], str]:
    """``where(("source", "tables", "visits"))`` → ``"recipe.yaml:12: "``: the line of that key or its parent."""
    return _locator(getattr(recipe, "_lines", {}), recipe.file)


#: a recipe is a page of settings; these bound what a hostile one can make a parser do
MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_VALUES = 100_000  # every value once per path it is reached by, aliases expanded
MAX_RECIPE_DEPTH = 64


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{file}: the recipe is {len(text):,} characters; recipes are limited to "
                          f"{MAX_RECIPE_BYTES:,}. Put data in a file the recipe names, not in the recipe.")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise RecipeError(f"{file}: the recipe nests too deeply to read (more than {MAX_RECIPE_DEPTH} levels "
                              "are refused).") from None
        if node is None:
            raise RecipeError(f"{file}: the recipe is empty.")
        _refuse_expansion(node, file)
        lines: dict[tuple, int] = {}
        _index_lines(node, (), lines, file)
        data = loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else file
        problem = getattr(error, "problem", None) or str(error)
        context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
        opened = f" ({context} on line {context_mark.line + 1})" if context and context_mark else ""
        raise RecipeError(f"{where}: not valid YAML: {problem}{opened}.") from None
    finally:
        loader.dispose()
    return data, lines


def _refuse_expansion(root: yaml.Node, file: str) -> None:
    """Refuse, before anything is expanded, a document whose aliases (``*name``) make it larger than
    :data:`MAX_RECIPE_VALUES` values, deeper than :data:`MAX_RECIPE_DEPTH`, or contain itself.

    An alias is the same node object as its anchor in the composed graph, so each node's expanded size
    is computed once (memoised by identity): a "billion laughs" of a few hundred bytes is judged in
    microseconds instead of being expanded into gigabytes.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            where = f"{file}:{node.start_mark.line + 1}"
            if sizes[key] > MAX_RECIPE_VALUES:
                raise RecipeError(f"{where}: this part of the recipe expands to more than {MAX_RECIPE_VALUES:,} "
                                  "values through its aliases (*name); a recipe that large is refused. Write the "
                                  "values out, or name a file that holds them.")
            if depths[key] > MAX_RECIPE_DEPTH:
                raise RecipeError(f"{where}: the recipe nests more than {MAX_RECIPE_DEPTH} levels deep here; "
                                  "that many levels are refused.")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise RecipeError(f"{file}:{node.start_mark.line + 1}: an alias (*name) here refers to a value that "
                              "holds it; a recipe cannot contain itself.")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _index_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(map(str, (*path, key)))
                raise RecipeError(f"{file}:{line}: key {dotted!r} appears twice (first on line {seen[key]}).")
            seen[key] = line
            lines[(*path, key)] = line
            _index_lines(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(item, (*path, index), lines, file)


def _locator(lines: dict[tuple, int], file: str):
    def where(location: tuple) -> str:
        for end in range(len(location), -1, -1):
            if location[:end] in lines:
                return f"{file}:{lines[location[:end]]}: "
        return f"{file}: "

    return where


def _format_errors(error: ValidationError, lines: dict[tuple, int], file: str, data: dict[str, Any]) -> str:
    where = _locator(lines, file)
    messages = []
    for issue in error.errors():
        location = tuple(part for part in issue["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        dotted = ".".join(map(str, location)) or "(top level)"
        message = issue["msg"].removeprefix("Value error, ")
        if issue["type"] == "extra_forbidden":
            allowed = _allowed_keys(location[:-1])
            suggestion = difflib.get_close_matches(str(location[-1]), allowed, n=1)
            hint = f" Did you mean {suggestion[0]!r}?" if suggestion else ""
            message = f"unknown key.{hint} Allowed here: {', '.join(allowed)}."
        elif issue["type"] == "missing":
            message = "this key is required."
        elif issue["type"] == "enum" or issue["type"] == "literal_error":
            message = f"{message} (got {issue.get('input')!r})."
        messages.append(f"{where(location)}{dotted}: {message}")
    return "invalid recipe:\n  " + "\n  ".join(messages)


def _allowed_keys(location: tuple) -> list[str]:
    """The keys the model at ``location`` accepts, for 'did you mean'."""
    model: Any = Recipe
    for part in location:
        fields = getattr(model, "model_fields", {})
        if isinstance(part, str) and part in fields:
            model = _model_of(fields[part].annotation)
        # otherwise the part is a list index or a dict key (a column name): the model stays
    return sorted(info.alias or name for name, info in getattr(model, "model_fields", {}).items())


def _model_of(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


__all__ = ["CheckSpec", "ColumnKind", "ForeignKeySpec", "GeneratorSpec", "HoldoutSpec", "OutputSpec", "PrivacySpec",
           "Recipe",
           "SourceSpec", "TableSpec",
           "load_recipe", "recipe_json_schema", "validate_plugins"]

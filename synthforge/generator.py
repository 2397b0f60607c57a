"""The Generator contract: the base class owns the public API, a plugin fills in its model.

A generator plugin subclasses :class:`Generator` (a torch one :class:`synthforge.nn.TorchGenerator`),
gives it a ``name``, a ``Params`` model (:class:`GeneratorParams`) and, if sampling has knobs of its
own, a ``SampleParams`` model, and implements (``PLUGIN_METHODS``):

- ``_fit(self, data, context)``: learn from ``data``, the encoded float32 matrix
  whose column groups are described by ``self.encoder_.spans_``; draw randomness from
  ``context``'s named streams (``context.rng("init")``);
- ``_sample(self, n, conditions, rng)``: return an encoded ``(n, width)`` matrix;
  ``conditions`` maps spans to the 1-D encoded values they must hold (only when the
  class sets ``supports_conditions = True``); ``self.sample_params`` holds the call's
  sampling params;
- ``_impute(self, data, missing, rng)`` (only with ``supports_imputation = True``):
  ``data`` is an encoded matrix and ``missing`` a boolean ``(rows, learned
  columns)`` mask, columns in ``self.encoder_.columns`` order; return ``data`` with
  the missing columns' spans filled;
- ``_sample_given(self, data, given, rng)`` (only with ``supports_context = True``): ``data`` is an
  encoded matrix and ``given`` a boolean ``(rows, learned columns)`` mask; return ``data`` with the
  columns that are not given drawn from the model's conditional *of each row* (nulls included, as
  learned). :meth:`Generator.sample_given` uses it for the child rows of related tables (the parent's
  attributes and the rows before in a sequence as context); a generator without it gets the
  documented fallback there (rows conditioned on the context's categorical values, group by group);
- ``_get_state()`` / ``_set_state(arrays, extra)``: the fitted state as numpy arrays
  (saved as safetensors) plus JSON-able extras. Never pickle;
- optionally ``encoder_config()``, when the encoding depends on params;
- optionally ``_calibrate_output(self, emitted, context)``: fit what depends on the rows a run *emits*, once
  ``fit`` has put copy protection in place: ``emitted(n)`` draws ``n`` rows as :meth:`sample` returns them
  (copies of rare training rows, the pool of rare values and broken rules drawn again), encoded as ``_fit``
  got its rows. The autoregressive backend rakes its marginals there, since redrawing the rows that single
  someone out takes mass from the sparse part of the table.

The base class does everything else, the same way for every plugin: input
checks, schema inference, encoding and decoding, seeding, conditions, copies of
rare training rows and the pool of rare values drawn again, identifier columns,
schema enforcement on output, pandas/polars in and out, save and load. Its names
(``RESERVED_NAMES``) cannot be defined by a subclass. Fitted attributes end in
``_``, as in scikit-learn.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from synthforge.constraints import difference_schema, from_differences, orderings_by_construction, to_differences
from synthforge.data.encoder import RARE, EncoderConfig, Span, TableEncoder
from synthforge.data.identifiers import (
    plan_identifier,
    private_identifier_plan,
    real_values_to_avoid,
    regenerate_columns,
)
from synthforge.data.io import with_umask
from synthforge.data.schema import (
    ColumnKind,
    ColumnSpec,
    Schema,
    check_columns,
    enforce,
    infer_schema,
    to_internal,
    to_source,
)
from synthforge.data.streaming import EncodedRows, TrainingStream
from synthforge.data.temporal import detect_format, text_format_of
from synthforge.errors import ConditionError, DataError, Memorised, ModelError, SynthForgeError
from synthforge.provenance import own_version
from synthforge.rule_repair import plan_repairs, repair
from synthforge.seeds import RandomStreams, derive_seed

MODEL_FORMAT = "synthforge-model"
MODEL_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
# A model that still copies rare training rows after this many fresh draws has memorised them.
MAX_REDRAWS = 20
# A model that still samples the pool of rare values after this many rounds learned little else for a column.
MAX_POOLED_REDRAWS = 100
# Keeps each drawn row beside its context row while rows are drawn again.
ROW_INDEX = "__row__"

#: What a plugin implements or may override: the model, and how its state is saved.
PLUGIN_METHODS = ("_fit", "_sample", "_impute", "_sample_given", "_get_state", "_set_state", "encoder_config",
                  "_calibrate_output", "more_private")
#: What the base class owns, the same for every plugin; a subclass defining one of these fails when it is
#: created, so a helper of the same name cannot silently replace the machinery that keeps the promises.
RESERVED_NAMES = frozenset({
    "fit", "sample", "sample_given", "impute", "save", "load", "protect_rows", "_calibrated", "_as_learned",
    "_check_fitted", "_check_conditions", "_encode_conditions", "_draw", "_redraw_forbidden",
    "_sample_by_rejection", "_finish", "_pooled_columns", "_sampling_with", "_draw_given", "_context_groups",
    "released_reference", "_release", "_unreleased_columns",
})


class GeneratorParams(BaseModel):
    """The base of every generator's (and check's) ``Params``: an unknown key is an error that names it.

    A subclass changes inherited defaults without declaring the fields again (their bounds and
    descriptions stay the parent's)::

        class MyParams(TrainingParams):
            defaults = {"epochs": 50, "batch_size": 1000}
            latent_dim: int = Field(128, ge=1, description="Size of the latent code.")
    """

    model_config = ConfigDict(extra="forbid")
    defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        own = cls.__dict__.get("defaults") or {}
        unknown = sorted(set(own) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__qualname__}.defaults names {', '.join(unknown)}, not a field of its parents; "
                            f"declare new fields as fields.")
        for name, value in own.items():
            cls.model_fields[name].default = value
        if own:
            cls.model_rebuild(force=True)


#: The params of a generator that has none.
NoParams = GeneratorParams


class Parameterised:
    """What every generator class, of tables or of images, does with its params: validated when it is made
    (``Model(params, **more)``), shown by ``repr`` where they differ from the defaults."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    SampleParams: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        merged = {**(params.model_dump() if isinstance(params, BaseModel) else dict(params or {})), **kwargs}
        self.params = validate_params(self.Params, merged, f"generator {self.name!r}")
        self.sample_params = self.SampleParams()

    def __repr__(self) -> str:
        defaults = self.Params()
        changed = {k: v for k, v in self.params.model_dump().items() if getattr(defaults, k) != v}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


class ParamsError(SynthForgeError):
    """Generator or check parameters that fail validation."""


@dataclass
class FitContext:
    """What a run tells a generator about how to fit, beyond its own params."""

    seed: int = 0
    device: str = "auto"
    progress: bool = False
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
    #: called with (epochs done, epochs planned) after every epoch (the run's ``synthforge_progress`` hook)
    on_progress: Callable[[int, int], None] | None = None
    # Synthetic rows identical to a training row shared by fewer training rows than this are drawn again.
    protect_rows_below: int = 5
    # Where progress lines go when there is no progress bar (a job's log, a run without a terminal).
    log: Callable[[str], None] | None = None
    #: A differential-privacy budget (:class:`synthforge.privacy.Accountant`): every look at the training rows
    #: is charged to it, and a generator without ``supports_privacy`` refuses to fit.
    privacy: Any = None
    #: Draw the privacy noise from the seed (reproducible runs; the guarantee then holds only while the seed
    #: is secret). Off: from the operating system's entropy, so nobody can subtract the noise.
    seeded_noise: bool = False
    #: DP-SGD's clipping norm of each row's gradient (``privacy.max_grad_norm``)
    max_grad_norm: float = 1.0
    #: set by :func:`synthforge.nn.make_private` for the loop (:class:`synthforge.nn.private.PrivateTraining`)
    private_training: Any = None
    #: Data-parallel training on Ray Train (``generator.workers``): the number of workers, each one's CPU threads,
    #: where checkpoints go, how many worker losses to survive, the cluster to join (synthforge.nn.distributed)
    workers: int = 1
    threads_per_worker: int | None = None
    train_storage: Any = None
    checkpoint_every: int = 1
    max_failures: int = 2
    ray_address: str | None = None
    #: inside a worker: :class:`synthforge.nn.distributed.DistributedTraining` (rank, world, checkpoints)
    distributed: Any = None
    #: where a streamed fit writes its encoded rows and hash buckets (a run: beside its output, on that disk);
    #: None: the system's temporary folder
    scratch: Path | None = None

    # Named random streams (synthforge.seeds): what a plugin uses for every random draw while it fits.

    def rng(self, *name: Any) -> np.random.Generator:
        """A numpy ``Generator`` for the stream ``name`` of this fit, e.g. ``context.rng("init")``."""
        return self.streams.rng(*name)

    def torch_generator(self, *name: Any, device: Any = "cpu") -> Any:
        """A seeded ``torch.Generator`` on ``device`` for the stream ``name``, e.g. ``("noise", device=d)``.

        On a worker of data-parallel training every stream is the worker's own except the batches' order,
        which all workers share (each takes its part of the same batches)."""
        if self.distributed is not None and name != ("batches",):
            name = (*name, "worker", self.distributed.rank)
        return self.streams.torch_generator(*name, device=device)

    def seed_for(self, *name: Any) -> int:
        """The seed of the stream ``name``, for a library that takes a seed rather than a generator."""
        return self.streams.seed_for(*name)

    @property
    def streams(self) -> RandomStreams:
        return RandomStreams(self.seed, "fit")

    def noise_seed(self, *name: Any) -> int:
        """The seed of a privacy mechanism's noise: secret (the OS's entropy) unless ``seeded_noise``."""
        import secrets

        return self.seed_for("privacy", *name) if self.seeded_noise else secrets.randbits(63)


def seed_everything(seed: int, torch: bool = False) -> None:
    """Seed python, numpy's legacy global state and torch (imported first when ``torch`` is true)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch or "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def validate_params(model: type[BaseModel], given: BaseModel | Mapping[str, Any] | None, what: str) -> BaseModel:
    if isinstance(given, model):
        return given
    try:
        return model.model_validate(dict(given or {}))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, issue['loc'])) or 'params'}: {issue['msg']}" for issue in error.errors()
        )
        known = ", ".join(model.model_fields) or "none"
        raise ParamsError(f"{what}: {problems}. Known params: {known}.") from None


class Generator(Parameterised):
    """Base class of every generator; see the module documentation for the contract."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    #: Knobs that change only how a fitted model samples (a scheduler, steps, a temperature, precision):
    #: given per call, ``sample(n, steps=10)``, validated here; ``self.sample_params`` inside ``_sample``.
    SampleParams: ClassVar[type[BaseModel]] = NoParams
    encoding: ClassVar[EncoderConfig] = EncoderConfig()
    supports_conditions: ClassVar[bool] = False
    supports_imputation: ClassVar[bool] = False
    #: ``_sample_given`` conditions each row on its own given columns (see :meth:`sample_given`)
    supports_context: ClassVar[bool] = False
    #: with ``supports_context``: a number that moves smoothly along a sequence is learned as its first value and
    #: its changes from the row before (smooth trajectories); off for a model whose conditionals are linear
    #: (the copula), whose summed changes drift from the real marginal
    sequence_changes: ClassVar[bool] = True
    # A torch model must say so: its weights are initialised from torch's global generator, which must be
    # seeded before _fit builds them, and start-up must not import torch for the other generators.
    uses_torch: ClassVar[bool] = False
    supports_gpu: ClassVar[bool] = False
    #: ``fit`` under a privacy budget (``FitContext.privacy``) charges every look at the rows to it: the base
    #: class releases the encoder's statistics with DP (synthforge.privacy.marginals); the model's own
    #: training must spend only through the budget (synthforge.nn.make_private for a torch model). Only a
    #: generator that does may say so.
    supports_privacy: ClassVar[bool] = False
    #: ``fit_streamed`` may hand ``_fit`` the rows on disk (:class:`synthforge.data.streaming.EncodedRows`)
    #: instead of an array: the plugin reads them a block at a time (synthforge.nn.training_rows does it for a
    #: torch plugin), so a table larger than memory trains.
    supports_streaming: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A base class between (synthforge.nn.TorchGenerator) reserves what it implements for its subclasses.
        reserved = RESERVED_NAMES.union(*(vars(base).get("_reserved_names", ()) for base in cls.__mro__[1:]))
        clashes = sorted(reserved & set(vars(cls)))
        if clashes:
            from synthforge.errors import PluginError

            raise PluginError(
                f"{cls.__module__}.{cls.__qualname__} defines {', '.join(clashes)}, reserved by "
                f"synthforge.Generator (its public API and the machinery behind it). Rename "
                f"{'it' if len(clashes) == 1 else 'them'}; a plugin implements {', '.join(PLUGIN_METHODS)} (a "
                f"synthforge.nn.TorchGenerator: _build and _train instead of _fit, _get_state and _set_state).")

    def encoder_config(self) -> EncoderConfig:
        """The encoding this generator learns on; override to make it depend on params."""
        return EncoderConfig(**vars(self.encoding))

    # --- the public API -------------------------------------------------------------

    def fit(self, table: Any, schema: Schema | None = None, context: FitContext | None = None) -> Generator:
        frame, self.frame_kind_ = _to_polars(table)
        context = context or FitContext()
        frame, learned = self._learn_encoding(frame, schema, context)
        try:
            self._fit(self.encoder_.encode(learned), context)
        finally:
            self._released = None
        if context.privacy is not None:
            # Redrawing rows that copy rare training rows would read the rows after the budget is spent:
            # the guarantee covers copies instead (a row unique in training is as unlikely as any other).
            self.privacy_ = context.privacy.summary()
            return self._calibrated(self.protect_rows(frame, below=0), context)
        return self._calibrated(self.protect_rows(frame, below=context.protect_rows_below), context)

    def fit_streamed(self, rows: TrainingStream, schema: Schema | None = None,
                     context: FitContext | None = None) -> Generator:
        """Fit on a table too large for memory (:mod:`synthforge.data.streaming`): the schema and the encoding
        are learned on ``rows.sample``, every row of ``rows.chunks()`` is encoded to a file in
        ``context.scratch`` that ``_fit`` trains from (only for a generator with ``supports_streaming``), and
        copy protection counts the rows of all the chunks in that same pass."""
        context = context or FitContext()
        if not self.supports_streaming:
            raise SynthForgeError(f"generator {self.name!r} trains on rows in memory; a streamed source "
                                  f"(source.streaming) needs one that declares supports_streaming "
                                  f"(autoregressive, diffusion, vae), or set `source.streaming: false`.")
        if context.privacy is not None:
            raise SynthForgeError("a privacy budget releases statistics of every row and samples each DP-SGD step "
                                  "from the whole table: set `source.streaming: false` to train privately.")
        self.frame_kind_ = "polars"
        _, learned = self._learn_encoding(rows.sample, schema, context)
        handle, name = tempfile.mkstemp(prefix=".synthforge-rows-", suffix=".f32", dir=context.scratch)
        os.close(handle)
        counter = _RareRowCounter(self.schema_, context.protect_rows_below, context.scratch)
        try:
            encoded = EncodedRows.write(Path(name), (self._encoded(chunk, counter) for chunk in rows.chunks()),
                                        self.encoder_.width, sample=self.encoder_.encode(learned))
            self._fit(encoded, context)
            return self._calibrated(self._protect_with(counter), context)
        finally:
            counter.close()
            self._released = None
            Path(name).unlink(missing_ok=True)

    def _calibrated(self, protected: Generator, context: FitContext) -> Generator:
        """The plugin's ``_calibrate_output``, given rows drawn as a run emits them from a stream of this fit;
        the redraw counters then start again at zero, for the user's own calls to :meth:`sample`."""
        if type(self)._calibrate_output is Generator._calibrate_output:
            return protected
        rng = np.random.default_rng(context.seed_for("emitted rows"))
        seed_everything(context.seed_for("emitted rows", "global"), torch=self.uses_torch)
        columns = self.encoder_.columns

        def emitted(n: int) -> np.ndarray:
            frame = self._redraw_forbidden(self._draw(n, {}, rng), {}, rng)
            return self.encoder_.encode(self._as_learned(to_differences(frame.select(columns), self.orderings_)))

        self._calibrate_output(emitted, context)
        self.copies_redrawn_ = self.pooled_redrawn_ = self.constraint_redrawn_ = 0
        return protected

    def more_private(self, step: int) -> dict[str, Any] | None:
        """Params for a refit one step more private than this fitted generator's (``step`` 1, 2, …), asked by a
        run whose privacy gate refused the output or whose model kept copying rare rows; None: nothing left to
        try (the default). A run refits within the params' ``max_training_time`` and reports what changed."""
        return None

    def _calibrate_output(self, emitted: Callable[[int], np.ndarray], context: FitContext) -> None:
        """Fit what depends on the rows a run emits (see the module's docstring); nothing by default."""

    def _as_learned(self, differences: pl.DataFrame) -> pl.DataFrame:
        """The learned columns of ``differences`` (as ``to_differences`` gives them) in the dtypes the encoder was
        fitted on, ready for ``self.encoder_.encode``."""
        return differences.select(
            pl.col(c).cast(self.encoder_.transformer(c).source_dtype, strict=False) for c in self.encoder_.columns)

    def _encoded(self, chunk: pl.DataFrame, counter: _RareRowCounter) -> np.ndarray:
        internal = to_internal(chunk, self.schema_)
        counter.add(internal)
        return self.encoder_.encode(to_differences(internal, self.orderings_))

    def _learn_encoding(self, frame: pl.DataFrame, schema: Schema | None,
                        context: FitContext) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Everything ``fit`` learns before the model: the schema, the identifiers' plans, the orderings kept by
        construction and the encoder (its statistics released under a privacy budget). Returns the table in
        its internal form and the columns the model learns."""
        if context.workers > 1 and not self.uses_torch:
            raise SynthForgeError(f"generator.workers: {context.workers}: {self.name!r} trains in one process; "
                                  f"data-parallel training is for the torch generators (autoregressive, diffusion, "
                                  f"vae, gan).")
        self.schema_ = schema or infer_schema(frame)
        frame = to_internal(frame, self.schema_)  # dates held as text, parsed as the schema's format says
        check_columns(frame, self.schema_)
        self.seed_ = context.seed
        self.sample_calls_ = 0
        seed_everything(context.seed_for("global"), torch=self.uses_torch)
        regenerated = [column for column in self.schema_.columns
                       if not column.kind.learned and column.handling == "regenerate" and column.name in frame.columns]
        # Rules `a <= b` are learned as b - a >= 0 (constraints.orderings_by_construction): kept by construction.
        self.orderings_ = orderings_by_construction(self.schema_)
        learned = to_differences(frame, self.orderings_)
        self.model_schema_ = difference_schema(self.schema_, learned, self.orderings_)
        config = self.encoder_config()
        released = None
        self.privacy_: dict[str, Any] | None = None
        if context.privacy is not None:
            released = self._release(learned.with_columns(frame.select(c.name for c in regenerated)), regenerated,
                                     config, context)
            self.identifiers_ = {c.name: private_identifier_plan(c, released.get(c.name)) for c in regenerated}
        else:
            self.identifiers_ = {c.name: plan_identifier(frame.get_column(c.name), c, frame, self.schema_.learned)
                                 for c in regenerated}
        # Fake personal values equal to a real one are drawn again while this process samples; never saved. Not
        # under a budget: which values may come out would then depend on the rows beyond what the budget pays for.
        self._personal_real = real_values_to_avoid(frame, self.identifiers_) if context.privacy is None else {}
        self.encoder_ = TableEncoder(config).fit(learned, self.model_schema_, seed=context.seed_for("encoder"),
                                                 released=released)
        self._released = released
        return frame, learned

    def released_reference(self, rows: int, rng: np.random.Generator) -> np.ndarray:
        """``rows`` encoded rows drawn column by column from what the privacy budget released, for a plugin's
        post-processing under DP (a marginal calibration) in place of the training rows: only each column's
        own distribution is right, not their dependence. Available while ``_fit`` runs under a budget."""
        released = getattr(self, "_released", None)
        if released is None:
            raise SynthForgeError("released_reference is for a generator fitting under a privacy budget.")
        columns = {}
        for name in self.encoder_.columns:
            transformer, summary = self.encoder_.transformer(name), released[name]
            if hasattr(transformer, "categories_"):
                shares = np.asarray(transformer.counts_, dtype=np.float64)
                picked = rng.choice(len(shares), size=rows, p=shares / shares.sum())
                columns[name] = transformer.from_indices(picked)
                continue
            if summary.values is not None:
                shares = np.maximum(np.asarray(summary.value_counts, dtype=np.float64), 1e-9)
                values = rng.choice(summary.values, size=rows, p=shares / shares.sum())
            else:
                _, _, ranks, knots, _ = summary.quantile_table()
                values = np.interp(rng.random(rows), ranks, knots)
            nulls = rng.random(rows) < summary.null_rate if transformer.has_nulls_ else np.zeros(rows, dtype=bool)
            columns[name] = transformer._from_float(values, nulls)
        return self.encoder_.encode(pl.DataFrame(columns))

    def _release(self, frame: pl.DataFrame, regenerated: list[ColumnSpec], config: EncoderConfig,
                 context: FitContext) -> dict[str, Any]:
        """The encoder's statistics released under the run's privacy budget, and the schemas cleaned of the
        real figures they held (bounds, null rates, distinct counts)."""
        from synthforge.privacy.marginals import private_schema, release_marginals

        if not self.supports_privacy:
            raise ParamsError(f"generator {self.name!r} cannot train with differential privacy "
                              f"(it does not declare supports_privacy).")
        released = release_marginals(frame, self.model_schema_, context.privacy,
                                     np.random.default_rng(context.noise_seed("marginals")),
                                     identifiers=regenerated, min_category_count=config.min_category_count,
                                     discrete_integer_max=config.discrete_integer_max,
                                     max_categories=config.max_categories)
        self.model_schema_ = private_schema(self.model_schema_, released)
        self.schema_ = private_schema(self.schema_, released)
        return released

    def protect_rows(self, table: Any, below: int = 5) -> Generator:
        """Never emit a row identical to a row of ``table`` that fewer than ``below`` of its rows share.

        ``fit`` calls this with the training table. A copied row is drawn again with
        the same conditions, so ``sample(n)`` still returns ``n`` rows; the count of
        redrawn rows adds up in ``copies_redrawn_``. A row that ``below`` or more
        people share identifies none of them, and refusing it would distort tables
        whose rows often repeat. Rows are compared on the learned columns; and, where some
        learned columns are not quasi-identifiers (:attr:`Schema.quasi_identifiers`: a date, a
        measurement with many values), a row that reproduces a training record *unique* on its
        quasi-identifiers is drawn again too — unless those are a grid's coordinates, as in a panel of
        cities × months (:meth:`Schema.quasi_identifier_grid`), where every record is unique on them.

        Only 64-bit hashes of the protected rows are kept, in memory, and never
        saved with the model: a model loaded from disk protects nothing until it is
        given the training table again.
        """
        self._check_fitted()
        frame = to_internal(_to_polars(table)[0], self.schema_)
        self.copies_redrawn_ = self.pooled_redrawn_ = self.constraint_redrawn_ = 0
        self._protected: tuple[pl.Schema, pl.Series] | None = None
        self._protected_records: tuple[pl.Schema, pl.Series] | None = None
        if frame.height:
            found: list[tuple[pl.Schema, pl.Series] | None] = [
                rare_row_hashes(frame.select(names), fewer_than)
                for names, fewer_than in _protected_sets(self.schema_, frame.columns, below)]
            self._protected, records = [*found, None, None][:2]
            self._protected_records = _unless_grid(self.schema_, records, frame.height)
        return self

    def protect_streamed(self, chunks: Callable[[], Iterable[pl.DataFrame]], below: int = 5,
                         scratch: Path | None = None) -> Generator:
        """:meth:`protect_rows` for a table read in chunks (``chunks()`` starts a pass, the one this reads): each
        row's 64-bit hash is counted out of memory (:class:`synthforge.data.streaming.HashCounter`), and only the
        rare ones are kept, 8 bytes each. :meth:`fit_streamed` counts them while it encodes, with no pass of its
        own."""
        self._check_fitted()
        counter = _RareRowCounter(self.schema_, below, scratch)
        try:
            for chunk in chunks():
                counter.add(to_internal(chunk, self.schema_))
            return self._protect_with(counter)
        finally:
            counter.close()

    def _protect_with(self, counter: _RareRowCounter) -> Generator:
        self.copies_redrawn_ = self.pooled_redrawn_ = self.constraint_redrawn_ = 0
        self._protected, self._protected_records = counter.protection()
        return self

    def sample(self, n: int, conditions: Mapping[str, Any] | Any | None = None, seed: int | None = None,
               **sample_params: Any) -> Any:
        """``n`` synthetic rows; every row holds ``conditions`` exactly; same seed, same rows.

        ``conditions`` is a mapping (every row holds it) or a polars or pandas DataFrame of ``n`` rows, one
        for each row wanted (SDV's ``sample_remaining_columns``): row ``i`` of the output holds row ``i``'s
        values, a null leaving that column free. ``sample_params`` are the generator's ``SampleParams`` for
        this call (e.g. a diffusion model's ``steps=10``); unknown ones are an error that lists the known ones.
        """
        self._check_fitted()
        if not isinstance(n, int | np.integer) or n < 0:
            raise DataError(f"the number of rows to sample must be a whole number ≥ 0, not {n!r}.")
        if seed is None:
            seed = derive_seed(self.seed_, "sample", self.sample_calls_)
            self.sample_calls_ += 1
        if conditions is not None and not isinstance(conditions, Mapping):
            frame = self._sample_per_row(int(n), conditions, seed, sample_params)
            return frame.to_pandas() if getattr(self, "frame_kind_", "polars") == "pandas" else frame
        rng = np.random.default_rng(seed)
        seed_everything(derive_seed(seed, "global"))
        conditions = dict(conditions or {})
        self._check_conditions(conditions)
        with self._sampling_with(sample_params):
            frame = self._redraw_forbidden(self._draw(int(n), conditions, rng), conditions, rng)
        frame = to_source(frame, self.schema_)  # dates the source held as text written back in its format
        return frame.to_pandas() if getattr(self, "frame_kind_", "polars") == "pandas" else frame

    def _sample_per_row(self, n: int, conditions: Any, seed: int, sample_params: dict[str, Any]) -> pl.DataFrame:
        """One row for each row of a frame of conditions: one draw for each distinct row of conditions."""
        try:
            wanted, _ = _to_polars(conditions)
        except DataError:
            raise ConditionError(f"conditions are a mapping of column to value, or a DataFrame with one row for each "
                                 f"row wanted; not a {type(conditions).__name__}.") from None
        if wanted.height != n:
            raise ConditionError(f"a DataFrame of conditions gives one row for each of its rows: it has "
                                 f"{wanted.height:,} rows, but {n:,} were asked for (sample(len(conditions), "
                                 f"conditions)).")
        # pandas holds a column with a missing value as floats: a whole 30.0 is the integer column's 30
        wanted = wanted.with_columns(
            pl.col(name).cast(pl.Int64) for name, dtype in wanted.schema.items()
            if dtype.is_float() and name in self.schema_ and self.schema_[name].polars_dtype.is_integer()
            and bool((wanted[name].drop_nulls() == wanted[name].drop_nulls().round()).all()))
        position = "\x00row"
        wanted = wanted.with_row_index(position)
        parts = []
        for index, (values, group) in enumerate(wanted.group_by(wanted.columns[1:], maintain_order=True)):
            given = {name: value for name, value in zip(wanted.columns[1:], values, strict=True) if value is not None}
            part = self.sample(group.height, given, seed=derive_seed(seed, "row-conditions", index), **sample_params)
            parts.append(as_polars(part).with_columns(group.get_column(position)))
        if not parts:
            return self.sample(0, seed=seed, **sample_params)
        return pl.concat(parts, how="vertical_relaxed").sort(position).drop(position)

    def sample_given(self, context: pl.DataFrame, seed: int | None = None, **sample_params: Any) -> pl.DataFrame:
        """One synthetic row per row of ``context``, holding that row's values (nulls too) exactly.

        ``context`` holds some learned columns; the others are drawn given them, row by row. This is
        how related tables are generated: a child row given its parent's attributes, and, in a
        sequence, the row before it. A generator with ``supports_context`` draws from its own
        per-row conditional (``_sample_given``); any other gets the fallback: the context's
        categorical and boolean values as ``conditions``, one call per distinct combination (numeric
        context is then not conditioned on, and a value the generator cannot condition on is left
        out of that group's conditions). Copies of rare training rows, the pool of rare values and
        broken rules are drawn again with the same context, as in :meth:`sample`.
        """
        self._check_fitted()
        unknown = [c for c in context.columns if c not in self.encoder_.columns and c not in self.encoder_.derived_]
        if unknown:
            raise ConditionError(f"cannot sample given {', '.join(map(repr, unknown))}: not learned columns of this "
                                 f"model ({', '.join(self.encoder_.columns)}).")
        if seed is None:
            seed = derive_seed(self.seed_, "sample", self.sample_calls_)
            self.sample_calls_ += 1
        rng = np.random.default_rng(seed)
        seed_everything(derive_seed(seed, "global"))
        context = context.with_columns(
            pl.col(c).cast(self.schema_[c].polars_dtype, strict=False) for c in context.columns)
        rows = pl.Series(ROW_INDEX, np.arange(context.height, dtype=np.int64))

        def draw(which: pl.Series) -> pl.DataFrame:
            return self._draw_given(context[which.to_numpy()], rng).with_columns(which.alias(ROW_INDEX))

        with self._sampling_with(sample_params):
            frame = draw(rows)
            frame = self._redraw_forbidden(frame, {}, rng, redraw=lambda redo: draw(redo.get_column(ROW_INDEX)))
        frame = frame.sort(ROW_INDEX).drop(ROW_INDEX)
        return to_source(frame, self.schema_)

    def _draw_given(self, context: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        if context.height == 0:
            return self._draw(0, {}, rng)
        if not self.supports_context:
            parts = [self._draw(count, conditions, rng).with_columns(pl.Series(ROW_INDEX, where))
                     for conditions, where, count in self._context_groups(context)]
            frame = pl.concat(parts).sort(ROW_INDEX).drop(ROW_INDEX)
            return frame.with_columns(context.get_column(c).alias(c) for c in context.columns
                                      if self.schema_[c].kind in (ColumnKind.categorical, ColumnKind.boolean))
        columns = self.encoder_.columns
        given = [c for c in columns if c in context.columns]
        frame = pl.DataFrame([
            context.get_column(c).cast(self.encoder_.transformer(c).source_dtype, strict=False) if c in given
            else pl.Series(c, [None] * context.height, dtype=self.encoder_.transformer(c).source_dtype)
            for c in columns])
        frame = to_differences(frame, self.orderings_)
        mask = np.zeros((context.height, len(columns)), dtype=bool)
        mask[:, [columns.index(c) for c in given]] = True
        drawn = self.encoder_.decode(self._sample_given(self.encoder_.encode(frame), mask, rng))
        drawn = from_differences(drawn, self.orderings_, self.schema_)
        drawn = drawn.with_columns(context.get_column(c).cast(drawn.schema[c], strict=False).alias(c)
                                   for c in context.columns if c in drawn.columns)
        return self._finish(drawn, {}, rng, pinned=set(context.columns))

    def _context_groups(self, context: pl.DataFrame) -> Iterator[tuple[dict[str, Any], np.ndarray, int]]:
        """The fallback's (conditions, row positions, rows) per distinct categorical context."""
        discrete = (ColumnKind.categorical, ColumnKind.boolean)
        usable = [c for c in context.columns if self.schema_[c].kind in discrete and c in self.encoder_.columns]
        if not usable:
            yield {}, np.arange(context.height), context.height
            return
        groups = context.select(usable).with_row_index(ROW_INDEX).group_by(usable, maintain_order=True) \
            .agg(pl.col(ROW_INDEX))
        for row in groups.iter_rows(named=True):
            where = np.asarray(row.pop(ROW_INDEX), dtype=np.int64)
            conditions = {}
            for column, value in row.items():
                try:
                    self._check_conditions({column: value})
                except ConditionError:
                    continue  # a value too rare in this table to condition on: the rest still hold
                conditions[column] = value
            yield conditions, where, len(where)

    @contextlib.contextmanager
    def _sampling_with(self, given: Mapping[str, Any]) -> Iterator[None]:
        """``self.sample_params`` validated from ``given`` for one call, the defaults again afterwards."""
        self.sample_params = validate_params(self.SampleParams, given, f"sampling params of generator {self.name!r}")
        try:
            yield
        finally:
            self.sample_params = self.SampleParams()

    def impute(self, table: Any, seed: int | None = None, **sample_params: Any) -> Any:
        """``table`` with the nulls of its learned columns filled from the learned conditional of each row.

        Given cells are kept exactly; only nulls change. Identifier and free-text
        columns pass through untouched: this fills a user's own table, it does not
        anonymise it.
        """
        self._check_fitted()
        if not self.supports_imputation:
            raise SynthForgeError(f"the {self.name!r} generator cannot impute; use one that sets "
                                  f"supports_imputation (e.g. 'autoregressive').")
        frame, kind = _to_polars(table)
        frame = to_internal(frame, self.schema_)
        columns = self.encoder_.columns
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise DataError(f"the table to impute lacks the learned column(s) {', '.join(map(repr, absent))}.")
        orderings = self.orderings_
        differences = to_differences(frame.select(columns), orderings)  # null where b or its base is
        missing = np.column_stack([differences.get_column(c).is_null().to_numpy() for c in columns]) if columns \
            else np.zeros((frame.height, 0), dtype=bool)
        rng = np.random.default_rng(seed if seed is not None else derive_seed(self.seed_, "impute"))
        learned = self._as_learned(differences)
        with self._sampling_with(sample_params):
            filled = self.encoder_.decode(self._impute(self.encoder_.encode(learned), missing, rng))
        filled = from_differences(filled.with_columns(  # rebuild b from the row's own base where it was given
            frame.get_column(p["base"]).cast(filled.schema[p["base"]], strict=False).fill_null(
                filled.get_column(p["base"])) for p in orderings), orderings, self.schema_)
        filled = enforce(filled, self.schema_)
        frame = frame.with_columns(
            pl.coalesce(frame.get_column(c), filled.get_column(c).cast(
                filled.schema[c] if frame.schema[c] == pl.Null else frame.schema[c], strict=False)).alias(c)
            for c in columns)
        frame = frame.with_columns(  # a derived column's nulls follow from its (now complete) source
            pl.coalesce(frame.get_column(c), self.encoder_.derive(frame, c).cast(frame.schema[c], strict=False))
            for c in self.encoder_.derived_ if c in frame.columns)
        frame = to_source(frame, self.schema_)
        return frame.to_pandas() if kind == "pandas" else frame

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into ``directory``."""
        from safetensors.numpy import save_file

        self._check_fitted()
        directory = model_directory(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays, extra = self._get_state()
        config = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "generator": self.name,
            "generator_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "synthforge_version": own_version(),
            "params": self.params.model_dump(mode="json"),
            "seed": self.seed_,
            "schema": self.schema_.model_dump(mode="json"),
            "encoder": self.encoder_.state(),
            "orderings": self.orderings_,
            "model_schema": self.model_schema_.model_dump(mode="json"),
            "identifiers": self.identifiers_,
            "frame_kind": getattr(self, "frame_kind_", "polars"),
            "privacy": getattr(self, "privacy_", None),
            "state": extra,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1, default=_json_default))
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / WEIGHTS_FILE))
        with_umask(directory / WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Generator:
        """Load a model saved by :meth:`save`; reads JSON and safetensors only, runs no code."""
        from safetensors.numpy import load_file

        config = read_model_config(directory)
        if cls.name and config["generator"] != cls.name:
            raise ModelError(f"{directory} holds a {config['generator']!r} model, not {cls.name!r}.")
        generator = cls(config["params"])  # sample_params start at the SampleParams defaults
        generator.schema_ = Schema.model_validate(config["schema"])
        generator.orderings_ = config.get("orderings", [])
        generator.model_schema_ = Schema.model_validate(config["model_schema"]) if "model_schema" in config \
            else generator.schema_
        generator.encoder_ = TableEncoder.from_state(config["encoder"], generator.model_schema_)
        generator.identifiers_ = config["identifiers"]
        generator.seed_ = config["seed"]
        generator.sample_calls_ = 0
        generator.copies_redrawn_ = generator.pooled_redrawn_ = generator.constraint_redrawn_ = 0
        generator.frame_kind_ = config.get("frame_kind", "polars")  # pandas in, pandas out, after a save too
        generator.privacy_ = config.get("privacy")
        generator._set_state(load_file(str(Path(directory) / WEIGHTS_FILE)), config["state"])
        return generator

    # --- what a plugin implements --------------------------------------------------------

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fit")

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _sample")

    def _impute(self, data: np.ndarray, missing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _impute")

    def _sample_given(self, data: np.ndarray, given: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _sample_given")

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement _get_state")

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _set_state")

    # --- the machinery around them ---------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "encoder_"):
            raise SynthForgeError(f"this {self.name!r} generator is not fitted yet: call fit(table) first.")

    def _check_conditions(self, conditions: dict[str, Any]) -> None:
        for column, value in list(conditions.items()):
            if column not in self.schema_ or not self.schema_[column].kind.learned:
                learned = ", ".join(c.name for c in self.schema_.learned)
                raise ConditionError(f"cannot condition on {column!r}: it is not a learned column ({learned}).")
            spec = self.schema_[column]
            for plan in self.orderings_:
                if plan["column"] == column:
                    raise ConditionError(
                        f"cannot condition on {column!r}: it is learned as its difference from {plan['base']!r}, "
                        f"so that the rule {plan['rule']!r} holds by construction; condition on {plan['base']!r}.")
            if spec.kind == ColumnKind.datetime and isinstance(value, str):
                conditions[column] = value = _parse_condition(spec, value)
            if column in self.encoder_.derived_:
                continue  # conditioning a derived column conditions its source; encode_value says when it cannot
            transformer = self.encoder_.transformer(column)
            if spec.kind in (ColumnKind.categorical, ColumnKind.boolean):
                pooled = RARE if spec.kind == ColumnKind.categorical else object()  # the pool is no value
                categories = [c for c in transformer.categories_ if c != pooled]
                if value not in categories:
                    known = ", ".join(repr(c) for c in categories[:30])
                    more = f" and {len(categories) - 30} more" if len(categories) > 30 else ""
                    raise ConditionError(
                        f"cannot condition {column!r} on {value!r}: the model knows {known}{more}. "
                        f"Values seen in fewer than {self.encoder_.config.min_category_count} rows are pooled "
                        f"as rare to protect privacy and cannot be asked for."
                    )
            elif value is None:
                if not spec.nullable:
                    raise ConditionError(f"cannot condition {column!r} on null: it had no nulls in training.")
            elif spec.kind != ColumnKind.datetime:
                if not isinstance(value, int | float) or not np.isfinite(value):
                    raise ConditionError(f"cannot condition numeric column {column!r} on {value!r}: give a number.")
                if spec.minimum is not None and not spec.minimum <= value <= spec.maximum:
                    raise ConditionError(
                        f"cannot condition {column!r} on {value}: outside its range in training "
                        f"[{spec.minimum:g}, {spec.maximum:g}]."
                    )

    def _encode_conditions(self, conditions: dict[str, Any]) -> dict[Span, np.ndarray]:
        encoded: dict[Span, np.ndarray] = {}
        for column, value in conditions.items():
            encoded |= self.encoder_.encode_value(column, value)
        return encoded

    def _draw(self, n: int, conditions: dict[str, Any], rng: np.random.Generator) -> pl.DataFrame:
        if n == 0:
            frame = self.encoder_.decode(np.zeros((0, self.encoder_.width)))
        elif conditions and not self.supports_conditions:
            frame = self._sample_by_rejection(n, conditions, rng)
        else:
            encoded = self._encode_conditions(conditions)
            frame = self.encoder_.decode(self._sample(n, encoded or None, rng))
        frame = from_differences(frame, self.orderings_, self.schema_)
        return self._finish(frame, conditions, rng)

    def _redraw_forbidden(self, frame: pl.DataFrame, conditions: dict[str, Any], rng: np.random.Generator,
                          redraw: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> pl.DataFrame:
        """Replace rows that may not be output with fresh draws under the same conditions.

        Two kinds: a copy of a protected training row (see :meth:`protect_rows`), counted in
        ``copies_redrawn_``; and a row holding the pool of rare values (``_RARE_``), which stands for
        real values too rare to show and is no value itself, counted in ``pooled_redrawn_``.
        ``redraw`` draws the replacements of the given rows (default: under ``conditions``).
        """
        protected = getattr(self, "_protected", None)
        records = getattr(self, "_protected_records", None)
        pooled = self._pooled_columns()
        rules = [rule for rule in self.schema_.constraints if rule.derive is None]
        if (protected is None and records is None and not pooled and not rules) or frame.height == 0:
            return frame
        first_draw = frame.height
        copies_left = pooled_left = broken_left = 0
        first_held: dict[str, float] = {}
        # Rows judged fine are set aside, so each round judges only the fresh draws. Without `redraw` the first
        # redraw takes more rows than it lacks, by the share just refused, and keeps the first ones that pass:
        # one round where the rows came back in four (Adult: a tenth of the draws single someone out).
        accepted: list[pl.DataFrame] = []
        lacking = first_draw
        for round_ in range(MAX_POOLED_REDRAWS + 1):
            nothing = pl.repeat(False, frame.height, eager=True)
            broken, broken_by = nothing, {}
            for rule in rules:
                # `unique:` is judged across rows: a fresh row may repeat an accepted one's value (not the reverse)
                held = rule.holds(pl.concat([*accepted, frame])).tail(frame.height) \
                    if rule.unique is not None and accepted else rule.holds(frame)
                broken_by[rule.describe()] = int((~held).sum())
                first_held.setdefault(rule.describe(), float(held.mean() or 0.0))
                broken = broken | ~held
            copies = matching_rows(frame, protected) if protected is not None else nothing
            # A record unique on its quasi-identifiers is drawn again for MAX_REDRAWS rounds, then kept: in a
            # coarse quasi-identifier space a generator may keep drawing such a combination by its own
            # frequency, not by memory (the rare_combinations gate judges what is left).
            singled_out = matching_rows(frame, records) if records is not None and round_ < MAX_REDRAWS else nothing
            holds_pool = frame.select(pl.any_horizontal(pl.col(c) == RARE for c in pooled).fill_null(False)) \
                .to_series() if pooled else nothing
            if round_ == 0:
                first_pooled = float(holds_pool.mean() or 0.0)
            again = copies | singled_out | holds_pool | broken
            passed = frame.filter(~again).head(lacking)
            accepted.append(passed)
            lacking -= passed.height
            if lacking == 0:
                return accepted[0] if len(accepted) == 1 else pl.concat(accepted)
            copies_left = int(copies.sum())
            singled_left = int((singled_out & ~copies).sum())
            pooled_left = int((holds_pool & ~copies & ~singled_out).sum())
            broken_left = int((broken & ~copies & ~singled_out & ~holds_pool).sum())
            if copies_left and round_ >= MAX_REDRAWS:
                raise Memorised(
                    f"generator {self.name!r} keeps reproducing rare training rows: {copies_left:,} of "
                    f"{first_draw:,} rows still copied one after {MAX_REDRAWS} fresh draws, so it has memorised "
                    f"them. Train it for fewer epochs or with more regularisation; `protect_rows_below: off` "
                    f"turns this protection off.")
            if round_ == MAX_POOLED_REDRAWS:
                break
            self.copies_redrawn_ += copies_left + singled_left
            self.pooled_redrawn_ += pooled_left
            self.constraint_redrawn_ += broken_left
            if redraw is not None:  # one fresh row for each refused one, in its place (its context)
                frame = redraw(frame.filter(again))
            elif round_ == 0:  # with a margin: usually the last round
                refused = int(again.sum()) / frame.height
                frame = self._draw(math.ceil(lacking / max(1.0 - refused, 0.25) * 1.05) + 8, conditions, rng)
            else:  # what is lacking, so that a model that keeps drawing such rows is stopped as before
                frame = self._draw(lacking, conditions, rng)
        if not pooled_left or broken_left > pooled_left:  # the rule is the cause where it refused more rows
            rule = max(broken_by, key=broken_by.__getitem__)
            raise SynthForgeError(
                f"generator {self.name!r} keeps breaking the rule {rule!r}: {broken_by[rule]:,} of {first_draw:,} "
                f"rows still broke it after {MAX_POOLED_REDRAWS} fresh draws (its first draw kept it in "
                f"{first_held[rule]:.1%} of rows)" + (f", with conditions {conditions}" if conditions else "")
                + ". Check that the real table keeps the rule (`synthforge profile` shows its share), train the "
                "model longer, or write the rule as `derive:` so that it holds by construction.")
        shares = {c: self.encoder_.transformer(c).counts_[-1] / max(sum(self.encoder_.transformer(c).counts_), 1)
                  for c in pooled}
        worst = max(shares, key=shares.__getitem__)
        # A row is kept only if it avoids the pool and keeps every rule: a rule the model keeps poorly is as much
        # the cause as the pool (ggplot2's mpg from its starter recipe: 48% of a first draw held the pool of
        # 'model', and its two `fixed:` rules on model broke in 92% and 78% of it).
        broken = [f"{rule!r} in {1 - held:.0%}" for rule, held in first_held.items() if held < 1]
        rules_too = (f" The first draw also broke {' and '.join(broken)} of rows, and a kept row must keep every "
                     f"rule too: check those rules (`synthforge profile` shows their share in the real table) or "
                     f"write one as `derive:`." if broken else "")
        raise SynthForgeError(
            f"generator {self.name!r} keeps sampling the pool of rare values of {worst!r}: {pooled_left:,} of "
            f"{first_draw:,} rows still held it after {MAX_POOLED_REDRAWS} fresh draws (the first draw: "
            f"{first_pooled:.0%} of rows; {shares[worst]:.0%} of its training values are each held by fewer than "
            f"{self.encoder_.config.min_category_count} rows, and are pooled so that no rare real value is "
            f"shown).{rules_too} If {worst!r} is a number or a date, set its `kind` under source.columns; if it "
            f"identifies people, make it an identifier.")

    def _pooled_columns(self) -> list[str]:
        """Learned categorical columns with a pool of rare values (``_RARE_``) among their categories, drawn
        again when sampled (not those :meth:`_unreleased_columns` writes as null)."""
        unreleased = self._unreleased_columns()
        return [name for name in self.encoder_.columns if name not in self.encoder_.derived_
                and self.schema_[name].kind == ColumnKind.categorical and name not in unreleased
                and RARE in self.encoder_.transformer(name).categories_]

    def _unreleased_columns(self) -> list[str]:
        """Under a privacy budget, the categorical columns whose pool holds most of their rows: the budget
        released too few values to draw the pool again, so a pooled value is written as null instead."""
        if not getattr(self, "privacy_", None):
            return []
        unreleased = []
        for name in self.encoder_.columns:
            transformer = self.encoder_.transformer(name)
            categories = getattr(transformer, "categories_", [])
            if RARE in categories and self.schema_[name].kind == ColumnKind.categorical:
                share = transformer.counts_[categories.index(RARE)] / max(sum(transformer.counts_), 1)
                if share >= 0.5:
                    unreleased.append(name)
        return unreleased

    def _sample_by_rejection(self, n: int, conditions: dict[str, Any], rng: np.random.Generator) -> pl.DataFrame:
        """For generators without native conditioning: keep sampling until ``n`` rows match."""
        matches: list[pl.DataFrame] = []
        found = drawn = 0
        match = pl.all_horizontal(
            pl.col(c).is_null() if v is None else (pl.col(c) == v) for c, v in conditions.items()
        )
        while found < n:
            batch = max(1000, 2 * (n - found))
            frame = self.encoder_.decode(self._sample(batch, None, rng)).filter(match)
            drawn += batch
            matches.append(frame)
            found += frame.height
            if drawn >= 200 * n + 100_000 and found < n:
                raise ConditionError(
                    f"generator {self.name!r} cannot condition natively, and only {found} of {drawn:,} sampled "
                    f"rows matched {conditions}. Use a generator that supports conditions (e.g. 'copula')."
                )
        return pl.concat(matches).head(n)

    def _finish(self, frame: pl.DataFrame, conditions: dict[str, Any], rng: np.random.Generator,
                pinned: set[str] | None = None) -> pl.DataFrame:
        n = frame.height
        # Decoding round-trips conditioned values to float precision; pin them exactly.
        frame = frame.with_columns(
            pl.lit(value, dtype=frame.schema[column]).alias(column) for column, value in conditions.items()
        )
        frame = frame.with_columns(regenerate_columns(self.identifiers_, n, rng, frame,
                                                      getattr(self, "_personal_real", None)))
        frame = frame.with_columns(pl.col(name).replace(RARE, None) for name in self._unreleased_columns())
        frame = enforce(frame, self.schema_)
        # Comparisons and `fixed:` rules are mended in place (rule_repair), given the columns the caller holds.
        frame = repair(frame, plan_repairs(self.schema_, set(conditions) | (pinned or set())), self.schema_, rng)
        for rule in self.schema_.constraints:  # a derived column is computed, so its rule holds by construction
            frame = rule.apply(frame)
        return frame.select([c for c in self.schema_.output_names if c in frame.columns])


def coerce_conditions(schema: Schema, raw: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``column=value`` text (from the command line) into values of each column's type."""
    conditions: dict[str, Any] = {}
    for column, text in raw.items():
        spec = schema[column]
        if text.lower() in ("null", "none", ""):
            conditions[column] = None
        elif spec.kind == ColumnKind.boolean:
            if text.lower() not in ("true", "false"):
                raise ConditionError(f"{column!r} is boolean: condition it on true or false, not {text!r}.")
            conditions[column] = text.lower() == "true"
        elif spec.kind in (ColumnKind.integer, ColumnKind.continuous) or (
            spec.kind == ColumnKind.categorical and spec.dtype.startswith(("Int", "UInt"))
        ):
            try:
                number = float(text)
            except ValueError:
                raise ConditionError(f"{column!r} is numeric: {text!r} is not a number.") from None
            conditions[column] = int(number) if number.is_integer() and "Float" not in spec.dtype else number
        else:
            conditions[column] = text
    return conditions


def _protected_sets(schema: Schema, present: list[str], below: int) -> list[tuple[list[str], int]]:
    """The column sets copy protection counts, each with its threshold: whole rows on the learned columns, held by
    fewer than ``below`` rows; and, where some learned columns are not quasi-identifiers, records unique on those:
    a row may differ from every training row in a measurement nobody knows (a date, a weight) and still single out
    a person by what can be known."""
    columns = [c.name for c in schema.learned if c.name in present]
    if below <= 0 or not columns:
        return []
    known = [c for c in schema.quasi_identifiers if c in columns]
    return [(columns, below)] + ([(known, 2)] if known and len(known) < len(columns) else [])


def _unless_grid(schema: Schema, records: tuple[pl.Schema, pl.Series] | None,
                 rows: int) -> tuple[pl.Schema, pl.Series] | None:
    """The protection of records unique on their quasi-identifiers, or None where those columns are a grid's
    coordinates (:meth:`Schema.quasi_identifier_grid`): every record is unique there by design, and refusing
    every training cell would draw each row about four times (Texas housing) and leave only the holdout's cells,
    leaning the output toward the rows held out."""
    if records is None:
        return None
    columns, hashes = list(records[0]), records[1]
    return None if schema.quasi_identifier_grid(rows, int(hashes.list.len()[0]), columns) else records


class _RareRowCounter:
    """What :meth:`Generator.protect_rows` keeps, counted over a table's chunks (internal form) as they pass: the
    hashes of rows, on the learned columns, held by fewer than ``below`` rows, and, where some learned columns are
    not quasi-identifiers, of records unique on their quasi-identifiers."""

    def __init__(self, schema: Schema, below: int, scratch: Path | None) -> None:
        from synthforge.data.streaming import HashCounter

        self._parts = [(names, fewer_than, HashCounter(scratch))
                       for names, fewer_than in _protected_sets(schema, [c.name for c in schema.learned], below)]
        self._schemas: list[pl.Schema | None] = [None] * len(self._parts)
        self._schema, self._rows = schema, 0

    def add(self, frame: pl.DataFrame) -> None:
        self._rows += frame.height
        for index, (names, _, counter) in enumerate(self._parts):
            selected = frame.select(names)
            self._schemas[index] = selected.schema
            counter.add(selected.hash_rows().to_numpy())

    def protection(self) -> tuple[tuple[pl.Schema, pl.Series] | None, tuple[pl.Schema, pl.Series] | None]:
        """(rows, records) as :func:`rare_row_hashes` gives them; None for what was not counted or met no row."""
        found: list[tuple[pl.Schema, pl.Series] | None] = [
            (schema, pl.Series(counter.rare(fewer_than), dtype=pl.UInt64).implode()) if schema is not None else None
            for (_, fewer_than, counter), schema in zip(self._parts, self._schemas, strict=True)]
        found += [None] * (2 - len(found))
        return found[0], _unless_grid(self._schema, found[1], self._rows)

    def close(self) -> None:
        for _, _, counter in self._parts:
            counter.close()


def matching_rows(frame: pl.DataFrame, protection: tuple[pl.Schema, pl.Series]) -> pl.Series:
    """Which rows of ``frame`` hash, on the protection's columns, to one of its protected rows."""
    schema, hashes = protection
    return frame.select(pl.col(name).cast(dtype, strict=False) for name, dtype in schema.items()) \
        .hash_rows().is_in(hashes)


def rare_row_hashes(frame: pl.DataFrame, below: int) -> tuple[pl.Schema, pl.Series]:
    """The frame's schema and the hashes of its rows held by fewer than ``below`` rows (one list, for is_in)."""
    counts = frame.hash_rows().value_counts(name="count")
    return frame.schema, counts.filter(pl.col("count") < below).to_series(0).implode()


def _parse_condition(spec: ColumnSpec, text: str) -> Any:
    """A date/time condition given as text, read in the column's source format (or any format it is in)."""
    series = pl.Series(spec.name, [text])
    candidates = [text_format_of(spec.format, spec.dtype)] if spec.format else []
    found = detect_format(series)
    candidates += [found] if found else []
    for candidate in candidates:
        parsed = candidate.parse(series)
        if parsed.item(0) is not None:
            return parsed.cast(spec.polars_dtype).item(0)
    raise ConditionError(f"cannot condition {spec.name!r} on {text!r}: not a date/time"
                         + (f" written {spec.format!r}" if spec.format else "") + ".")


def read_model_config(directory: str | Path, format: str = MODEL_FORMAT,
                      version: int = MODEL_FORMAT_VERSION) -> dict[str, Any]:
    """A saved model's ``config.json``, checked: of this ``format``, not newer than ``version``, with its weights."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.exists():
        raise ModelError(f"{directory} is not a saved SynthForge model: it has no {CONFIG_FILE}.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(f"{path} is not valid JSON ({error}); the model is damaged.") from None
    if not isinstance(config, dict) or config.get("format") != format:
        found = config.get("format") if isinstance(config, dict) else None
        raise ModelError(f"{path} is not a SynthForge {'image ' if format != MODEL_FORMAT else ''}model config "
                         f"(format {found!r}).")
    if config.get("format_version", 0) > version:
        raise ModelError(
            f"{directory} was saved by a newer SynthForge ({config.get('synthforge_version')}); upgrade to load it."
        )
    if not (directory / WEIGHTS_FILE).exists():
        raise ModelError(f"{directory} has no {WEIGHTS_FILE}; the model is incomplete.")
    return config


# Names of one-file model formats: ``save("m.pkl")`` would make a folder called m.pkl, which looks like a pickle.
FILE_LIKE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".json", ".h5",
                      ".onnx", ".zip")


def model_directory(directory: str | Path) -> Path:
    """The folder a model is saved into; a path that names a file (or looks like one) is refused."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ModelError(f"cannot save a model to {directory}: it is a file. A model is a folder (config.json and "
                         f"weights.safetensors); name a folder, e.g. {str(directory.with_suffix('')) + '-model'!r}.")
    if directory.suffix.lower() in FILE_LIKE_SUFFIXES:
        raise ModelError(f"cannot save a model to {str(directory)!r}: a model is a folder (config.json and "
                         f"weights.safetensors, never a pickle), and this name looks like a {directory.suffix} file; "
                         f"name a folder, e.g. {str(directory.with_suffix(''))!r}.")
    return directory


def _to_polars(table: Any) -> tuple[pl.DataFrame, str]:
    if isinstance(table, pl.DataFrame):
        return table, "polars"
    if isinstance(table, pl.LazyFrame):
        return table.collect(), "polars"
    if type(table).__module__.startswith("pandas"):
        return pl.from_pandas(table), "pandas"
    raise DataError(f"expected a polars or pandas DataFrame, got {type(table).__name__}.")


def as_polars(table: Any) -> pl.DataFrame:
    """A model's output as polars, whichever kind of frame it was fitted on (writers take polars)."""
    return _to_polars(table)[0]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a model config")

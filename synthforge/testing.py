"""The conformance suite every generator passes, first-party or third-party.

Like scikit-learn's ``check_estimator``: run it from a plugin's tests, with params
small enough to train in seconds::

    import pytest
    from synthforge.testing import conformance_checks

    @pytest.mark.parametrize("check", conformance_checks(), ids=lambda c: c.__name__)
    def test_conformance(check):
        check(MyGenerator, params={"epochs": 2})

or all at once with ``check_generator(MyGenerator, params={"epochs": 2})``.

Each check raises ``AssertionError`` with a message that says what the contract
requires. The table is 2,000 real UCI Adult rows shipped inside SynthForge, with
an identifier column, a numeric column with nulls and a date column added so
every kind of column is exercised. A check's tolerance comes from that table (what a uniform draw, a null-free
draw, a copier or a generator that ignores its conditions would give), and each check fails on a generator built
to break it (tests/test_conformance_kit.py).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthforge.data.encoder import RARE
from synthforge.data.schema import ColumnKind, Schema, infer_schema
from synthforge.errors import ConditionError, SynthForgeError
from synthforge.generator import FitContext, Generator

_DATA = Path(__file__).parent / "testing_data" / "adult_sample.csv"
_ROWS = 300
Check = Callable[..., None]


@cache
def conformance_table() -> pl.DataFrame:
    """2,000 Adult rows plus an identifier, a numeric column with nulls and a date column."""
    table = pl.read_csv(_DATA)
    index = pl.int_range(0, table.height, eager=True)
    return table.with_columns(
        pl.format("P-{}", (index * 7919 % 100_000).cast(pl.String).str.zfill(5)).alias("person_id"),
        pl.when(index % 13 == 0).then(None).otherwise(pl.col("hours-per-week")).alias("hours-per-week"),
        (pl.date(1994, 1, 1) + pl.duration(days=pl.col("fnlwgt") % 365)).alias("interview_date"),
    )


def conformance_schema() -> Schema:
    return infer_schema(conformance_table())


_fitted: dict[tuple[str, str], Generator] = {}


def fitted(cls: type[Generator], params: Mapping[str, Any] | None = None, seed: int = 0) -> Generator:
    """A generator fitted on the conformance table (cached per class, params and seed)."""
    key = (f"{cls.__module__}.{cls.__qualname__}", json.dumps([dict(params or {}), seed], sort_keys=True, default=str))
    if key not in _fitted:
        _fitted[key] = cls(params).fit(conformance_table(), conformance_schema(), FitContext(seed=seed))
    return _fitted[key]


# --- the checks -----------------------------------------------------------------------------


def check_declares_itself(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    assert issubclass(cls, Generator), f"{cls!r} must subclass synthforge.Generator"
    assert isinstance(cls.name, str) and cls.name and cls.name.strip() == cls.name, \
        f"{cls.__name__}.name must be a non-empty string without spaces around it"
    cls.Params()  # every parameter needs a default that works
    cls(params)


def check_rejects_bad_params(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    try:
        cls({**dict(params or {}), "no_such_parameter": 1})
    except SynthForgeError as error:
        assert "no_such_parameter" in str(error), f"the error for an unknown param must name it; got: {error}"
    else:
        raise AssertionError(f"{cls.__name__} accepted an unknown parameter; its Params need extra='forbid'")


def check_fit_returns_self(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    generator = cls(params)
    returned = generator.fit(conformance_table().head(400), None, FitContext(seed=1))
    assert returned is generator, "fit must return self"


def check_sample_shape_and_types(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    generator = fitted(cls, params)
    sample = generator.sample(_ROWS, seed=0)
    schema = conformance_schema()
    assert isinstance(sample, pl.DataFrame), "sample must return a polars DataFrame when fitted on one"
    assert sample.height == _ROWS, f"sample({_ROWS}) returned {sample.height} rows"
    assert sample.columns == schema.output_names, f"columns {sample.columns} != {schema.output_names}"
    source = conformance_table()
    for column in schema.learned:
        assert sample.schema[column.name] == source.schema[column.name], \
            f"column {column.name!r} came back as {sample.schema[column.name]}, not {source.schema[column.name]}"


def check_sample_zero_rows(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    sample = fitted(cls, params).sample(0, seed=0)
    assert sample.height == 0 and sample.columns == conformance_schema().output_names


def check_values_stay_in_domain(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    sample = fitted(cls, params).sample(_ROWS, seed=1)
    source = conformance_table()
    for column in conformance_schema().learned:
        values = sample.get_column(column.name).drop_nulls()
        if column.kind in (ColumnKind.categorical, ColumnKind.boolean):
            known = set(source.get_column(column.name).drop_nulls().to_list())
            unknown = set(values.to_list()) - known
            assert not unknown, f"{column.name!r} produced values never seen in training: {sorted(unknown)[:5]}"
        elif column.kind.numeric and values.len():
            low, high = source.get_column(column.name).min(), source.get_column(column.name).max()
            assert values.min() >= low and values.max() <= high, \
                f"{column.name!r} produced values outside the training range [{low}, {high}]"


def check_nulls_reproduced(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """Each column's null rate is kept: a column without nulls gets none, and one with a rate ``r`` is off by less
    than half the gap a null-free draw would give (``r / 2``), plus three binomial standard errors of the sample
    size, so a generator that never writes a null fails on every column where that gap stands out of the noise
    (here ``workclass``, ``occupation`` and ``hours-per-week``)."""
    rows = 2000
    sample = fitted(cls, params).sample(rows, seed=2)
    for column in conformance_schema().learned:
        rate = sample.get_column(column.name).null_count() / sample.height
        if column.null_rate == 0:
            assert rate == 0, f"{column.name!r} had no nulls in training but {rate:.1%} in the sample"
            continue
        noise = 3 * math.sqrt(column.null_rate * (1 - column.null_rate) / rows)
        tolerance = column.null_rate / 2 + noise
        assert abs(rate - column.null_rate) < tolerance, \
            f"{column.name!r} null rate {rate:.1%} is far from the training rate {column.null_rate:.1%} (allowed: " \
            f"±{tolerance:.1%}, half the gap a null-free draw gives plus the noise of {rows:,} rows)"


def check_seeds_reproduce(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    generator = fitted(cls, params)
    first, again, other = generator.sample(200, seed=5), generator.sample(200, seed=5), generator.sample(200, seed=6)
    assert first.equals(again), "the same sample seed must give the same rows"
    assert not first.equals(other), "different sample seeds must give different rows"
    refitted = cls(params).fit(conformance_table(), conformance_schema(), FitContext(seed=0))
    assert refitted.sample(200, seed=5).equals(first), "the same fit seed and sample seed must give the same rows"
    other_fit = cls(params).fit(conformance_table(), conformance_schema(), FitContext(seed=1))
    assert not other_fit.sample(200, seed=5).equals(first), \
        "a different fit seed must give a different model (every random stream follows the fit seed)"


def check_pooled_values_never_sampled_or_asked_for(cls: type[Generator],
                                                   params: Mapping[str, Any] | None = None) -> None:
    """The pool of rare categories (``_RARE_``: 22 countries of under 5 rows each, 2.6% of the conformance
    table's native-country values) stands for values too rare to show: it is never output, nor accepted
    as a condition."""
    generator = fitted(cls, params)
    try:
        sample = generator.sample(2000, seed=9)
    except SynthForgeError as error:  # the base class gave up drawing the pool again: the model draws little else
        raise AssertionError(f"sampling failed on the pool of rare values {RARE!r}: {error}") from error
    for column in conformance_schema().learned:
        if column.kind == ColumnKind.categorical:
            pooled = int((sample.get_column(column.name) == RARE).sum())
            assert pooled == 0, f"{pooled} sampled {column.name!r} values are the pool of rare values {RARE!r}"
    try:
        generator.sample(10, conditions={"native-country": RARE}, seed=0)
    except ConditionError as error:
        assert "pooled" in str(error), f"the error must say why {RARE!r} cannot be asked for; got: {error}"
    else:
        raise AssertionError(f"a condition on {RARE!r} (the pool of rare values) was accepted")


def check_save_load_round_trip(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    generator = fitted(cls, params)
    with tempfile.TemporaryDirectory() as directory:
        generator.save(directory)
        files = sorted(p.name for p in Path(directory).iterdir())
        assert files == ["config.json", "weights.safetensors"], \
            f"a saved model holds JSON and safetensors only: {files}"
        loaded = type(generator).load(directory)
    # Protection of the training rows is never saved (only their hashes, in memory): given the table again,
    # the loaded model redraws the same rows.
    loaded.protect_rows(conformance_table(), below=FitContext().protect_rows_below)
    assert loaded.sample(200, seed=9).equals(generator.sample(200, seed=9)), \
        "a loaded model must sample exactly what the saved one did with the same seed"


def check_conditions_honoured(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """Every conditioned row holds its conditions. A generator that conditions natively (``supports_conditions``)
    must also draw the rest of each row from the condition, not ignore it and have the base class write the
    condition over its rows: in the conformance table every husband is a man, while a third of all rows are
    women, so husbands sampled as women must be under half that gap (an ignoring generator gives all of it).
    Any other generator is sampled by rejection from its own joint, which ignores no condition."""
    generator = fitted(cls, params)
    sample = generator.sample(200, conditions={"sex": "Female", "income": ">50K"}, seed=3)
    assert sample.height == 200
    assert (sample.get_column("sex") == "Female").all() and (sample.get_column("income") == ">50K").all(), \
        "every row must hold the conditions"
    if cls.supports_conditions:
        _check_conditioned_rows_follow_the_condition(generator)
    try:
        generator.sample(10, conditions={"sex": "Martian"}, seed=3)
    except ConditionError as error:
        assert "Martian" in str(error) and "Female" in str(error), \
            f"the error must name the value and the valid ones: {error}"
    else:
        raise AssertionError("conditioning on an unknown value must raise ConditionError")


def _check_conditioned_rows_follow_the_condition(generator: Generator) -> None:
    table = conformance_table()
    husbands = generator.sample(1000, conditions={"relationship": "Husband"}, seed=3).get_column("sex") == "Female"
    real = float((table.filter(pl.col("relationship") == "Husband").get_column("sex") == "Female").mean())
    marginal = float((table.get_column("sex") == "Female").mean())
    share = float(husbands.mean())
    assert abs(share - real) < abs(marginal - real) / 2, \
        f"{share:.0%} of the rows sampled with relationship='Husband' are women ({real:.0%} of real husbands, " \
        f"{marginal:.0%} of all rows): the rest of a conditioned row must follow the condition, not ignore it"


def check_identifiers_never_copied(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    sample = fitted(cls, params).sample(1000, seed=4)
    real = set(conformance_table().get_column("person_id").to_list())
    copied = real & set(sample.get_column("person_id").to_list())
    assert not copied, f"real identifiers reached the output: {sorted(copied)[:5]}"


def check_training_rows_not_copied(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """No sampled row equals a training row that fewer than 5 training rows share (see ``protect_rows``), and the
    model does not replay its training rows: fitted on half the table, its rows repeat a training row less often
    than halfway from the other half's real rows (new people, who repeat a training row as often as the table's
    combinations recur) to a generator that copies its training rows (every row a training row)."""
    table = conformance_table().select("workclass", "marital-status", "relationship", "race", "sex", "income")
    train = table.sample(fraction=0.5, seed=0)
    fresh = table.with_row_index().join(train.with_row_index(), on="index", how="anti").drop("index")
    real_share = float(fresh.join(train.unique(), on=table.columns, how="semi", nulls_equal=True).height
                       / fresh.height)
    try:
        sample = cls(params).fit(train, None, FitContext(seed=2)).sample(1000, seed=3)
    except SynthForgeError as error:  # the base class gave up drawing copies again: the model has memorised them
        raise AssertionError(f"sampling failed on copies of rare training rows: {error}") from error
    rare = train.group_by(table.columns).len().filter(pl.col("len") < 5).drop("len")
    copied = sample.join(rare, on=table.columns, how="semi", nulls_equal=True)
    assert copied.height == 0, f"{copied.height} of 1,000 sampled rows copy a training row fewer than 5 rows share"
    repeated = sample.join(train.unique(), on=table.columns, how="semi", nulls_equal=True).height / sample.height
    allowed = real_share + (1 - real_share) / 2
    assert repeated < allowed, \
        f"{repeated:.0%} of sampled rows repeat a training row, against {real_share:.0%} of real rows left out of " \
        f"training (allowed: under {allowed:.0%}): the model copies its training rows"


def check_marginals_learned(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """Each column's distribution is learned: its distance from the training distribution (total variation for a
    category, Kolmogorov-Smirnov for a number or date), taken as a share of the way from what a draw of real rows
    gives to what a uniform draw gives (over the categories, or the training range), is under half on average
    over the columns where a uniform draw stands out of the noise. A uniform sampler scores about 1."""
    rows = 1000
    sample = fitted(cls, params).sample(rows, seed=8)
    table = conformance_table()
    resampled = table.sample(rows, with_replacement=True, seed=8)
    scores: dict[str, float] = {}
    for column in conformance_schema().learned:
        if not (column.kind.numeric or column.kind in (ColumnKind.categorical, ColumnKind.boolean)):
            continue
        real = table.get_column(column.name).drop_nulls()
        noise = _distance(resampled.get_column(column.name).drop_nulls(), real, column.kind)
        uniform = _uniform_distance(real, column.kind)
        if uniform > 2 * noise:  # a column close to uniform itself says nothing
            scores[column.name] = (_distance(sample.get_column(column.name).drop_nulls(), real, column.kind)
                                   - noise) / (uniform - noise)
    score = sum(scores.values()) / len(scores)
    worst = sorted(scores, key=scores.__getitem__, reverse=True)[:3]
    assert score < 0.5, \
        f"the sampled columns sit {score:.0%} of the way from the training distributions to a uniform draw on " \
        f"average (worst: {', '.join(f'{c!r} {scores[c]:.0%}' for c in worst)}; allowed: under 50%): the model " \
        f"learned little of them"


def _distance(sample: pl.Series, real: pl.Series, kind: ColumnKind) -> float:
    """Total variation between two categorical columns' shares, Kolmogorov-Smirnov between two numeric ones."""
    if not kind.numeric:
        shares = [s.value_counts(normalize=True, name="share").rename({s.name: "value"}) for s in (sample, real)]
        joined = shares[0].join(shares[1], on="value", how="full", coalesce=True).fill_null(0.0)
        return float((joined.get_column("share") - joined.get_column("share_right")).abs().sum() / 2)
    a, b = (np.sort(s.to_physical().cast(pl.Float64).to_numpy()) for s in (sample, real))
    if not len(a):
        return 1.0
    grid = np.union1d(a, b)
    return float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                        - np.searchsorted(b, grid, side="right") / len(b)).max())


def _uniform_distance(real: pl.Series, kind: ColumnKind) -> float:
    """The distance of a uniform draw (over the categories, or the range) from ``real``, as :func:`_distance`."""
    if not kind.numeric:
        shares = real.value_counts(normalize=True, name="share").get_column("share").to_numpy()
        return float(np.abs(shares - 1 / len(shares)).sum() / 2)
    values = np.sort(real.to_physical().cast(pl.Float64).to_numpy())
    low, high = values[0], values[-1]
    if high == low:
        return 0.0
    grid = np.unique(values)
    uniform = (grid - low) / (high - low)
    above = np.searchsorted(values, grid, side="right") / len(values)
    below = np.searchsorted(values, grid, side="left") / len(values)
    return float(max(np.abs(above - uniform).max(), np.abs(below - uniform).max()))


#: Rules the conformance table keeps in every row, neither kept by construction (a plain ``a <= b`` is): each is
#: drawn again where a model breaks it.
RULES = ("`capital-gain` * `capital-loss` == 0", "age - `education-num` >= 8")


def check_rules_kept(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """Every rule (a recipe's ``constraints:``, here :data:`RULES`) holds in every row the generator outputs:
    sampled, sampled under conditions and sampled given a context. A model that keeps breaking one fails."""
    from synthforge.constraints import Constraint

    table = conformance_table().head(500)  # rules are kept by drawing again, however little the model learned
    rules = [Constraint.model_validate(rule) for rule in RULES]
    schema = infer_schema(table).model_copy(update={"constraints": rules})
    generator = cls(params).fit(table, schema, FitContext(seed=4))
    try:
        outputs = {"sample": generator.sample(500, seed=4),
                   "sample with conditions": generator.sample(200, conditions={"sex": "Female"}, seed=4),
                   "sample_given": generator.sample_given(table.select("sex", "relationship").head(100), seed=4)}
    except SynthForgeError as error:  # the base class gave up drawing the rows that break a rule again
        raise AssertionError(f"sampling failed on the rules: {error}") from error
    for where, frame in outputs.items():
        for rule in rules:
            broken = int((~rule.holds(frame)).sum())
            assert broken == 0, f"{broken} of {frame.height} rows of {where} break the rule {rule.describe()!r}"


def check_pandas_in_pandas_out(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return
    generator = cls(params).fit(conformance_table().head(400).to_pandas(), None, FitContext(seed=1))
    sample = generator.sample(20, seed=1)
    assert type(sample).__module__.startswith("pandas"), "fitted on pandas, sample must return pandas"


def check_imputation(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """An imputing generator fills exactly the nulls, never with the pool of rare values; any other refuses with a
    clear error."""
    generator = fitted(cls, params)
    table = conformance_table().head(200).with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("workclass", "age", "sex", "native-country"))
    if not cls.supports_imputation:
        try:
            generator.impute(table)
        except SynthForgeError as error:
            assert "impute" in str(error), f"the refusal must say it cannot impute: {error}"
            return
        raise AssertionError("a generator without supports_imputation must refuse impute() with SynthForgeError")
    filled = generator.impute(table, seed=5)
    assert filled.columns == table.columns and filled.height == table.height, "impute keeps the table's shape"
    for column in ("workclass", "age", "sex", "native-country"):
        assert filled.get_column(column).null_count() == 0, f"{column!r} still has nulls after impute"
    pooled = int((filled.get_column("native-country") == RARE).sum())
    assert pooled == 0, f"{pooled} imputed 'native-country' cells are the pool of rare values {RARE!r}"
    given = table.get_column("sex").is_not_null()
    assert filled.get_column("sex").filter(given).equals(table.get_column("sex").filter(given)), \
        "impute must keep every given cell unchanged"
    assert filled.get_column("person_id").equals(table.get_column("person_id")), "impute leaves identifiers alone"
    assert generator.impute(table, seed=5).equals(filled), "the same seed must impute the same values"


def check_sample_given(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """``sample_given``: one row per context row, each holding its context exactly, the same for a seed; with
    ``supports_context``, numbers and nulls in the context too (what a child table's rows are sampled with)."""
    generator = fitted(cls, params)
    context = conformance_table().select("sex", "relationship").head(60)
    if cls.supports_context:
        context = conformance_table().select("sex", "age", "workclass").head(60)
    drawn = generator.sample_given(context, seed=2)
    assert drawn.height == context.height, "sample_given returns one row per context row"
    assert drawn.select(context.columns).equals(context), "every row must hold its own context, nulls included"
    assert drawn.equals(generator.sample_given(context, seed=2)), "the same seed must give the same rows"


def check_differential_privacy(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """Under a privacy budget a generator that declares ``supports_privacy`` spends within it, charges its model's
    own look at the rows to it (an accountant entry of the ``model`` stage), and lets no rare real value through:
    a category of 3 rows and an outlier of 1 row appear neither in the model nor in its samples. A generator
    that does not declare it refuses to fit under a budget."""
    from synthforge.privacy.accountant import Accountant

    table = conformance_table().with_row_index("row").with_columns(
        pl.when(pl.col("row") < 3).then(pl.lit("Zorblat-gov")).otherwise(pl.col("workclass")).alias("workclass"),
        pl.when(pl.col("row") == 5).then(987_654_321).otherwise(pl.col("fnlwgt")).alias("fnlwgt"),
    ).drop("row")
    schema = infer_schema(table)
    accountant = Accountant(2.0, 1e-5)
    context = FitContext(seed=0, privacy=accountant, seeded_noise=True)
    generator = _fit_if_declared(cls.supports_privacy, lambda: cls(params).fit(table, schema, context),
                                 "a generator without supports_privacy must refuse to fit under a privacy budget")
    if generator is None:
        return
    spent, delta = accountant.spent()
    assert spent <= accountant.epsilon * (1 + 1e-9) and delta <= accountant.delta, \
        f"spent (ε {spent:.4f}, δ {delta:.2e}) past the budget (ε {accountant.epsilon}, δ {accountant.delta})"
    assert any(m.stage == "model" for m in accountant.ledger), \
        "the model's own training must be charged to the accountant (stage 'model'): nothing was"
    assert generator.privacy_ is not None and generator.privacy_["spent"]["epsilon"] == round(spent, 6), \
        "the fitted generator must keep the accountant's summary (privacy_), saved with the model"
    categories = generator.encoder_.transformer("workclass").categories_
    assert "Zorblat-gov" not in categories, "a category of 3 rows must not survive the DP vocabulary"
    assert (generator.schema_["fnlwgt"].maximum or 0) < 987_654_321, "the schema must not keep a real 1-row maximum"
    drawn = generator.sample(2_000, seed=1)
    assert "Zorblat-gov" not in drawn.get_column("workclass").to_list(), "a rare category was sampled"
    assert drawn.get_column("fnlwgt").max() < 987_654_321, "a 1-row outlier was reproduced"
    with tempfile.TemporaryDirectory() as directory:
        generator.save(directory)
        assert json.loads((Path(directory) / "config.json").read_text())["privacy"]["spent"]["epsilon"] <= 2.0


def _fit_if_declared(declared: bool, fit: Callable[[], Generator], refusal: str) -> Generator | None:
    """The fitted generator where it declares the capability; where it does not, None once ``fit`` has refused
    with a SynthForgeError (an AssertionError saying ``refusal`` if it fitted instead)."""
    if declared:
        return fit()
    try:
        fit()
    except SynthForgeError:
        return None
    raise AssertionError(refusal)


class _ChunkedTable:
    """A table handed out as a streamed source's training rows are (synthforge.data.streaming.TrainingStream)."""

    def __init__(self, table: pl.DataFrame, chunk_rows: int) -> None:
        self.table, self.chunk_rows = table, chunk_rows
        self.rows = table.height
        self.sample = table.sample(table.height // 2, seed=0)
        self.passes = 0

    def chunks(self) -> Any:
        self.passes += 1
        return (self.table.slice(start, self.chunk_rows) for start in range(0, self.table.height, self.chunk_rows))


def check_streaming(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """A generator that declares ``supports_streaming`` fits from rows on disk (:meth:`Generator.fit_streamed`):
    the table in chunks, its encoded rows read back in blocks (``np.asarray`` of them raises), the rows file gone
    after the fit, and samples in the source's columns and types, rare rows protected. One that does not
    declare it refuses a streamed fit."""
    table = conformance_table().head(400)
    schema = conformance_schema()
    stream = _ChunkedTable(table, chunk_rows=100)
    with tempfile.TemporaryDirectory() as scratch:
        context = FitContext(seed=2, scratch=Path(scratch))
        generator = _fit_if_declared(cls.supports_streaming, lambda: cls(params).fit_streamed(stream, schema, context),
                                     "a generator without supports_streaming must refuse a streamed fit")
        if generator is None:
            return
        assert not list(Path(scratch).iterdir()), "the encoded rows (and hash buckets) must be gone after the fit"
    assert stream.passes == 1, "every row is encoded and counted for copy protection in one pass over the chunks"
    sample = generator.sample(_ROWS, seed=0)
    assert sample.height == _ROWS and sample.columns == schema.output_names
    for column in schema.learned:
        assert sample.schema[column.name] == table.schema[column.name], \
            f"column {column.name!r} came back as {sample.schema[column.name]}, not {table.schema[column.name]}"
    assert getattr(generator, "_protected", None) is not None, "copy protection must be built from the chunks' rows"


def check_related_tables(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """A parent table with a child sequence, learned and sampled in its structure by this generator: exact
    keys, every sequence in order, the number of children learned. A sequence-aware plugin runs this."""
    from synthforge.data.schema import ColumnOverride
    from synthforge.relational import DatabaseGenerator, Relation, Relations

    rng = np.random.default_rng(0)
    people = pl.DataFrame({"id": np.arange(300), "group": rng.choice(["a", "b"], 300)})
    lengths = np.where(people.get_column("group").to_numpy() == "a", 1, 4)
    owner = np.repeat(np.arange(300), lengths)
    visits = pl.DataFrame({"person": owner, "day": np.concatenate([np.sort(rng.integers(0, 50, n)) for n in lengths]),
                           "score": rng.normal(size=len(owner)).round(3)})
    relations = Relations(["people", "visits"], {"people": "id", "visits": None},
                          [Relation("visits", "person", "people", True, "day")])
    schemas = {"people": infer_schema(people, {"id": ColumnOverride(kind=ColumnKind.identifier)}),
               "visits": infer_schema(visits, {"person": ColumnOverride(kind=ColumnKind.identifier)})}
    model = DatabaseGenerator(relations, lambda table: cls(params)).fit(
        {"people": people, "visits": visits}, schemas, lambda table: FitContext(seed=1))
    tables = model.sample(200, seed=3)
    assert tables["people"].height == 200
    assert not tables["people"].get_column("id").is_in(people.get_column("id").implode()).any(), \
        "primary keys must be regenerated"
    assert tables["visits"].get_column("person").is_in(tables["people"].get_column("id").implode()).all(), \
        "every foreign key must be a key of its parent"
    ordered = tables["visits"].group_by("person", maintain_order=True).agg((pl.col("day").diff().drop_nulls() >= 0)
                                                                            .all())
    assert ordered.get_column("day").all(), "every sequence must be in order"
    per = tables["visits"].group_by("person").len().join(tables["people"], left_on="person", right_on="id")
    means = dict(per.group_by("group").agg(pl.col("len").mean()).iter_rows())
    assert means.get("b", 0) > means.get("a", 0) + 1, f"the number of children must be learned per parent: {means}"


def check_conditionals_learned(generator: Generator, husbands_male: float = 0.85, wives_female: float = 0.5) -> None:
    """Conditioned rows follow the learned conditional, not the marginal, for a generator fitted on the
    conformance table: there every husband is a man and every wife a woman, while a third of all rows are women
    (wives are 5% of rows, so this needs a model that learned a rare conditional)."""
    husbands = generator.sample(1000, conditions={"relationship": "Husband"}, seed=1)
    wives = generator.sample(1000, conditions={"relationship": "Wife"}, seed=1)
    everyone = generator.sample(1000, seed=1)
    assert (husbands.get_column("relationship") == "Husband").all(), "every conditioned row holds the condition"
    assert (wives.get_column("relationship") == "Wife").all(), "every conditioned row holds the condition"
    male = float((husbands.get_column("sex") == "Male").mean())
    female = float((wives.get_column("sex") == "Female").mean())
    overall = float((everyone.get_column("sex") == "Female").mean())
    assert male > husbands_male, f"only {male:.0%} of sampled husbands are men"
    assert female > wives_female and female > overall, \
        f"{female:.0%} of sampled wives are women against {overall:.0%} of all rows"
    assert overall < 0.5, f"{overall:.0%} of unconditioned rows are women: the marginal (a third) was not learned"


def recipe_modes(cls: type[Generator]) -> list[dict[str, Any]]:
    """The ``output:`` of one recipe per mode the generator supports, for :func:`check_recipe_mode`."""
    modes: list[dict[str, Any]] = [
        {"mode": "synthesize", "rows": 300},
        {"mode": "augment", "rows": 200, "label_column": "is_synthetic"},
        {"mode": "rebalance", "column": "income", "shares": {"<=50K": 0.5, ">50K": 0.5}},
        {"mode": "conditions", "conditions": {"sex": "Female"}, "rows": 500},
    ]
    return [*modes, {"mode": "impute"}] if cls.supports_imputation else modes


def check_recipe_mode(generator: str, params: Mapping[str, Any], output: dict[str, Any], directory: Path) -> None:
    """Run a recipe naming the installed ``generator`` in one output mode, and check what that mode promises."""
    import yaml

    from synthforge.engine import run
    from synthforge.plugins import get_plugin_manager

    table = conformance_table().drop("person_id", "interview_date").head(1500)
    table.write_csv(directory / "adult.csv")
    # A mode test trains for a few epochs: the output is told apart from the real rows, so the detection gate
    # only warns here even where a plugin's defaults make it stop a run; every other default gate keeps its own.
    pm = get_plugin_manager()
    checks = [{"name": name, **({"on_fail": "warn"} if name == "detection" else {})}
              for name, cls in pm.checks().items()
              if cls.default and (cls.kind == "quality" or output["mode"] != "impute")]
    recipe = {"seed": 0, "source": {"path": "adult.csv"}, "holdout": 0.2, "checks": checks,
              "generator": {"name": generator, "params": dict(params)}, "output": {**output, "path": "out"}}
    (directory / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run(directory / "recipe.yaml", pm=pm)
    data = pl.read_csv(result.dataset_path)
    mode = output["mode"]
    if mode == "synthesize":
        assert data.height == output["rows"], f"synthesize must write {output['rows']} rows, wrote {data.height}"
    if mode == "augment":
        labels = data.get_column(output["label_column"])
        assert int(labels.sum()) == output["rows"] and data.height == result.rows["real"] + output["rows"], \
            "augment writes the real rows and the asked synthetic rows, labelled"
    if mode == "rebalance":
        share = float((data.get_column("income") == ">50K").mean())
        assert abs(share - 0.5) < 0.02, f"rebalance asked for 50% '>50K', got {share:.1%}"
    if mode == "conditions":
        assert (data.get_column("sex") == "Female").all(), "every conditioned row must hold the condition"
    if mode == "impute":
        nulls = table.null_count().sum_horizontal().item()
        assert data.height == table.height and data.null_count().sum_horizontal().item() == 0, \
            "impute writes every row of the table, with no nulls left"
        assert result.rows["imputed_cells"] == nulls > 0
        assert {c.kind for c in result.checks} == {"quality"}, "an imputed table is real rows: quality checks only"


def conformance_checks() -> list[Check]:
    return [check_declares_itself, check_rejects_bad_params, check_fit_returns_self, check_sample_shape_and_types,
            check_sample_zero_rows, check_values_stay_in_domain, check_nulls_reproduced, check_seeds_reproduce,
            check_save_load_round_trip, check_conditions_honoured, check_identifiers_never_copied,
            check_training_rows_not_copied, check_pooled_values_never_sampled_or_asked_for, check_marginals_learned,
            check_rules_kept, check_pandas_in_pandas_out, check_imputation, check_sample_given,
            check_differential_privacy, check_streaming]


def check_generator(cls: type[Generator], params: Mapping[str, Any] | None = None) -> None:
    """Run every conformance check; the first failure raises with the check's name."""
    for check in conformance_checks():
        try:
            check(cls, params)
        except AssertionError as error:
            raise AssertionError(f"{check.__name__}: {error}") from error


__all__ = [
    "check_conditionals_learned",
    "check_differential_privacy",
    "check_generator",
    "check_recipe_mode",
    "check_related_tables",
    "check_rules_kept",
    "check_sample_given",
    "check_streaming",
    "conformance_checks",
    "conformance_schema",
    "conformance_table",
    "fitted",
    "recipe_modes",
]

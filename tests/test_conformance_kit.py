"""The conformance suite can fail: each check against a generator built to break what it checks.

Each broken generator is the built-in copula with one fault, a subclass on the real base class: its
``_sample`` decodes the copula's rows, breaks them, and encodes them again, so everything the base class
does (conditions written over the rows, copies and the pool of rare values drawn again, rules) still runs.
The copula itself passes every check (tests/test_baseline.py), as every first-party generator does.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from synthforge.baseline import GaussianCopula
from synthforge.data.encoder import RARE, Span
from synthforge.data.schema import ColumnKind
from synthforge.generator import FitContext
from synthforge.testing import (
    check_conditions_honoured,
    check_imputation,
    check_marginals_learned,
    check_nulls_reproduced,
    check_pooled_values_never_sampled_or_asked_for,
    check_rules_kept,
    check_training_rows_not_copied,
)


class _Broken(GaussianCopula):
    """The copula, with ``_break`` applied to every row it draws."""

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        frame = self.encoder_.decode(super()._sample(n, conditions, rng))
        return self.encoder_.encode(self._break(frame, rng))

    def _break(self, frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        raise NotImplementedError

    def _learned(self, frame: pl.DataFrame, kinds: tuple[ColumnKind, ...]) -> list[str]:
        return [c for c in frame.columns if c in self.encoder_.columns and self.schema_[c].kind in kinds]


class UniformSampler(_Broken):
    """Every column drawn uniformly: over its categories, or over its training range."""

    name = "broken-uniform"

    def _break(self, frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        replaced = []
        for name in self._learned(frame, (ColumnKind.categorical, ColumnKind.integer)):
            column = frame.get_column(name)
            if self.schema_[name].kind == ColumnKind.categorical:
                categories = [c for c in self.encoder_.transformer(name).categories_ if c is not None and c != RARE]
                replaced.append(pl.Series(name, rng.choice(categories, frame.height), dtype=column.dtype))
            else:
                low, high = self.schema_[name].minimum, self.schema_[name].maximum
                replaced.append(pl.Series(name, rng.integers(int(low), int(high) + 1, frame.height)).cast(column.dtype))
        return frame.with_columns(replaced)


class NeverNull(_Broken):
    """Every null replaced by the column's first value in the draw."""

    name = "broken-never-null"

    def _break(self, frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        return frame.with_columns(pl.col(c).fill_null(pl.col(c).drop_nulls().first()) for c in frame.columns)


class WritesThePool(_Broken):
    """Every ``native-country`` is the pool of rare values."""

    name = "broken-writes-the-pool"

    def _break(self, frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        return frame.with_columns(pl.lit(RARE, dtype=frame.schema["native-country"]).alias("native-country"))


class ImputesThePool(_Broken):
    """Imputes every null with the column's last category (``native-country``'s is the pool of rare values)."""

    name = "broken-imputes-the-pool"
    supports_imputation = True

    def _impute(self, data: np.ndarray, missing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        frame = self.encoder_.decode(data)
        filled = []
        for index, name in enumerate(self.encoder_.columns):
            transformer, column = self.encoder_.transformer(name), frame.get_column(name)
            value = transformer.categories_[-1] if hasattr(transformer, "categories_") else column.drop_nulls()[0]
            filled.append(pl.when(pl.Series(missing[:, index])).then(pl.lit(value, dtype=column.dtype))
                          .otherwise(column).alias(name))
        return self.encoder_.encode(frame.with_columns(filled))


class IgnoresConditions(GaussianCopula):
    """Claims to condition natively and draws its rows as if no condition were given."""

    name = "broken-ignores-conditions"

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        return super()._sample(n, None, rng)


class BreaksRules(_Broken):
    """Every row a 17-year-old with 16 years of education: breaks ``age - education-num >= 8``."""

    name = "broken-rules"

    def _break(self, frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        return frame.with_columns(pl.lit(17, dtype=frame.schema["age"]).alias("age"),
                                  pl.lit(16, dtype=frame.schema["education-num"]).alias("education-num"))


class CopiesRows(GaussianCopula):
    """Keeps its encoded training rows and replays them at random."""

    name = "broken-copier"
    supports_conditions = False  # conditions by rejection: the rows are real rows either way

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        super()._fit(data, context)
        self.rows_ = np.asarray(data, dtype=np.float32)

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        return self.rows_[rng.integers(0, len(self.rows_), n)]


BROKEN = [
    (UniformSampler, check_marginals_learned, "of the way from the training distributions to a uniform draw"),
    (NeverNull, check_nulls_reproduced, "half the gap a null-free draw gives"),
    (WritesThePool, check_pooled_values_never_sampled_or_asked_for,
     "failed on the pool of rare values '_RARE_': .* keeps sampling the pool of rare values of 'native-country'"),
    (ImputesThePool, check_imputation, "imputed 'native-country' cells are the pool of rare values"),
    (CopiesRows, check_training_rows_not_copied, "the model copies its training rows"),
    (IgnoresConditions, check_conditions_honoured, "must follow the condition, not ignore it"),
    (BreaksRules, check_rules_kept, "failed on the rules: .* keeps breaking the rule 'age - `education-num` >= 8'"),
]


@pytest.mark.parametrize(("broken", "check", "message"), BROKEN, ids=lambda x: getattr(x, "__name__", ""))
def test_each_check_fails_on_the_generator_built_to_break_it(broken, check, message):
    with pytest.raises(AssertionError, match=message):
        check(broken)

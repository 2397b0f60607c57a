"""The Check contract: one score per check, a gate that decides whether a run may finish.

A check has a ``name``, a ``kind`` (``"quality"`` or ``"privacy"``), a pydantic
``Params`` model, a default gate (``default_min``/``default_max``) and
``run(train, holdout, synthetic, schema) -> CheckResult``. A recipe may change the
gate per check (``min``, ``max``, ``on_fail: error | warn``). A ``mandatory`` check runs
whatever the recipe lists, unless the recipe names it with ``enabled: off``. A check may also set
its threshold from the data when the recipe gives none (``gate_from_data``), as
exact copies does from the holdout's own overlap with the training table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

from synthforge.data.schema import Schema
from synthforge.generator import NoParams, validate_params

OnFail = Literal["error", "warn"]


@dataclass
class CheckResult:
    name: str
    kind: str
    score: float | None
    minimum: float | None
    maximum: float | None
    on_fail: str
    passed: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def gate(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"≥ {self.minimum:.4g}")
        if self.maximum is not None:
            parts.append(f"≤ {self.maximum:.4g}")
        return " and ".join(parts) or "none"


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    on_fail: OnFail | None = None


class Check:
    name: ClassVar[str] = ""
    kind: ClassVar[Literal["quality", "privacy"]] = "quality"
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    #: run on every recipe that lists no checks of its own
    default: ClassVar[bool] = False
    #: run in every run, listed or not: a recipe turns it off only by naming it with ``enabled: off``,
    #: and the report says so in red (the privacy gates: exact copies, identifier leak)
    mandatory: ClassVar[bool] = False
    default_min: ClassVar[float | None] = None
    default_max: ClassVar[float | None] = None
    default_on_fail: ClassVar[OnFail] = "error"
    #: which tables the check needs; the holdout may be missing (evaluate without --holdout)
    needs_holdout: ClassVar[bool] = False
    #: given every output row (real ones included, in augment and rebalance) as ``synthetic``, not only the new
    scores_output_rows: ClassVar[bool] = False
    #: compares whole distributions, so only warns on a run that shifts them on purpose (rebalance, conditions)
    warns_when_shifted: ClassVar[bool] = False
    #: looks at a whole dataset of related tables (:class:`synthforge.checks.relational.RelationalCheck`), not a table
    relational: ClassVar[bool] = False
    #: looks at labelled images (:class:`synthforge.checks.images.ImageCheck`), in a run whose source is `images:`
    images: ClassVar[bool] = False
    #: a privacy check whose own minimum (from the data, not a recipe's) marks the output as *farther* from the
    #: training rows than fresh real rows are: below it the output resembles its source too little, a fidelity
    #: problem, so the result is a quality warning and never fails a run on privacy's account
    below_is_fidelity: ClassVar[bool] = False

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        self.params = validate_params(self.Params, params, f"check {self.name!r}")

    @classmethod
    def applies(cls, schema: Schema) -> bool:
        """Whether the check has anything to look at in a table of this schema (not: constraints without rules)."""
        return True

    def measure(self, train: pl.DataFrame, holdout: pl.DataFrame | None, synthetic: pl.DataFrame,
                schema: Schema) -> tuple[float | None, str, dict[str, Any]]:
        """Return (score, one-line summary, details); implemented by each check."""
        raise NotImplementedError

    def gate_from_data(self, details: dict[str, Any]) -> tuple[float | None, float | None]:
        """The (min, max) gate when the recipe sets none; by default the class defaults."""
        return self.default_min, self.default_max

    def run(self, train: pl.DataFrame, holdout: pl.DataFrame | None, synthetic: pl.DataFrame, schema: Schema,
            gate: Gate | None = None) -> CheckResult:
        import time

        gate = gate or Gate()
        started = time.perf_counter()
        if self.needs_holdout and holdout is None:
            return CheckResult(self.name, self.kind, None, gate.min, gate.max, gate.on_fail or self.default_on_fail,
                               True, "skipped: needs a holdout table", {"skipped": True})
        score, summary, details = self.measure(train, holdout, synthetic, schema)
        return self.judge(score, summary, details, gate, time.perf_counter() - started)

    def judge(self, score: float | None, summary: str, details: dict[str, Any], gate: Gate | None,
              seconds: float) -> CheckResult:
        """The result of a measured score against the recipe's ``gate`` (else the check's own)."""
        gate = gate or Gate()
        default_min, default_max = (None if v is None else float(v) for v in self.gate_from_data(details))
        minimum = gate.min if gate.min is not None else default_min
        maximum = gate.max if gate.max is not None else default_max
        score = None if score is None else float(score)
        passed = bool(score is None or (
            (minimum is None or score >= minimum - 1e-12) and (maximum is None or score <= maximum + 1e-12)
        ))
        kind, on_fail = self.kind, gate.on_fail or self.default_on_fail
        if (not passed and self.below_is_fidelity and gate.min is None and minimum is not None
                and score is not None and score < minimum and (maximum is None or score <= maximum + 1e-12)):
            kind, on_fail = "quality", gate.on_fail or "warn"
            summary += FIDELITY
        return CheckResult(self.name, kind, score, minimum, maximum, on_fail, passed, summary, details, seconds)


#: what a result of a ``below_is_fidelity`` check below its own minimum adds to its summary
FIDELITY = (" — far on the good side of ideal: the output resembles the training rows less than fresh real rows "
            "do (or the holdout is not from the same population), a fidelity problem reported as a quality "
            "warning, not a privacy risk")

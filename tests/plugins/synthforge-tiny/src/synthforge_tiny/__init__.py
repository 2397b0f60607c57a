"""A real (if simple) generator: independent columns, each from its empirical distribution."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

import synthforge
from synthforge.data.encoder import EncoderConfig


class TinyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smoothing: float = Field(0.0, ge=0.0, description="Added to every category count.")


class IndependentMarginals(synthforge.Generator):
    """Samples each encoded column on its own, ignoring correlations."""

    name = "tiny"
    Params = TinyParams
    encoding = EncoderConfig(numeric="quantile", categorical="index")

    def _fit(self, data: np.ndarray, context: Any) -> None:
        self.columns_ = data.copy()

    def _sample(self, n: int, conditions: Any, rng: np.random.Generator) -> np.ndarray:
        rows = rng.integers(0, len(self.columns_), size=(n, self.columns_.shape[1]))
        return np.take_along_axis(self.columns_, rows, axis=0)

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"columns": self.columns_}, {}

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.columns_ = arrays["columns"]


@synthforge.hookimpl
def synthforge_generators() -> list[type[synthforge.Generator]]:
    return [IndependentMarginals]

"""Training parameters shared by neural generators; importable without torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainingParams(BaseModel):
    """Training parameters every neural generator accepts; subclass to add the model's own."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(100, ge=1, le=100_000, description="Most passes over the training rows.")
    batch_size: int = Field(500, ge=2, le=1_000_000, description="Rows per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="Adam's step size.")
    weight_decay: float = Field(0.0, ge=0, lt=1, description="L2 penalty on the weights.")
    validation_fraction: float = Field(0.1, ge=0, lt=0.5, description="Rows held back to decide early stopping.")
    patience: int = Field(10, ge=0, description="Epochs without validation improvement before stopping (0: never).")


class ConditionalTrainingParams(TrainingParams):
    """Training parameters of a generator that learns to condition on categorical values (see
    :class:`synthforge.nn.CategoricalConditions`)."""

    unconditional_rate: float = Field(0.5, ge=0, le=1, description="Share of training rows with no condition.")
    condition_keep_rate: float = Field(0.5, ge=0, le=1,
                                       description="In conditioned rows, chance that each category is given.")

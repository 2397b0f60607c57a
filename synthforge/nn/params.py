"""Training parameters shared by neural generators; importable without torch."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from synthforge.data.encoder import EncoderConfig
from synthforge.generator import GeneratorParams

# The shape rule of TrainingParams.adapted_to: the table size the defaults were tuned for, the fewest steps an
# epoch should have, the smallest batch it makes, and how far it may raise the epochs.
REFERENCE_ROWS = 30_000
MIN_STEPS_PER_EPOCH = 16
MIN_BATCH = 32
MAX_EPOCH_FACTOR = 3

Precision = Literal["auto", "float32", "bfloat16"]
"""Arithmetic of a model's matrix products: as named, or ``auto`` for bfloat16 where the CPU has it natively
(:func:`synthforge.nn.use_bfloat16`)."""


class PrecisionSampleParams(GeneratorParams):
    """``SampleParams`` of a torch model that can sample in bfloat16; subclass to add the model's own."""

    precision: Precision = Field(
        "auto", description="Arithmetic of the model's matrix products when sampling; auto: bfloat16 where the CPU "
                            "has it natively.")


class PrecisionTrainingParams(BaseModel):
    """Mix into the Params of a model whose training step runs under :func:`synthforge.nn.training_autocast`."""

    train_precision: Precision = Field(
        "auto", description="Arithmetic of the model's matrix products in training on a CPU (autocast); auto: "
                            "bfloat16 where the CPU has it natively. GPU and DP-SGD training stay float32.")


class TrainingParams(GeneratorParams):
    """Training parameters every neural generator accepts; subclass to add the model's own, and change
    their defaults with ``defaults = {"epochs": 50}`` (see :class:`synthforge.GeneratorParams`)."""

    epochs: int = Field(100, ge=1, le=100_000, description="Most passes over the training rows.")
    batch_size: int = Field(500, ge=2, le=1_000_000, description="Rows per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="The optimiser's (peak) step size.")
    weight_decay: float = Field(0.0, ge=0, lt=1, description="Weight decay (an L2 penalty; decoupled for AdamW).")
    max_training_time: float | None = Field(
        None, gt=0, description="Seconds of training at most: training stops after the epoch that passes them, "
                                "with the best weights so far (a validation loss's best, else the last).")
    adapt_to_table: bool = Field(
        True, description="Choose batch_size and epochs from the table's rows when the recipe does not set them "
                          "(see TrainingParams.adapted_to); false keeps the class defaults whatever the table.")

    #: how far adapted_to may raise the epochs on a small table (a model that memorises sooner sets less)
    max_epoch_factor: ClassVar[float] = MAX_EPOCH_FACTOR

    def batch_multiple(self) -> int:
        """What every batch size must be a multiple of (a PacGAN's pack size); 1 for most models."""
        return 1

    def adapted_to(self, rows: int) -> dict[str, Any]:
        """The params this table's shape changes, for those the user did not set (empty: none).

        The defaults were tuned on tables of tens of thousands of rows (UCI Adult, 32,561), where they
        give each model a number of optimiser steps, ``epochs × ⌈REFERENCE_ROWS / batch_size⌉``. A
        small table at the same defaults gets a few steps per epoch (a 1,200-row table at a batch of
        1,000 rows: 2), so its model stops far short of what it needs. On a table with fewer rows than
        ``16 × batch_size``, the batch becomes ``rows / 16`` (at least 32, a multiple of
        :meth:`batch_multiple`) and epochs rise until the steps match the reference count, up to
        ``max_epoch_factor`` times the default (``MAX_EPOCH_FACTOR`` unless the model sets less). Larger
        tables keep the defaults. A model's own params may add to this (``_adapt_to_table`` of the generator).
        """
        given = self.model_fields_set
        if not self.adapt_to_table or rows <= 0:
            return {}
        changes: dict[str, Any] = {}
        multiple = self.batch_multiple()
        batch = self.batch_size
        if "batch_size" not in given and rows < MIN_STEPS_PER_EPOCH * self.batch_size:
            batch = max(MIN_BATCH, rows // MIN_STEPS_PER_EPOCH)
            batch = max(multiple, batch // multiple * multiple)
            if batch < self.batch_size:
                changes["batch_size"] = batch
        if "epochs" not in given:
            reference_steps = self.epochs * -(-REFERENCE_ROWS // self.batch_size)
            steps_per_epoch = max(1, -(-rows // batch))
            epochs = min(round(reference_steps / steps_per_epoch), round(self.max_epoch_factor * self.epochs))
            if epochs > self.epochs:
                changes["epochs"] = epochs
        return changes


class EarlyStopping(BaseModel):
    """Mix into the Params of a model whose validation loss says when to stop (not a GAN's):
    :func:`synthforge.nn.train` holds rows back and restores the best epoch's weights."""

    validation_fraction: float = Field(0.1, ge=0, lt=0.5, description="Rows held back to decide early stopping.")
    patience: int = Field(10, ge=0, description="Epochs without validation improvement before stopping (0: never).")


class ConditionalTrainingParams(TrainingParams):
    """Training parameters of a generator that learns to condition on categorical values (see
    :class:`synthforge.nn.CategoricalConditions`)."""

    unconditional_rate: float = Field(0.5, ge=0, le=1, description="Share of training rows with no condition.")
    condition_keep_rate: float = Field(0.5, ge=0, le=1,
                                       description="In conditioned rows, chance that each category is given.")


class OneHotModelParams(ConditionalTrainingParams):
    """Parameters of a generator over one-hot categories and normalised numbers whose samples get marginal
    calibration (:mod:`synthforge.nn.calibration`): the VAE and the GAN."""

    numeric_encoding: Literal["mode_specific", "quantile"] = Field(
        "mode_specific", description="How numbers are normalised before training.")
    discrete_integer_max: int = Field(
        32, ge=0, le=1000, description="Integer columns with at most this many distinct values are learned as "
                                       "categories of their values (0: never).")
    calibrate: bool = Field(True, description="Match one-column marginals after training.")

    def encoder_config(self) -> EncoderConfig:
        """One-hot categories, columns that are functions of another derived rather than learned."""
        return EncoderConfig(numeric=self.numeric_encoding, categorical="onehot",
                             discrete_integer_max=self.discrete_integer_max, derive_functions=True)

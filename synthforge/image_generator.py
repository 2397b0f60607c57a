"""The ImageGenerator contract: a generator of labelled images, beside the table :class:`Generator`.

A plugin registers it through the same ``synthforge_generators`` hook; ``data_kind = "images"`` tells
the engine (and recipe validation) that it learns an image set (``source.images``), not a table.
A plugin subclasses :class:`ImageGenerator`, gives it a ``name``, ``Params`` and ``SampleParams``,
and implements:

- ``_fit(self, images, labels, context)``: ``images`` is ``float32 (n, channels, height, width)`` in
  [-1, 1], ``labels`` ``int64 (n,)`` indices into ``self.classes_``; draw randomness from ``context``;
- ``_sample(self, labels, seed)``: return ``float (len(labels), channels, height, width)`` in [-1, 1],
  one image of each given class; ``self.sample_params`` holds the call's sampling params;
- ``_get_state()`` / ``_set_state(arrays, extra)``: weights as numpy arrays (safetensors) and JSON extras.

The base class owns conversion to and from ``uint8`` pixels, seeding, sampling params, save and load
(``config.json`` + ``weights.safetensors``, never pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from synthforge.data.io import with_umask
from synthforge.errors import ModelError
from synthforge.generator import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    FitContext,
    Parameterised,
    read_model_config,
    seed_everything,
    validate_params,
)
from synthforge.provenance import own_version

IMAGE_MODEL_FORMAT = "synthforge-image-model"
IMAGE_MODEL_FORMAT_VERSION = 1


class ImageGenerator(Parameterised):
    """Base class of every image generator; see the module documentation for the contract."""

    description: ClassVar[str] = ""
    data_kind: ClassVar[str] = "images"
    uses_torch: ClassVar[bool] = True
    supports_gpu: ClassVar[bool] = True
    supports_conditions: ClassVar[bool] = True
    # What a table recipe asks of a generator; an image model offers none of it.
    supports_privacy: ClassVar[bool] = False
    supports_imputation: ClassVar[bool] = False
    supports_streaming: ClassVar[bool] = False

    def fit(self, pixels: np.ndarray, labels: np.ndarray, classes: list[str],
            context: FitContext | None = None) -> ImageGenerator:
        """Learn ``pixels`` (``uint8 (n, height, width, channels)``) given their ``labels`` (indices into
        ``classes``)."""
        context = context or FitContext()
        if pixels.ndim != 4 or pixels.dtype != np.uint8 or len(pixels) != len(labels) or len(pixels) == 0:
            raise ModelError("fit takes uint8 images (n, height, width, channels) and one label per image.")
        if labels.min() < 0 or labels.max() >= len(classes):
            raise ModelError(f"labels run from 0 to {len(classes) - 1} (one per class); got {labels.min()} to "
                             f"{labels.max()}.")
        self.shape_ = tuple(int(v) for v in pixels.shape[1:])
        self.classes_ = list(classes)
        self.seed_ = context.seed
        seed_everything(context.seed_for("init"), torch=self.uses_torch)
        self._fit(to_unit(pixels), np.asarray(labels, dtype=np.int64), context)
        return self

    def sample(self, labels: np.ndarray | list[int], seed: int | None = None, **sample_params: Any) -> np.ndarray:
        """One image of each class in ``labels``, ``uint8 (len(labels), height, width, channels)``."""
        self._check_fitted()
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes_)):
            raise ModelError(f"labels run from 0 to {len(self.classes_) - 1}; got {labels.min()} to {labels.max()}.")
        self.sample_params = validate_params(self.SampleParams, sample_params, f"generator {self.name!r}'s sampling")
        height, width, channels = self.shape_
        if labels.size == 0:
            return np.zeros((0, height, width, channels), dtype=np.uint8)
        seed = self.seed_ if seed is None else seed
        return from_unit(np.asarray(self._sample(labels, seed), dtype=np.float32))

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into ``directory``."""
        from safetensors.numpy import save_file

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays, extra = self._get_state()
        config = {"format": IMAGE_MODEL_FORMAT, "format_version": IMAGE_MODEL_FORMAT_VERSION,
                  "generator": self.name, "generator_class": f"{type(self).__module__}.{type(self).__qualname__}",
                  "synthforge_version": own_version(), "params": self.params.model_dump(mode="json"),
                  "seed": self.seed_, "shape": list(self.shape_), "classes": self.classes_, "state": extra}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / WEIGHTS_FILE))
        with_umask(directory / WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ImageGenerator:
        """Load a model saved by :meth:`save`; reads JSON and safetensors only, runs no code."""
        from safetensors.numpy import load_file

        config = read_model_config(directory, IMAGE_MODEL_FORMAT, IMAGE_MODEL_FORMAT_VERSION)
        if cls.name and config["generator"] != cls.name:
            raise ModelError(f"{directory} holds a {config['generator']!r} model, not {cls.name!r}.")
        generator = cls(config["params"])
        generator.shape_ = tuple(config["shape"])
        generator.classes_ = list(config["classes"])
        generator.seed_ = config["seed"]
        generator._set_state(load_file(str(Path(directory) / WEIGHTS_FILE)), config["state"])
        return generator

    def _check_fitted(self) -> None:
        if not hasattr(self, "shape_"):
            raise ModelError(f"{type(self).__name__} is not fitted: call fit() or load() first.")

    # --- what a plugin implements --------------------------------------------------------

    def _fit(self, images: np.ndarray, labels: np.ndarray, context: FitContext) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fit")

    def _sample(self, labels: np.ndarray, seed: int) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _sample")

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement _get_state")

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _set_state")


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """``uint8 (n, h, w, c)`` → ``float32 (n, c, h, w)`` in [-1, 1], as image models take them."""
    return (pixels.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()


def from_unit(images: np.ndarray) -> np.ndarray:
    """``float (n, c, h, w)`` in [-1, 1] → ``uint8 (n, h, w, c)``, values outside clipped."""
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def image_model_name(directory: str | Path) -> str | None:
    """The generator name of the image model saved in ``directory``; ``None`` when it holds none."""
    try:
        config = json.loads((Path(directory) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    return config.get("generator") if isinstance(config, dict) and config.get("format") == IMAGE_MODEL_FORMAT \
        else None


def is_image_generator(cls: type) -> bool:
    return getattr(cls, "data_kind", "table") == "images"

"""A real labelled image set for tests and the shipped recipe: scikit-learn's 8×8 handwritten digits.

``load_digits`` reads the copy inside scikit-learn's wheel (``sklearn/datasets/data/digits.csv.gz``; no
download): 1,797 images of 8×8 pixels with 17 grey levels, the test part of UCI's "Optical Recognition of
Handwritten Digits" (Alpaydin & Kaynak, 1998; CC BY 4.0). Written as an ImageFolder of grey PNGs, levels
0–16 scaled to 0–255. ``python -m synthforge.testing_images FOLDER`` writes ``recipes/data/digits``.

Below, the conformance suite every image generator passes (``check_image_generator``), on those digits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from synthforge.data.images import write_png


def digits_pixels() -> tuple[np.ndarray, np.ndarray]:
    """The digits as ``uint8 (1797, 8, 8, 1)`` and their labels 0–9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, :, :, None]
    return pixels, digits.target.astype(np.int64)


def write_digits(folder: Path, per_class: int | None = None) -> Path:
    """Write the digits (the first ``per_class`` of each, or all) as ``folder/<digit>/<n>.png``."""
    pixels, labels = digits_pixels()
    for digit in range(10):
        members = np.flatnonzero(labels == digit)[:per_class]
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for number, index in enumerate(members):
            write_png(folder / str(digit) / f"{number}.png", pixels[index])
    return folder



# --- the conformance suite of image generators ----------------------------------------------------------------
#
# Like synthforge.testing for table generators: run it from a plugin's tests with params small enough to train in
# seconds, check_image_generator(MyImageModel, params={"epochs": 1}). Each check raises AssertionError saying what
# the contract (synthforge.image_generator) requires.

_CONFORMANCE_PER_CLASS = 3


def conformance_images() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Three real digits of each class: ``uint8 (30, 8, 8, 1)``, their labels and the class names."""
    pixels, labels = digits_pixels()
    chosen = np.concatenate([np.flatnonzero(labels == d)[:_CONFORMANCE_PER_CLASS] for d in range(10)])
    return pixels[chosen], labels[chosen], [str(d) for d in range(10)]


def _fitted(cls: type, params: dict | None, seed: int = 0) -> Any:
    from synthforge.generator import FitContext

    pixels, labels, classes = conformance_images()
    return cls(params or {}).fit(pixels, labels, classes, FitContext(seed=seed))


def check_image_declares_itself(cls: type, params: dict | None = None) -> None:
    from synthforge.image_generator import ImageGenerator, is_image_generator

    assert issubclass(cls, ImageGenerator) and is_image_generator(cls), "an image generator subclasses ImageGenerator"
    assert cls.name and cls.name.isidentifier(), "an image generator has a `name` a recipe can write"
    cls.SampleParams()  # every sampling param has a default


def check_image_rejects_bad_params(cls: type, params: dict | None = None) -> None:
    from synthforge.errors import SynthForgeError

    try:
        cls({**(params or {}), "no_such_param": 1})
    except SynthForgeError:
        return
    raise AssertionError("an unknown param must be an error that names it")


def check_image_samples_are_uint8_of_the_training_size_and_reproduce(cls: type, params: dict | None = None) -> None:
    model = _fitted(cls, params)
    first = model.sample([0, 4, 9], seed=11)
    assert first.shape == (3, 8, 8, 1) and first.dtype == np.uint8, f"sample gave {first.shape} {first.dtype}"
    assert np.array_equal(first, model.sample([0, 4, 9], seed=11)), "one seed gives the same images"
    assert np.array_equal(first, _fitted(cls, params).sample([0, 4, 9], seed=11)), "one fit seed gives one model"
    assert model.sample([], seed=1).shape == (0, 8, 8, 1), "no labels, no images (of the right shape)"


def check_image_rejects_unknown_labels(cls: type, params: dict | None = None) -> None:
    from synthforge.errors import SynthForgeError

    model = _fitted(cls, params)
    try:
        model.sample([10])
    except SynthForgeError:
        return
    raise AssertionError("a label outside the classes must be an error")


def check_image_save_load_round_trip(cls: type, params: dict | None = None) -> None:
    import json
    import tempfile

    model = _fitted(cls, params)
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "model")
        names = sorted(p.name for p in (Path(folder) / "model").iterdir())
        assert names == ["config.json", "weights.safetensors"], f"a model is JSON and safetensors only, not {names}"
        json.loads((Path(folder) / "model" / "config.json").read_text())
        loaded = cls.load(Path(folder) / "model")
        assert np.array_equal(loaded.sample([1, 2], seed=5), model.sample([1, 2], seed=5)), \
            "a loaded model samples what the saved one did"


def image_conformance_checks() -> list[Any]:
    return [check_image_declares_itself, check_image_rejects_bad_params,
            check_image_samples_are_uint8_of_the_training_size_and_reproduce, check_image_rejects_unknown_labels,
            check_image_save_load_round_trip]


def check_image_generator(cls: type, params: dict | None = None) -> None:
    """Every image conformance check, in order."""
    for check in image_conformance_checks():
        check(cls, params)


if __name__ == "__main__":
    write_digits(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("recipes/data/digits"))

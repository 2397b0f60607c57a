"""Image runs without a trained model: reading an ImageFolder, recipe rules, the checks and the near-copy gate.

The diffusion model's own tests, and a whole run with it, are in plugins/synthforge-images/tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

import synthforge
from synthforge.checks.images import ImageCheckData, ImageNearCopies, frechet_distance
from synthforge.data.images import read_image_folder
from synthforge.engine import run
from synthforge.engine_images import split_images
from synthforge.errors import DataError, GateFailed, RecipeError
from synthforge.image_generator import ImageGenerator
from synthforge.plugins import get_plugin_manager
from synthforge.recipe import load_recipe
from synthforge.testing_images import check_image_generator, digits_pixels, write_digits


class Copier(ImageGenerator):
    """A "generator" that hands back its training images: what the near-copy gate exists to stop."""

    name: ClassVar[str] = "copier"
    uses_torch: ClassVar[bool] = False

    def _fit(self, images: np.ndarray, labels: np.ndarray, context: Any) -> None:
        self.images_, self.labels_ = images, labels

    def _sample(self, labels: np.ndarray, seed: int) -> np.ndarray:
        out = []
        for i, label in enumerate(labels):
            members = np.flatnonzero(self.labels_ == label)
            out.append(self.images_[members[i % len(members)]])
        return np.stack(out)

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"images": self.images_, "labels": self.labels_}, {}

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.images_, self.labels_ = arrays["images"], arrays["labels"]


class CopierPlugin:
    @synthforge.hookimpl
    def synthforge_generators(self) -> list[type]:
        return [Copier]


@pytest.fixture()
def digits(tmp_path: Path) -> Path:
    return write_digits(tmp_path / "digits", per_class=5)


def _recipe(tmp_path: Path, **output: Any) -> Path:
    recipe = {"seed": 3, "source": {"images": "digits"}, "holdout": 0.2, "generator": {"name": "copier"},
              "checks": [{"name": "image_near_copies"}],
              "output": {"mode": "augment", "per_class": 3, "path": "out", **output}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    return tmp_path / "recipe.yaml"


def test_an_image_folder_reads_as_labelled_pixels(digits: Path):
    images = read_image_folder(digits)
    pixels, _ = digits_pixels()
    assert images.classes == [str(d) for d in range(10)] and images.counts() == {str(d): 5 for d in range(10)}
    assert images.pixels.shape == (50, 8, 8, 1) and images.pixels.dtype == np.uint8
    assert np.array_equal(images.pixels[images.labels == 0][0], pixels[0])  # the PNGs hold the digits exactly


def test_a_corrupt_or_odd_sized_image_is_named(digits: Path):
    (digits / "3" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n this is no image")
    with pytest.raises(DataError, match=r"3/0\.png is not a readable image"):
        read_image_folder(digits)
    (digits / "3" / "0.png").unlink()
    from PIL import Image

    Image.new("L", (9, 8)).save(digits / "4" / "big.png")
    with pytest.raises(DataError, match=r"4/big\.png is 9×8 pixels, grey, but .* is 8×8 pixels"):
        read_image_folder(digits)


def test_holdout_takes_a_share_of_every_class(digits: Path):
    train, holdout = split_images(read_image_folder(digits), 0.2, np.random.default_rng(0))
    assert holdout is not None and holdout.counts() == {str(d): 1 for d in range(10)}
    assert len(train) == 40 and not set(train.files) & set(holdout.files)


def test_recipes_keep_images_and_tables_apart(tmp_path: Path, digits: Path):
    pm = get_plugin_manager(extra_plugins=[CopierPlugin()])
    base = {"source": {"images": "digits"}, "generator": {"name": "copier"}, "output": {"path": "out"}}
    with pytest.raises(RecipeError, match="give one of"):
        load_recipe({**base, "source": {"images": "digits", "path": "t.csv"}})
    with pytest.raises(RecipeError, match="per_class instead of output.rows"):
        load_recipe({**base, "output": {"path": "out", "rows": 10}})
    with pytest.raises(RecipeError, match="not made for images"):
        load_recipe({**base, "output": {"path": "out", "mode": "rebalance", "column": "label"}})
    with pytest.raises(RecipeError, match="'copula' does not learn images.*copier"):
        load_recipe({**base, "generator": {"name": "copula"}}, pm=pm)
    with pytest.raises(RecipeError, match="'copier' does not learn tables"):
        load_recipe({"source": {"path": "t.csv"}, "generator": {"name": "copier"}, "output": {"path": "out"}}, pm=pm)


def test_a_generator_that_copies_its_training_images_fails_the_near_copy_gate(tmp_path: Path, digits: Path):
    pm = get_plugin_manager(extra_plugins=[CopierPlugin()])
    with pytest.raises(GateFailed, match="image_near_copies"):
        run(_recipe(tmp_path), pm=pm)
    assert not (tmp_path / "out").exists()  # nothing written but the failed run's reports
    import json

    report = json.loads((tmp_path / "out.failed" / "report.json").read_text())
    (check,) = [c for c in report["checks"] if c["name"] == "image_near_copies"]
    assert check["score"] == 1.0 and check["details"]["exact_copies"] == 30 and not check["passed"]


def test_the_near_copy_gate_off_lets_the_run_write_the_augmented_folder(tmp_path: Path, digits: Path):
    """The whole output, on a model that needs no training: PNGs per class, the index, reports, model, manifest."""
    import polars as pl
    from PIL import Image

    pm = get_plugin_manager(extra_plugins=[CopierPlugin()])
    recipe = _recipe(tmp_path)
    data = yaml.safe_load(recipe.read_text())
    data["checks"] = [{"name": "image_near_copies", "enabled": False}]
    recipe.write_text(yaml.safe_dump(data))
    result = run(recipe, pm=pm)
    out = tmp_path / "out"
    assert result.rows == {"training": 40, "holdout": 10, "real": 40, "synthetic": 30}
    assert "the image_near_copies gate is turned off" in result.privacy_off[0]
    for digit in range(10):
        files = sorted((out / "images" / str(digit)).iterdir())
        assert len(files) == 4 + 3
        with Image.open(files[-1]) as image:
            assert image.size == (8, 8) and image.mode == "L"
    index = pl.read_csv(out / "index.csv")
    assert index.columns == ["file", "label", "is_synthetic"] and index.height == 70
    assert index["is_synthetic"].sum() == 30 and all((out / f).exists() for f in index["file"])
    assert {p.name for p in out.iterdir()} >= {"images", "index.csv", "report.json", "report.html", "manifest.json",
                                               "model"}
    loaded = Copier.load(out / "model")
    assert loaded.classes_ == [str(d) for d in range(10)] and loaded.sample([2, 2]).shape == (2, 8, 8, 1)


def test_an_output_inside_the_image_folder_is_refused(tmp_path: Path, digits: Path):
    pm = get_plugin_manager(extra_plugins=[CopierPlugin()])
    with pytest.raises(synthforge.SynthForgeError, match="inside source.images"):
        run(_recipe(tmp_path, path="digits/out"), pm=pm)
    assert not (digits / "out").exists()


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(400, 5))
    assert frechet_distance(points, points) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(points + 2.0, points) == pytest.approx(5 * 4.0, rel=1e-6)


def test_near_copies_of_a_fresh_sample_stay_at_the_holdouts_rate(digits: Path):
    """Held-out real digits are not copies of the training digits: the gate passes them."""
    images = read_image_folder(digits)
    train, holdout = split_images(images, 0.5, np.random.default_rng(1))
    assert holdout is not None
    fresh, reference = split_images(holdout, 0.5, np.random.default_rng(2))
    result = ImageNearCopies().run_images(ImageCheckData(train, reference, fresh))
    assert result.passed and result.details["exact_copies"] == 0


def test_the_image_conformance_suite_passes_a_generator_that_keeps_the_contract_and_fails_one_that_does_not():
    check_image_generator(Copier)

    class Unseeded(Copier):
        name: ClassVar[str] = "unseeded"

        def _sample(self, labels: np.ndarray, seed: int) -> np.ndarray:
            return np.random.default_rng().uniform(-1, 1, size=(len(labels), 1, 8, 8))

    with pytest.raises(AssertionError, match="one seed gives the same images"):
        check_image_generator(Unseeded)


def test_the_api_loads_an_image_model_and_refuses_to_fit_one_on_a_table(tmp_path: Path, digits: Path):
    import polars as pl

    pm = get_plugin_manager(extra_plugins=[CopierPlugin()])
    images = read_image_folder(digits)
    Copier().fit(images.pixels, images.labels, images.classes).save(tmp_path / "model")
    loaded = synthforge.load(tmp_path / "model", pm=pm)
    assert isinstance(loaded, Copier) and loaded.sample([3]).shape == (1, 8, 8, 1)
    with pytest.raises(synthforge.SynthForgeError, match="learns labelled images, not a table"):
        synthforge.fit(pl.DataFrame({"a": [1, 2, 3]}), generator="copier", pm=pm)

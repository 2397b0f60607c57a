"""The class-conditional image diffusion model, alone and in a whole run on real digits (a few steps: seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from synthforge_images import ImageDiffusion, ImageVAE

from synthforge.engine import run
from synthforge.errors import SynthForgeError
from synthforge.generator import FitContext
from synthforge.testing_images import digits_pixels, image_conformance_checks, write_digits
from synthforge.threads import limited_threads, thread_share

TINY = {"epochs": 1, "channels": [8, 16], "batch_size": 16, "train_timesteps": 50}


@pytest.fixture(scope="module", autouse=True)
def threads_as_in_a_run():
    """Fits outside a run use the threads a run would ($SYNTHFORGE_THREADS, else the cores), as runs do."""
    with limited_threads(thread_share()):
        yield


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = digits_pixels()
    chosen = np.concatenate([np.flatnonzero(labels == d)[:3] for d in range(10)])
    return pixels[chosen], labels[chosen]


@pytest.fixture(scope="module")
def fitted(digits: tuple[np.ndarray, np.ndarray]) -> ImageDiffusion:
    return ImageDiffusion(TINY).fit(*digits, [str(d) for d in range(10)], FitContext(seed=4))


def test_importing_the_plugin_imports_neither_torch_nor_diffusers():
    code = ("import sys, synthforge_images, synthforge; synthforge.get_plugin_manager().generators(); "
            "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_samples_are_images_of_the_training_size_and_reproduce_from_their_seed(fitted: ImageDiffusion,
                                                                               digits: tuple[np.ndarray, np.ndarray]):
    first = fitted.sample([0, 1, 9], seed=7, steps=2)
    assert first.shape == (3, 8, 8, 1) and first.dtype == np.uint8
    assert np.array_equal(first, fitted.sample([0, 1, 9], seed=7, steps=2))
    assert not np.array_equal(first, fitted.sample([0, 1, 9], seed=8, steps=2))
    again = ImageDiffusion(TINY).fit(*digits, [str(d) for d in range(10)], FitContext(seed=4))
    assert np.array_equal(first, again.sample([0, 1, 9], seed=7, steps=2))  # one seed drives the fit too


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "dpm_solver"])
def test_each_sampler_and_guidance_is_a_sampling_param(fitted: ImageDiffusion, scheduler: str):
    out = fitted.sample([3, 3], seed=1, scheduler=scheduler, steps=3, guidance=3.0)
    assert out.shape == (2, 8, 8, 1)
    with pytest.raises(SynthForgeError, match="steps"):
        fitted.sample([3], steps=0)


def test_a_saved_model_is_json_and_safetensors_and_samples_the_same(fitted: ImageDiffusion, tmp_path: Path):
    fitted.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "weights.safetensors"]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["generator"] == "image_diffusion" and config["shape"] == [8, 8, 1] and len(config["classes"]) == 10
    loaded = ImageDiffusion.load(tmp_path / "model")
    assert np.array_equal(loaded.sample([5, 6], seed=2, steps=2), fitted.sample([5, 6], seed=2, steps=2))


def test_an_image_size_the_unet_does_not_divide_is_padded_and_cropped_back():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 7, 5, 3), dtype=np.uint8)
    model = ImageDiffusion({**TINY, "channels": [8, 16, 16]}).fit(pixels, np.array([0, 1] * 3), ["a", "b"])
    assert model.padded_ == (8, 8) and model.sample([1], steps=1).shape == (1, 7, 5, 3)


def test_a_run_augments_the_digits_end_to_end(tmp_path: Path):
    write_digits(tmp_path / "digits", per_class=4)
    recipe = {"seed": 2, "source": {"images": "digits"}, "holdout": 0.25,
              "generator": {"name": "image_diffusion", "params": TINY},
              "checks": [{"name": n, "params": {"epochs": 2}} for n in
                         ("image_frechet", "image_precision_recall", "image_tstr", "image_augmentation_lift")],
              "output": {"mode": "augment", "per_class": 2, "path": "out", "sampling": {"steps": 2}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run(tmp_path / "recipe.yaml")
    out = tmp_path / "out"
    assert result.rows == {"training": 30, "holdout": 10, "real": 30, "synthetic": 20}
    index = pl.read_csv(out / "index.csv")
    for digit in range(10):
        rows = index.filter(pl.col("label") == digit)
        assert rows.height == 5 and rows["is_synthetic"].sum() == 2
        assert len(list((out / "images" / str(digit)).glob("*.png"))) == 5
    from PIL import Image

    with Image.open(out / index.filter(pl.col("is_synthetic"))["file"][0]) as image:
        assert image.size == (8, 8) and image.mode == "L"
    report = json.loads((out / "report.json").read_text())
    assert {c["name"] for c in report["checks"]} == {"image_frechet", "image_precision_recall", "image_tstr",
                                                      "image_augmentation_lift", "image_near_copies"}
    (lift,) = [c for c in report["checks"] if c["name"] == "image_augmentation_lift"]
    assert lift["score"] == pytest.approx(lift["details"]["augmented"] - lift["details"]["real_only"])
    assert "penultimate layer" in (out / "report.html").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"] == "image_diffusion" and len(manifest["source_sha256"]) == 64
    loaded = ImageDiffusion.load(out / "model")
    assert loaded.sample([1, 2], steps=1).shape == (2, 8, 8, 1)


def test_the_vae_learns_each_class_and_saves_as_json_and_safetensors(tmp_path: Path):
    """After a few seconds of training, each class's samples look most like that class's real digits."""
    pixels, labels = digits_pixels()
    chosen = np.concatenate([np.flatnonzero(labels == d)[:20] for d in range(10)])
    model = ImageVAE({"epochs": 30, "batch_size": 32, "channels": 16}).fit(
        pixels[chosen], labels[chosen], [str(d) for d in range(10)], FitContext(seed=1))
    wanted = np.repeat(np.arange(10), 10)
    samples = model.sample(wanted, seed=3)
    assert samples.shape == (100, 8, 8, 1) and np.array_equal(samples, model.sample(wanted, seed=3))
    real_means = np.stack([pixels[chosen][labels[chosen] == d].mean(axis=0).ravel() for d in range(10)])
    sample_means = np.stack([samples[wanted == d].mean(axis=0).ravel() for d in range(10)])
    nearest = np.argmin(((sample_means[:, None] - real_means[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest == np.arange(10)).sum() >= 9, nearest
    model.save(tmp_path / "vae")
    loaded = ImageVAE.load(tmp_path / "vae")
    assert np.array_equal(loaded.sample(wanted[:5], seed=3, temperature=0.5), model.sample(wanted[:5], seed=3,
                                                                                          temperature=0.5))


@pytest.mark.parametrize("check", image_conformance_checks(), ids=lambda c: c.__name__)
@pytest.mark.parametrize(("cls", "params"), [(ImageDiffusion, {**TINY, "epochs": 1}),
                                             (ImageVAE, {"epochs": 1, "channels": 8})], ids=["diffusion", "vae"])
def test_conformance(check, cls, params):
    check(cls, params)

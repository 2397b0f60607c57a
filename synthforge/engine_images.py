"""The pipeline for a recipe whose source is a folder of labelled images (``source.images``).

load (every image of every class folder, checked) → split (a seeded holdout of each class) → fit the image
generator (given the labels) → sample ``output.per_class`` images of each class → check (feature-space
fidelity, train-on-synthetic accuracy, near-copies in pixel space) → write ``images/<label>/<n>.png``, the
index table (file, label, is_synthetic), the reports, the model and the manifest into one hidden folder,
renamed into place only when every gate passed (:func:`synthforge.engine.commit_output`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthforge.checks.images import ImageCheckData, run_image_checks
from synthforge.data.images import ImageSet, read_image_folder, write_png
from synthforge.data.io import open_writer
from synthforge.data.ownership import OutputRefused
from synthforge.engine import (
    FORMAT_EXTENSIONS,
    RunInfo,
    RunResult,
    _log_checks,
    _now,
    _Timer,
    commit_output,
    fit_context,
    open_staging,
    privacy_turned_off,
)
from synthforge.plugins import SynthForgePluginManager
from synthforge.provenance import machine, package_versions
from synthforge.recipe import Recipe
from synthforge.seeds import RandomStreams, derive_seed

IMAGES_FOLDER = "images"


def load_images(recipe: Recipe) -> ImageSet:
    """The recipe's image set, with an output path inside it refused (its images would be read as a class)."""
    assert recipe.source.images is not None
    folder = recipe.resolve(recipe.source.images)
    output = recipe.resolve(recipe.output.path)
    if folder in output.parents:
        raise OutputRefused(f"output.path {output} is inside source.images {folder}: the next run would read the "
                            "output as a class of images. Give the output a folder outside the image set.")
    return read_image_folder(folder)


def validate_images(recipe: Recipe) -> list[str]:
    """``synthforge validate`` for an image set: read and check every file without training."""
    images = load_images(recipe)
    height, width, channels = images.shape
    return [f"{len(images):,} images of {width}×{height} pixels, {'grey' if channels == 1 else 'RGB'}, in "
            f"{len(images.classes)} classes: " + ", ".join(f"{k} ({v})" for k, v in images.counts().items())]


def split_images(images: ImageSet, fraction: float, rng: np.random.Generator) -> tuple[ImageSet, ImageSet | None]:
    """A seeded holdout of ``fraction`` of each class (stratified: a rare class is held out too), at least one
    image of a class of two or more when the fraction is above 0."""
    if fraction <= 0:
        return images, None
    held: list[np.ndarray] = []
    for label in range(len(images.classes)):
        members = np.flatnonzero(images.labels == label)
        count = min(max(round(fraction * len(members)), 1), len(members) - 1) if len(members) > 1 else 0
        held.append(rng.permutation(members)[:count])
    holdout = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(images)), holdout)
    return images.subset(train), images.subset(holdout)


def run_images(recipe: Recipe, pm: SynthForgePluginManager, info: RunInfo, result: RunResult, timer: _Timer,
               log: Callable[[str], None], progress: bool) -> None:
    result.privacy_off = [line for line in privacy_turned_off(recipe, pm) if "protect_rows_below" not in line]
    for line in result.privacy_off:
        log(f"PRIVACY OFF: {line}")
    with timer("load"):
        images = load_images(recipe)
        height, width, channels = images.shape
        log(f"loaded {len(images):,} images of {width}×{height} pixels × {channels} channel(s) in "
            f"{len(images.classes)} classes; {result.threads} CPU thread{'s' if result.threads != 1 else ''}")
    with timer("split"):
        train, holdout = split_images(images, recipe.holdout.fraction, RandomStreams(recipe.seed).rng("split"))
        log(f"training on {len(train):,} images, holding out {len(holdout) if holdout else 0:,}")
    generator = pm.get_generator(recipe.generator.name)(recipe.generator.params)
    context = fit_context(recipe, pm, info, recipe.seed, recipe.generator, log, progress)
    with timer("fit"):
        log(f"fitting {generator!r}")
        generator.fit(train.pixels, train.labels, train.classes, context)  # type: ignore[call-arg]
    result.generator = generator  # type: ignore[assignment]
    output = recipe.output
    temporary = open_staging(info.output_path, log)
    try:
        with timer("sample"):
            synthetic, rows = _write_images(recipe, generator, train, temporary, pm, log)
        result.rows = {"training": len(train), "holdout": len(holdout) if holdout else 0, **rows}
        with timer("checks"):
            data = ImageCheckData(train, holdout, synthetic, seed=recipe.seed,
                                  device=str(getattr(generator, "device_", "cpu")))
            result.checks = run_image_checks(recipe.checks, pm.checks(), data)
        _log_checks(result.checks, log)
        from synthforge.report.images import write_image_reports

        versions = package_versions(generator)  # type: ignore[arg-type]
        with timer("report"):
            write_image_reports(temporary, info=_describe(info, recipe, generator, result, versions), train=train,
                                synthetic=synthetic, checks=result.checks)
        commit_output(temporary, info.output_path, result, timer, generator.save if output.save_model else None,
                      lambda: _manifest(info, recipe, generator, result, versions), recipe.inputs())
        result.output_path = info.output_path
        result.dataset_path = info.output_path / IMAGES_FOLDER
        log(f"wrote {result.dataset_path}")
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _write_images(recipe: Recipe, generator: Any, train: ImageSet, folder: Path, pm: SynthForgePluginManager,
                  log: Callable[[str], None]) -> tuple[ImageSet, dict[str, int]]:
    """The real training images (augment) and the synthetic ones as ``images/<label>/<n>.png``, and the index;
    return the synthetic images for the checks."""
    output = recipe.output
    counts = train.counts()
    base_seed = output.sample_seed if output.sample_seed is not None else derive_seed(recipe.seed, "sample")
    records: list[dict[str, Any]] = []
    made: list[np.ndarray] = []
    made_labels: list[np.ndarray] = []
    for label, name in enumerate(train.classes):
        class_folder = folder / IMAGES_FOLDER / name
        class_folder.mkdir(parents=True)
        number = 0
        if output.real_rows_included:
            for pixels in train.pixels[train.labels == label]:
                write_png(class_folder / f"{number}.png", pixels)
                records.append({"file": f"{IMAGES_FOLDER}/{name}/{number}.png", "label": name, "is_synthetic": False})
                number += 1
        wanted = output.per_class if output.per_class is not None else counts[name]
        for batch, start in enumerate(range(0, wanted, output.batch_size)):
            labels = np.full(min(output.batch_size, wanted - start), label, dtype=np.int64)
            sampled = generator.sample(labels, seed=derive_seed(base_seed, label, batch), **output.sampling)
            for pixels in sampled:
                write_png(class_folder / f"{number}.png", pixels)
                records.append({"file": f"{IMAGES_FOLDER}/{name}/{number}.png", "label": name, "is_synthetic": True})
                number += 1
            made.append(sampled)
            made_labels.append(labels)
    index = pl.DataFrame(records, schema={"file": pl.String, "label": pl.String, "is_synthetic": pl.Boolean})
    sink = open_writer(folder / f"index.{FORMAT_EXTENSIONS.get(output.format, output.format)}", output.format, pm=pm)
    try:
        sink.write(index)
    finally:
        sink.close()
    height, width, channels = train.shape
    pixels = np.concatenate(made) if made else np.zeros((0, height, width, channels), dtype=np.uint8)
    labels = np.concatenate(made_labels) if made_labels else np.zeros(0, dtype=np.int64)
    synthetic = ImageSet(pixels, labels, train.classes, [r["file"] for r in records if r["is_synthetic"]])
    real = int((~index["is_synthetic"]).sum())
    log(f"sampled {len(synthetic):,} synthetic images" + (f" + {real:,} real" if real else ""))
    return synthetic, {"real": real, "synthetic": len(synthetic)}


def folder_sha256(folder: Path) -> str:
    """One hash of a folder's files: their relative paths and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _describe(info: RunInfo, recipe: Recipe, generator: Any, result: RunResult,
              versions: dict[str, str]) -> dict[str, Any]:
    assert recipe.source.images is not None
    return {"run_id": info.id, "recipe": recipe.name or Path(recipe.file).stem, "recipe_file": recipe.file,
            "mode": recipe.output.mode, "generator": generator.name, "params": generator.params.model_dump(mode="json"),
            "sampling": recipe.output.sampling, "seed": recipe.seed,
            "source": str(recipe.resolve(recipe.source.images)),
            "rows": result.rows, "timings": result.timings, "privacy_turned_off": result.privacy_off,
            "started_at": info.started_at, "versions": versions, "machine": machine(), "threads": result.threads,
            "device": str(getattr(generator, "device_", "cpu"))}


def _manifest(info: RunInfo, recipe: Recipe, generator: Any, result: RunResult,
              versions: dict[str, str]) -> dict[str, Any]:
    assert recipe.source.images is not None
    source = recipe.resolve(recipe.source.images)
    extension = FORMAT_EXTENSIONS.get(recipe.output.format, recipe.output.format)
    return {
        "run_id": info.id, "recipe_file": recipe.file, "recipe_sha256": recipe.canonical_hash(),
        "recipe": recipe.model_dump(mode="json"), "holdout": {"fraction": recipe.holdout.fraction,
                                                              "images": result.rows.get("holdout", 0)},
        "source": str(source), "source_sha256": folder_sha256(source), "images": f"{IMAGES_FOLDER}/",
        "index": f"index.{extension}", "seed": recipe.seed, "generator": generator.name, "rows": result.rows,
        "timings_seconds": {k: round(v, 4) for k, v in result.timings.items()},
        "checks": [{"name": c.name, "score": c.score, "passed": c.passed} for c in result.checks],
        "privacy_turned_off": result.privacy_off, "threads": result.threads, "versions": versions,
        "started_at": info.started_at, "finished_at": _now(),
    }


__all__ = ["load_images", "run_images", "split_images", "validate_images"]

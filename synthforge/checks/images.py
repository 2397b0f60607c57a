"""Checks of a run that learned labelled images: fidelity and usefulness in a feature space, and near-copies.

Each is a :class:`Check` with ``images = True``: a recipe names and gates it like any check, and
:func:`run_image_checks` runs the defaults and the mandatory near-copy gate. The feature space is the
penultimate layer of a small CNN the checks train on the run's training images
(:mod:`synthforge.checks.image_features`), once per run; the report says which.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from synthforge.checks.base import Check, CheckResult, Gate
from synthforge.data.images import ImageSet
from synthforge.generator import GeneratorParams
from synthforge.hookspecs import hookimpl
from synthforge.seeds import derive_seed


class FeatureParams(GeneratorParams):
    epochs: int = Field(30, ge=1, le=10_000, description="Epochs of the check's CNN (the feature network, and the "
                                                          "one trained on synthetic images).")


@dataclass
class ImageCheckData:
    """What the image checks look at, with the feature network trained once and shared between them."""

    train: ImageSet
    holdout: ImageSet | None
    synthetic: ImageSet
    seed: int = 0
    device: str = "cpu"
    _networks: dict[int, Any] = field(default_factory=dict)

    def feature_network(self, epochs: int) -> Any:
        from synthforge.checks.image_features import train_classifier

        if epochs not in self._networks:
            self._networks[epochs] = train_classifier(
                self.train.pixels, self.train.labels, len(self.train.classes), epochs=epochs,
                seed=derive_seed(self.seed, "checks", "features"), device=self.device)
        return self._networks[epochs]

    @property
    def real(self) -> ImageSet:
        """The real images the synthetic ones are compared with: the holdout (unseen by the feature network and
        the generator), else the training images."""
        return self.holdout if self.holdout is not None and len(self.holdout) else self.train


class ImageCheck(Check):
    images: ClassVar[bool] = True

    def measure_images(self, data: ImageCheckData) -> tuple[float | None, str, dict[str, Any]]:
        raise NotImplementedError

    def run_images(self, data: ImageCheckData, gate: Gate | None = None) -> CheckResult:
        started = time.perf_counter()
        if len(data.synthetic) == 0:
            return CheckResult(self.name, self.kind, None, None, None, (gate and gate.on_fail) or self.default_on_fail,
                               True, "skipped: no synthetic images", {"skipped": True})
        score, summary, details = self.measure_images(data)
        return self.judge(score, summary, details, gate, time.perf_counter() - started)

    def measure(self, *args: Any) -> tuple[float | None, str, dict[str, Any]]:
        raise TypeError(f"{self.name} checks images; it runs in a run whose source is `images:`.")


class ImageFrechet(ImageCheck):
    name = "image_frechet"
    kind = "quality"
    description = ("Fréchet distance between synthetic and real images in the check's CNN feature space (lower is "
                   "better), beside the training images' own distance to the same real images.")
    Params = FeatureParams
    default = True
    default_on_fail = "warn"
    #: the gate: this many times the real training images' own distance to the holdout
    reference_factor: ClassVar[float] = 4.0

    def measure_images(self, data: ImageCheckData) -> tuple[float | None, str, dict[str, Any]]:
        network = data.feature_network(self.params.epochs)
        real = network.features(data.real.pixels)
        score = frechet_distance(network.features(data.synthetic.pixels), real)
        details: dict[str, Any] = {"feature_space": _feature_space(), "compared_with": _compared(data)}
        summary = f"Fréchet distance {score:.3g}"
        if data.real is not data.train:
            reference = frechet_distance(network.features(data.train.pixels), real)
            details["reference"] = reference
            summary += f" (the real training images: {reference:.3g})"
        return score, summary, details

    def gate_from_data(self, details: dict[str, Any]) -> tuple[float | None, float | None]:
        reference = details.get("reference")
        return None, None if reference is None else self.reference_factor * max(reference, 1e-6)


class ImagePrecisionRecall(ImageCheck):
    name = "image_precision_recall"
    kind = "quality"
    description = ("Precision (synthetic images inside the real images' k-NN manifold) and recall (real images "
                   "inside the synthetic ones'), Kynkäänniemi et al. 2019, in the CNN feature space; the score is "
                   "their harmonic mean.")

    class Params(FeatureParams):
        k: int = Field(3, ge=1, le=100, description="Neighbours that set each image's manifold radius.")

    default = True
    default_on_fail = "warn"

    def measure_images(self, data: ImageCheckData) -> tuple[float | None, str, dict[str, Any]]:
        network = data.feature_network(self.params.epochs)
        real = network.features(data.real.pixels)
        synthetic = network.features(data.synthetic.pixels)
        precision = _inside_manifold(synthetic, real, self.params.k)
        recall = _inside_manifold(real, synthetic, self.params.k)
        score = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        return score, f"precision {precision:.3f}, recall {recall:.3f}", {
            "precision": precision, "recall": recall, "k": self.params.k, "feature_space": _feature_space(),
            "compared_with": _compared(data)}


class ImageTSTR(ImageCheck):
    name = "image_tstr"
    kind = "quality"
    description = ("Train on synthetic, test on real: accuracy on the real (holdout) images of the check's CNN "
                   "trained on the synthetic images alone, beside the same CNN trained on the real training images; "
                   "the gate is halfway from chance (one over the classes) to the latter.")
    Params = FeatureParams
    default = True
    default_on_fail = "warn"

    def measure_images(self, data: ImageCheckData) -> tuple[float | None, str, dict[str, Any]]:
        from synthforge.checks.image_features import train_classifier

        real = data.real
        on_synthetic = train_classifier(data.synthetic.pixels, data.synthetic.labels, len(real.classes),
                                        epochs=self.params.epochs, seed=derive_seed(data.seed, "checks", "tstr"),
                                        device=data.device)
        score = on_synthetic.accuracy(real.pixels, real.labels)
        reference = data.feature_network(self.params.epochs).accuracy(real.pixels, real.labels)
        return score, f"accuracy {score:.3f} trained on synthetic, {reference:.3f} trained on real", {
            "trained_on_real": reference, "chance": 1 / len(real.classes), "tested_on": _compared(data)}

    def gate_from_data(self, details: dict[str, Any]) -> tuple[float | None, float | None]:
        """Halfway from chance to the accuracy of the same CNN trained on the real images."""
        chance = details["chance"]
        return chance + max(details["trained_on_real"] - chance, 0.0) / 2, None


class ImageAugmentationLift(ImageCheck):
    name = "image_augmentation_lift"
    kind = "quality"
    description = ("Augmentation lift: accuracy on the real (holdout) images of the check's CNN trained on the real "
                   "training images plus the synthetic ones, minus that of the same CNN trained on the real ones "
                   "alone (in points of accuracy, 0.01 = one point); warns below -0.02 (the synthetic images hurt).")
    Params = FeatureParams
    default = True
    needs_holdout = True
    default_min = -0.02
    default_on_fail = "warn"

    def measure_images(self, data: ImageCheckData) -> tuple[float | None, str, dict[str, Any]]:
        from synthforge.checks.image_features import train_classifier

        if data.holdout is None or not len(data.holdout):
            return None, "skipped: needs held-out real images", {"skipped": True}
        real = data.feature_network(self.params.epochs).accuracy(data.holdout.pixels, data.holdout.labels)
        both = train_classifier(np.concatenate([data.train.pixels, data.synthetic.pixels]),
                                np.concatenate([data.train.labels, data.synthetic.labels]), len(data.train.classes),
                                epochs=self.params.epochs, seed=derive_seed(data.seed, "checks", "lift"),
                                device=data.device)
        augmented = both.accuracy(data.holdout.pixels, data.holdout.labels)
        return augmented - real, f"accuracy {augmented:.3f} with the synthetic images, {real:.3f} without", {
            "augmented": augmented, "real_only": real, "training_images": len(data.train),
            "synthetic_images": len(data.synthetic), "tested_on": _compared(data)}


class ImageNearCopies(ImageCheck):
    name = "image_near_copies"
    kind = "privacy"
    description = ("Synthetic images closer (RMS pixel distance) to their nearest training image than the holdout "
                   "images' `quantile` of their own distances: their share, gated at the holdout's share plus three "
                   "standard errors. A model that copies its training images fails.")

    class Params(GeneratorParams):
        quantile: float = Field(0.05, gt=0, lt=0.5, description="The real images' nearest-distance quantile under "
                                                                "which an image counts as a near-copy.")

    default = True
    mandatory = True

    def measure_images(self, data: ImageCheckData) -> tuple[float | None, str, dict[str, Any]]:
        train = _flat(data.train.pixels)
        synthetic = nearest_distances(_flat(data.synthetic.pixels), train)
        if data.holdout is not None and len(data.holdout):
            reference, against = nearest_distances(_flat(data.holdout.pixels), train), "holdout"
        else:  # no holdout: each training image against the others
            reference, against = nearest_distances(train, train, exclude_self=True), "training (leave one out)"
        threshold = float(np.quantile(reference, self.params.quantile))
        rate = float(np.mean(synthetic < threshold)) if threshold > 0 else float(np.mean(synthetic <= 0))
        reference_rate = float(np.mean(reference < threshold)) if threshold > 0 else float(np.mean(reference <= 0))
        return rate, (f"{round(rate * len(synthetic))} of {len(synthetic)} synthetic images are near-copies "
                      f"(closer than {threshold:.4f} to a training image; {against} images: {reference_rate:.1%})"), {
            "threshold": threshold, "reference_rate": reference_rate, "reference": against,
            "synthetic_images": len(synthetic), "exact_copies": int(np.sum(synthetic == 0)),
            "median_distance": float(np.median(synthetic)), "reference_median_distance": float(np.median(reference)),
            "distance": "root mean square pixel difference, pixels scaled to [0, 1]"}

    def gate_from_data(self, details: dict[str, Any]) -> tuple[float | None, float | None]:
        p, n = details["reference_rate"], max(details["synthetic_images"], 1)
        return None, p + 3 * float(np.sqrt(max(p, 1 / n) * (1 - p) / n))


IMAGE_CHECKS: tuple[type[ImageCheck], ...] = (ImageFrechet, ImagePrecisionRecall, ImageTSTR, ImageAugmentationLift,
                                              ImageNearCopies)


@hookimpl
def synthforge_checks() -> list[type[Check]]:
    return list(IMAGE_CHECKS)


def run_image_checks(specs: list[Any] | None, checks: dict[str, type[Check]],
                     data: ImageCheckData) -> list[CheckResult]:
    """The recipe's image checks (``None``: the defaults) and the mandatory ones it does not turn off."""
    image_checks = {name: cls for name, cls in checks.items() if getattr(cls, "images", False)}
    if specs is None:
        chosen = [(cls, {}, Gate()) for cls in image_checks.values() if cls.default or cls.mandatory]
    else:
        chosen = [(image_checks[s.name], dict(s.params), Gate(min=s.min, max=s.max, on_fail=s.on_fail))
                  for s in specs if s.enabled and s.name in image_checks]
        named = {s.name for s in specs}
        chosen += [(cls, {}, Gate()) for name, cls in image_checks.items() if cls.mandatory and name not in named]
    return [cls(params).run_images(data, gate) for cls, params, gate in chosen]  # type: ignore[attr-defined]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½), the Fréchet distance between Gaussians fitted to ``a`` and ``b``."""
    from scipy import linalg

    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False)) if len(a) > 1 else np.zeros((a.shape[1],) * 2)
    cov_b = np.atleast_2d(np.cov(b, rowvar=False)) if len(b) > 1 else np.zeros((b.shape[1],) * 2)
    with warnings.catch_warnings():  # fewer images than features make Σ singular: handled below, as pytorch-fid does
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.all(np.isfinite(root)):
            offset = np.eye(len(cov_a)) * 1e-6
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    return float(max(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root), 0.0))


def nearest_distances(points: np.ndarray, reference: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
    """Each row of ``points``' Euclidean distance to its nearest row of ``reference`` (RMS when the rows are scaled
    by the square root of their width, as :func:`_flat` does)."""
    from scipy.spatial.distance import cdist

    out = np.empty(len(points))
    for start in range(0, len(points), 1024):
        distances = cdist(points[start:start + 1024], reference)
        if exclude_self:
            distances[np.arange(len(distances)), np.arange(start, start + len(distances))] = np.inf
        out[start:start + 1024] = distances.min(axis=1)
    return out


def _inside_manifold(points: np.ndarray, manifold: np.ndarray, k: int) -> float:
    """Share of ``points`` within the k-th-neighbour radius of some row of ``manifold``."""
    from scipy.spatial.distance import cdist

    if len(manifold) < 2 or len(points) == 0:
        return 0.0
    k = min(k, len(manifold) - 1)
    within = np.sort(cdist(manifold, manifold), axis=1)[:, k]  # column 0 is each row itself
    return float(np.mean((cdist(points, manifold) <= within[None, :]).any(axis=1)))


def _flat(pixels: np.ndarray) -> np.ndarray:
    """Images as rows scaled so that the Euclidean distance is the RMS pixel difference in [0, 1]."""
    rows = pixels.reshape(len(pixels), -1).astype(np.float64) / 255.0
    return rows / np.sqrt(rows.shape[1])


def _feature_space() -> str:
    from synthforge.checks.image_features import DESCRIPTION

    return DESCRIPTION


def _compared(data: ImageCheckData) -> str:
    return (f"the {len(data.real)} holdout images" if data.real is not data.train
            else f"the {len(data.train)} training images (no holdout)")

"""A real labelled image set for tests and the shipped recipe: scikit-learn's 8×8 handwritten digits.

``load_digits`` reads the copy inside scikit-learn's wheel (``sklearn/datasets/data/digits.csv.gz``; no
download): 1,797 images of 8×8 pixels with 17 grey levels, the test part of UCI's "Optical Recognition of
Handwritten Digits" (Alpaydin & Kaynak, 1998; CC BY 4.0). Written as an ImageFolder of grey PNGs, levels
0–16 scaled to 0–255. ``python -m synthforge.testing_images FOLDER`` writes ``recipes/data/digits``.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


if __name__ == "__main__":
    write_digits(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("recipes/data/digits"))

"""Padding images to a size a network's down-sampling divides, and the size itself."""

from __future__ import annotations

import math

import numpy as np


def padded_size(size: tuple[int, int], levels: int) -> tuple[int, int]:
    """The smallest size ≥ ``size`` that ``levels - 1`` halvings divide."""
    multiple = 2 ** (levels - 1)
    return tuple(math.ceil(side / multiple) * multiple for side in size)  # type: ignore[return-value]


def pad(images: np.ndarray, padded: tuple[int, int]) -> np.ndarray:
    """Pad ``(n, c, h, w)`` images in [-1, 1] with black (−1) on the bottom and right to ``padded``."""
    height, width = images.shape[2:]
    if (height, width) == tuple(padded):
        return images
    return np.pad(images, ((0, 0), (0, 0), (0, padded[0] - height), (0, padded[1] - width)), constant_values=-1.0)

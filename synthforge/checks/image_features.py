"""The image checks' feature space: a small CNN classifier trained by the check on the run's training images.

Pretrained feature networks (Inception for FID) cannot be downloaded here, and they were trained on
photographs of another size anyway. So the checks train this network on the run's own training images
and labels, seeded from the run's seed; its penultimate layer (``FEATURES`` units) is the feature space
of the Fréchet distance and of precision/recall, and the same architecture, trained on the synthetic
images, gives the train-on-synthetic/test-on-real accuracy. torch is imported here only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthforge.image_generator import to_unit

FEATURES = 128
DESCRIPTION = (f"a CNN (3×3 convolutions 32-64-64, average-pooled to 4×4, dense {FEATURES}) trained by the check "
               f"on the run's training images; its {FEATURES}-unit penultimate layer")


def train_classifier(pixels: np.ndarray, labels: np.ndarray, classes: int, *, epochs: int, seed: int,
                     device: str = "cpu", batch_size: int = 64, learning_rate: float = 2e-3) -> Classifier:
    """A :class:`Classifier` fitted on ``uint8 (n, h, w, c)`` images, seeded by ``seed``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    channels = pixels.shape[3]
    network = nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(64 * 16, FEATURES), nn.ReLU(), nn.Linear(FEATURES, classes)).to(device)
    data = torch.from_numpy(to_unit(pixels)).to(device)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    network.train()
    for _ in range(epochs):
        for index in np.array_split(rng.permutation(len(data)), max(len(data) // batch_size, 1)):
            chosen = torch.from_numpy(index).to(device)
            loss = nn.functional.cross_entropy(network(data[chosen]), targets[chosen])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    network.train(False)  # inference mode: normalisation and dropout as at prediction
    return Classifier(network, device)


class Classifier:
    """A trained CNN: its class predictions and its penultimate layer's features."""

    def __init__(self, network: Any, device: str) -> None:
        self.network, self.device = network, device

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(pixels, self.network[:-1])

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(pixels, self.network).argmax(axis=1)

    def accuracy(self, pixels: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(pixels) == labels)) if len(labels) else float("nan")

    def _run(self, pixels: np.ndarray, network: Any) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(pixels), 512):
                batch = torch.from_numpy(to_unit(pixels[start:start + 512])).to(self.device)
                out.append(network(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURES), dtype=np.float32)

"""The torch modules of :mod:`synthforge_images.vae` (imported only when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


class ConditionalConvVAE(nn.Module):
    """Encoder: image and label maps → two stride-2 convolutions → (mean, log variance); decoder: code and label
    → dense → two stride-2 transposed convolutions → pixel logits."""

    def __init__(self, channels: int, size: tuple[int, int], classes: int, width: int, latent: int) -> None:
        super().__init__()
        self.classes, self.size = classes, size
        self.cells = (size[0] // 4, size[1] // 4)
        flat = 2 * width * self.cells[0] * self.cells[1]
        self.encoder = nn.Sequential(
            nn.Conv2d(channels + classes, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.to_latent = nn.Linear(flat, 2 * latent)
        self.from_latent = nn.Sequential(nn.Linear(latent + classes, flat), nn.LeakyReLU(0.2))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))
        self.width = width

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = nn.functional.one_hot(labels, self.classes).float()[:, :, None, None].expand(-1, -1, *self.size)
        mean, log_var = self.to_latent(self.encoder(torch.cat([images, maps], dim=1))).chunk(2, dim=1)
        return mean, log_var.clamp(-20, 10)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.from_latent(torch.cat([z, nn.functional.one_hot(labels, self.classes).float()], dim=1))
        return self.decoder(hidden.view(len(z), 2 * self.width, *self.cells))

"""A conditional convolutional VAE for labelled images (Kingma & Welling, 2014; Sohn et al., 2015).

The encoder sees the image and its label, the decoder a latent code and the label, so sampling a class
is decoding ``z ~ N(0, temperature² I)`` beside that label. Pixels are modelled as Bernoulli
probabilities (binary cross-entropy on pixels scaled to [0, 1]), which suits strokes and line art; a
sample is the decoder's mean image. Two stride-2 convolutions each way: images are padded (with black)
to a multiple of 4 and cropped back.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from synthforge.generator import FitContext, GeneratorParams
from synthforge_images.network import NetworkImageGenerator
from synthforge_images.shapes import pad, padded_size


class ImageVAEParams(GeneratorParams):
    epochs: int = Field(100, ge=1, le=100_000, description="Passes over the training images.")
    batch_size: int = Field(64, ge=1, le=100_000, description="Images per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="Adam's step size.")
    latent_dim: int = Field(16, ge=1, le=1024, description="Size of the latent code.")
    channels: int = Field(32, ge=4, le=512, description="Feature maps of the first convolution (twice that in "
                                                         "the second).")
    beta: float = Field(1.0, gt=0, le=100, description="Weight of the KL term (β-VAE).")
    max_training_time: float | None = Field(None, gt=0, description="Seconds of training at most (stops after the "
                                                                    "epoch that passes them).")


class ImageVAESampleParams(GeneratorParams):
    temperature: float = Field(1.0, ge=0, le=10, description="Scale of the latent noise (below 1: typical images, "
                                                             "less variety).")
    batch_size: int = Field(1024, ge=1, le=100_000, description="Images decoded at once.")


class ImageVAE(NetworkImageGenerator):
    """Conditional convolutional VAE with Bernoulli pixels."""

    name: ClassVar[str] = "image_vae"
    description: ClassVar[str] = "Conditional convolutional VAE (two stride-2 convolutions each way, Bernoulli pixels)."
    Params = ImageVAEParams
    SampleParams = ImageVAESampleParams

    def _fit(self, images: np.ndarray, labels: np.ndarray, context: FitContext) -> None:
        import torch
        from torch.nn import functional

        from synthforge.nn.training import resolve_device

        params: ImageVAEParams = self.params  # type: ignore[assignment]
        self.device_ = resolve_device(context.device)
        self.padded_ = padded_size(self.shape_[:2], 3)
        self.network_ = self._build().to(self.device_)
        data = (torch.from_numpy(pad(images, self.padded_)).to(self.device_) + 1) / 2  # Bernoulli targets in [0, 1]
        targets = torch.from_numpy(labels).to(self.device_)
        optimiser = torch.optim.Adam(self.network_.parameters(), lr=params.learning_rate)
        order = context.rng("batches")
        noise = context.torch_generator("noise", device=self.device_)
        steps = math.ceil(len(data) / params.batch_size)
        started = time.perf_counter()
        self.network_.train()
        for epoch in range(1, params.epochs + 1):
            total = 0.0
            for index in np.array_split(order.permutation(len(data)), steps):
                chosen = torch.from_numpy(index).to(self.device_)
                batch, label = data[chosen], targets[chosen]
                mean, log_var = self.network_.encode(batch, label)
                z = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=noise, device=self.device_)
                logits = self.network_.decode(z, label)
                reconstruction = functional.binary_cross_entropy_with_logits(logits, batch, reduction="sum")
                kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
                loss = (reconstruction + params.beta * kl) / len(batch)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            if self._epoch_ended(epoch, total / len(data), context, started):
                break
        self.network_.train(False)

    def _sample(self, labels: np.ndarray, seed: int) -> np.ndarray:
        import torch

        chosen: ImageVAESampleParams = self.sample_params  # type: ignore[assignment]
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        out = []
        with torch.inference_mode():
            for start in range(0, len(labels), chosen.batch_size):
                label = torch.from_numpy(labels[start:start + chosen.batch_size]).to(self.device_)
                z = torch.randn((len(label), self.params.latent_dim), generator=generator, device=self.device_)
                images = torch.sigmoid(self.network_.decode(z * chosen.temperature, label)) * 2 - 1
                out.append(images[:, :, :self.shape_[0], :self.shape_[1]].float().cpu().numpy())
        return np.concatenate(out)

    def _build(self) -> Any:
        from synthforge_images.vae_network import ConditionalConvVAE

        params: ImageVAEParams = self.params  # type: ignore[assignment]
        return ConditionalConvVAE(self.shape_[2], tuple(self.padded_), len(self.classes_), params.channels,
                                  params.latent_dim)

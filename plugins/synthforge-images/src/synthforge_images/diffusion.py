"""A class-conditional image diffusion model: diffusers' ``UNet2DModel`` with a class embedding.

Training is DDPM's (Ho et al., 2020): predict the noise added at a uniformly drawn timestep. The
label is replaced by a "no class" token for a share of the images (``label_dropout``), so one
network learns both the conditional and the unconditional noise, and sampling mixes them with
classifier-free guidance (Ho & Salimans, 2022): ``ε = ε(x, ∅) + w · (ε(x, y) − ε(x, ∅))``. The
sampler (DDIM, DDPM or DPM-Solver++), its steps and ``w`` are sampling params, chosen per run
without refitting. Images are padded (with black) to a size the U-Net's down-sampling divides and
cropped back after sampling.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from synthforge.generator import FitContext, GeneratorParams
from synthforge_images.network import NetworkImageGenerator
from synthforge_images.shapes import pad, padded_size


class ImageDiffusionParams(GeneratorParams):
    epochs: int = Field(200, ge=1, le=100_000, description="Passes over the training images.")
    batch_size: int = Field(64, ge=1, le=100_000, description="Images per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, lt=1, description="AdamW's step size (cosine-decayed to a tenth).")
    channels: list[int] = Field([32, 64], min_length=1, max_length=5,
                                description="Feature maps of each U-Net level; each level after the first halves "
                                            "the image size.")
    layers_per_block: int = Field(1, ge=1, le=4, description="ResNet layers per U-Net level.")
    train_timesteps: int = Field(1000, ge=10, le=10_000, description="Steps of the forward (noising) process.")
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = Field(
        "squaredcos_cap_v2", description="The noise schedule (squaredcos_cap_v2: the cosine schedule, better on "
                                         "small images).")
    label_dropout: float = Field(0.1, ge=0, lt=1, description="Share of images trained without their label, "
                                                              "for classifier-free guidance.")
    max_training_time: float | None = Field(None, gt=0, description="Seconds of training at most (stops after the "
                                                                    "epoch that passes them).")

    @field_validator("channels")
    @classmethod
    def _groups_divide(cls, value: list[int]) -> list[int]:
        if any(c % 8 for c in value):
            raise ValueError(f"each of channels is a multiple of 8 (group normalisation in groups of 8); got {value}")
        return value


class ImageDiffusionSampleParams(GeneratorParams):
    scheduler: Literal["ddim", "ddpm", "dpm_solver"] = Field(
        "ddim", description="The sampler: DDIM (deterministic), DDPM (the training chain) or DPM-Solver++.")
    steps: int = Field(50, ge=1, le=10_000, description="Denoising steps (DDPM: at most train_timesteps).")
    guidance: float = Field(2.0, ge=0, le=50, description="Classifier-free guidance weight w (1: the conditional "
                                                          "model alone; 0: ignore the label).")
    batch_size: int = Field(256, ge=1, le=100_000, description="Images denoised at once.")


class ImageDiffusion(NetworkImageGenerator):
    """Class-conditional DDPM on a diffusers UNet2DModel, sampled with DDIM/DDPM/DPM-Solver and guidance."""

    name: ClassVar[str] = "image_diffusion"
    description: ClassVar[str] = ("Class-conditional diffusion (diffusers UNet2DModel, DDPM training, DDIM/DPM-Solver "
                                  "sampling, classifier-free guidance).")
    Params = ImageDiffusionParams
    SampleParams = ImageDiffusionSampleParams

    def _fit(self, images: np.ndarray, labels: np.ndarray, context: FitContext) -> None:
        import torch
        from torch.nn import functional

        from synthforge.nn.training import resolve_device

        params: ImageDiffusionParams = self.params  # type: ignore[assignment]
        self.device_ = resolve_device(context.device)
        self.padded_ = padded_size(self.shape_[:2], len(params.channels))
        self.network_ = self._build().to(self.device_)
        scheduler = self._training_scheduler()
        data = torch.from_numpy(pad(images, self.padded_)).to(self.device_)
        targets = torch.from_numpy(labels).to(self.device_)
        null = len(self.classes_)
        optimiser = torch.optim.AdamW(self.network_.parameters(), lr=params.learning_rate)
        steps_per_epoch = math.ceil(len(data) / params.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=params.epochs * steps_per_epoch,
                                                              eta_min=params.learning_rate / 10)
        order = context.rng("batches")
        noise_generator = context.torch_generator("noise", device=self.device_)
        alphas = scheduler.alphas_cumprod.to(self.device_)
        started = time.perf_counter()
        self.network_.train()
        for epoch in range(1, params.epochs + 1):
            total = 0.0
            for index in np.array_split(order.permutation(len(data)), steps_per_epoch):
                batch = data[torch.from_numpy(index).to(self.device_)]
                classes = targets[torch.from_numpy(index).to(self.device_)].clone()
                dropped = torch.rand(len(batch), generator=noise_generator, device=self.device_) < params.label_dropout
                classes[dropped] = null
                noise = torch.randn(batch.shape, generator=noise_generator, device=self.device_)
                timesteps = torch.randint(0, params.train_timesteps, (len(batch),), generator=noise_generator,
                                          device=self.device_)
                alpha = alphas[timesteps].view(-1, 1, 1, 1)
                noisy = alpha.sqrt() * batch + (1 - alpha).sqrt() * noise
                predicted = self.network_(noisy, timesteps, class_labels=classes).sample
                loss = functional.mse_loss(predicted, noise)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                total += float(loss.detach()) * len(batch)
            if self._epoch_ended(epoch, total / len(data), context, started):
                break
        self.network_.train(False)

    def _sample(self, labels: np.ndarray, seed: int) -> np.ndarray:
        import torch

        chosen: ImageDiffusionSampleParams = self.sample_params  # type: ignore[assignment]
        device = self.device_
        scheduler = self._sampling_scheduler(chosen.scheduler)
        scheduler.set_timesteps(min(chosen.steps, self.params.train_timesteps), device=device)
        generator = torch.Generator(device=device).manual_seed(seed)
        channels = self.shape_[2]
        null = len(self.classes_)
        out = []
        with torch.inference_mode():
            for start in range(0, len(labels), chosen.batch_size):
                wanted = torch.from_numpy(labels[start:start + chosen.batch_size]).to(device)
                n = len(wanted)
                x = torch.randn((n, channels, *self.padded_), generator=generator, device=device)
                x = x * scheduler.init_noise_sigma
                both = torch.cat([wanted, torch.full_like(wanted, null)])
                for t in scheduler.timesteps:
                    model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
                    conditional, unconditional = self.network_(model_in, t, class_labels=both).sample.chunk(2)
                    guided = unconditional + chosen.guidance * (conditional - unconditional)
                    x = scheduler.step(guided, t, x, generator=generator).prev_sample
                out.append(x[:, :, :self.shape_[0], :self.shape_[1]].float().cpu().numpy())
        return np.concatenate(out)

    def _build(self) -> Any:
        from diffusers import UNet2DModel

        params: ImageDiffusionParams = self.params  # type: ignore[assignment]
        levels = len(params.channels)
        return UNet2DModel(
            sample_size=tuple(self.padded_), in_channels=self.shape_[2], out_channels=self.shape_[2],
            block_out_channels=tuple(params.channels), layers_per_block=params.layers_per_block,
            down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=8, num_class_embeds=len(self.classes_) + 1)  # the last class: "no label" (guidance)

    def _training_scheduler(self) -> Any:
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=self.params.train_timesteps, beta_schedule=self.params.beta_schedule)

    def _sampling_scheduler(self, name: str) -> Any:
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        config = self._training_scheduler().config
        if name == "ddim":
            return DDIMScheduler.from_config(config)
        if name == "dpm_solver":
            return DPMSolverMultistepScheduler.from_config(config)
        return self._training_scheduler()


"""A tabular conditional GAN in the spirit of CTGAN (Xu et al., 2019).

Rows arrive encoded by SynthForge's shared encoder: numbers mode-specific
normalised (a scalar relative to one mode of a Gaussian mixture, plus the mode as a
one-hot) or quantile normalised; categories and null indicators one-hot.

- **Generator** ``G(z, c)``: residual layers (each one's output concatenated to its
  input, with batch norm) and one linear output; numbers leave through ``tanh``
  (mode-specific scalars live in [-1, 1]) or as they are (quantile), every one-hot
  span through a Gumbel-softmax, so the critic sees near-discrete categories and
  gradients still flow.
- **Critic** ``D(x, c)``: an MLP with leaky ReLU and dropout over *packs* of
  ``pac`` rows (PacGAN), which lets it see a lack of diversity and so resists mode
  collapse; trained as a Wasserstein critic with a gradient penalty (WGAN-GP).
- **Conditions and training-by-sampling**: ``c`` holds, for every categorical
  column, its one-hot and a bit saying whether it is given. Each training row picks
  one categorical column at random and one of its categories with probability
  proportional to the log of its frequency — rare categories are asked for far more
  often than they occur — then a real row holding that category; the other columns
  of that row are given as well with probability ``condition_keep_rate``, and in
  ``unconditional_rate`` of rows nothing is given and the real row is any row. The
  critic judges each row together with its condition and the generator pays a
  cross-entropy for every given category it fails to produce, so one generator
  samples unconditionally and conditioned on any subset of categorical values —
  ``rebalance`` and ``conditions:`` — from what it learned, not by rejection.
- **Marginal calibration** (``calibrate``, :mod:`synthforge.nn.calibration`): a
  GAN's one-column marginals drift. After training, the generator's unconditional
  output on fresh noise is compared once with the training marginals: each
  categorical head gets a logit offset, each number a monotone map between
  generated and real quantiles; both are saved with the weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from synthforge import FitContext
from synthforge.data.encoder import Span
from synthforge.nn import CalibratedTorchGenerator, OneHotModelParams, Precision, PrecisionSampleParams

if TYPE_CHECKING:
    from synthforge.nn import History


class GANParams(OneHotModelParams):
    # Measured on Adult, 2 CPU cores: 150 epochs fit in 349 s and score 0.979 SDMetrics overall, TSTR AUC 0.894;
    # 30 epochs, 72 s, 0.951 and 0.823 (the conditional p(income | rest) is the slowest thing a GAN learns).
    # A GAN's losses do not say when to stop, so it has no early-stopping params: it trains for its epochs.
    # batch_size is a multiple of pac; learning_rate and weight_decay are Adam's, for generator and critic.
    defaults: ClassVar[dict[str, Any]] = {"epochs": 150, "batch_size": 500, "learning_rate": 2e-4, "weight_decay": 1e-6,
                "numeric_encoding": "quantile"}
    noise_dim: int = Field(128, ge=1, le=4096, description="Size of the generator's noise input.")
    generator_dim: int = Field(256, ge=8, le=8192, description="Width of each generator layer.")
    generator_layers: int = Field(2, ge=1, le=8, description="Residual layers in the generator.")
    critic_dim: int = Field(256, ge=8, le=8192, description="Width of each critic layer.")
    critic_layers: int = Field(2, ge=1, le=8, description="Hidden layers in the critic.")
    critic_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each critic layer.")
    critic_steps: int = Field(1, ge=1, le=20, description="Critic updates per generator update.")
    pac: int = Field(10, ge=1, le=100, description="Rows the critic judges together (PacGAN).")
    gradient_penalty: float = Field(10.0, ge=0, description="Weight of WGAN-GP's gradient penalty.")
    gumbel_temperature: float = Field(0.2, gt=0, le=10, description="Temperature of the Gumbel-softmax outputs.")
    log_frequency: bool = Field(True, description="Ask for categories by log frequency in training-by-sampling.")
    # bfloat16 autocast on an AVX512-BF16 CPU, Adult, 150 epochs: fit 235 s instead of 342 s, SDMetrics overall
    # 0.977 (0.979 in float32), TSTR AUC 0.892 (0.892-0.894).
    train_precision: Precision = Field(
        "auto", description="Arithmetic of both networks' matrix products in training on a CPU (autocast); auto: "
                            "bfloat16 where the CPU has it natively. GPU training stays float32.")

    def batch_multiple(self) -> int:
        return self.pac

    @model_validator(mode="after")
    def _batch_holds_whole_packs(self) -> GANParams:
        if self.batch_size % self.pac:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of pac ({self.pac})")
        return self


class ConditionalGAN(CalibratedTorchGenerator):
    name = "gan"
    description = ("A CTGAN-style conditional WGAN-GP: training-by-sampling, PacGAN critic, Gumbel-softmax "
                   "categories, native conditions.")
    Params = GANParams
    SampleParams = PrecisionSampleParams
    supports_conditions = True
    weights: ClassVar[dict[str, str]] = {"generator_net_": "generator."}  # the critic is for training only
    params: GANParams

    # --- the layout of the data and of the condition vector ------------------------------

    def _category_sampler(self, data: Any) -> None:
        """Tables for drawing, per condition span, a category (by log frequency) and then a real row holding it."""
        import torch

        spans = self.conditions_.spans
        categories = [data[:, span.start : span.stop].argmax(dim=1) for span in spans]
        widest = max((span.width for span in spans), default=1)
        probabilities = torch.zeros(len(spans), widest, device=data.device)
        offsets, counts, groups = [0], [], []
        for index, (span, category) in enumerate(zip(spans, categories, strict=True)):
            count = torch.bincount(category, minlength=span.width).float()
            weight = torch.log1p(count) if self.params.log_frequency else count
            probabilities[index, : span.width] = weight / weight.sum()
            counts.append(count)
            offsets.append(offsets[-1] + span.width)
            groups.append(torch.argsort(category, stable=True))
        self.category_probabilities_ = probabilities
        self.span_offset_ = torch.tensor(offsets[:-1], device=data.device, dtype=torch.long)
        count = torch.cat(counts) if counts else torch.zeros(0, device=data.device)
        self.category_count_ = count
        self.category_first_ = torch.cat([torch.zeros(1, device=data.device), count.cumsum(0)[:-1]]).long()
        # Every span's rows sorted by category, spans one after another; each span's counts add up to the rows,
        # so the running count over all spans' categories is where each category's rows begin.
        self.rows_by_category_ = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.long)

    def _training_rows(self, batch: Any, generator: Any) -> tuple[Any, Any, Any]:
        """Real rows and their condition vector for one step, by training-by-sampling; plus the given mask."""
        import torch

        rows, spans, device = len(batch), len(self.conditions_.spans), batch.device
        if not spans:
            return batch, batch[:, :0], torch.zeros(rows, 0, device=device)
        span = torch.randint(spans, (rows,), generator=generator, device=device)
        category = torch.multinomial(self.category_probabilities_[span], 1, generator=generator).squeeze(1)
        flat = self.span_offset_[span] + category
        pick = (torch.rand(rows, generator=generator, device=device) * self.category_count_[flat]).long()
        real = self.data_[self.rows_by_category_[self.category_first_[flat] + pick]]
        unconditional = torch.rand(rows, 1, generator=generator, device=device) < self.params.unconditional_rate
        real = torch.where(unconditional, batch, real)
        given = torch.rand(rows, spans, generator=generator, device=device) < self.params.condition_keep_rate
        given = (given | torch.nn.functional.one_hot(span, spans).bool()) & ~unconditional
        return real, self.conditions_.vector(real, given.float()), given.float()

    # --- the networks --------------------------------------------------------------------

    def _build(self) -> None:
        from torch import nn

        from synthforge.nn import CategoricalConditions

        self.conditions_ = CategoricalConditions(self.encoder_, self.schema_)
        self.bounded_ = self.params.numeric_encoding == "mode_specific"

        class Residual(nn.Module):
            def __init__(self, inputs: int, outputs: int) -> None:
                super().__init__()
                self.linear, self.norm, self.activation = nn.Linear(inputs, outputs), nn.BatchNorm1d(outputs), nn.ReLU()

            def forward(self, x: Any) -> Any:
                import torch

                return torch.cat([self.activation(self.norm(self.linear(x))), x], dim=1)

        inputs = self.params.noise_dim + self.conditions_.width
        layers: list[nn.Module] = []
        for _ in range(self.params.generator_layers):
            layers.append(Residual(inputs, self.params.generator_dim))
            inputs += self.params.generator_dim
        self.generator_net_ = nn.Sequential(*layers, nn.Linear(inputs, self.encoder_.width))

    def _build_critic(self, width: int) -> None:
        from torch import nn

        inputs = self.params.pac * (width + self.conditions_.width)
        critic: list[nn.Module] = []
        for _ in range(self.params.critic_layers):
            critic += [nn.Linear(inputs, self.params.critic_dim), nn.LeakyReLU(0.2),
                       nn.Dropout(self.params.critic_dropout)]
            inputs = self.params.critic_dim
        self.critic_net_ = nn.Sequential(*critic, nn.Linear(inputs, 1))

    def _activate(self, raw: Any, generator: Any) -> Any:
        """Generator output to the data space: tanh or identity for numbers, Gumbel-softmax for one-hots."""
        import torch

        parts = []
        for span in self.encoder_.spans_:
            block = raw[:, span.start : span.stop]
            if span.kind == "numeric":
                parts.append(torch.tanh(block) if self.bounded_ else block)
            else:
                uniform = torch.rand(block.shape, generator=generator, device=block.device).clamp_(1e-10, 1 - 1e-7)
                gumbel = -torch.log(-torch.log(uniform))
                parts.append(torch.softmax((block + gumbel) / self.params.gumbel_temperature, dim=1))
        return torch.cat(parts, dim=1)

    def _critic(self, rows: Any, condition: Any) -> Any:
        """One score per pack of ``pac`` consecutive rows, each seen with its condition."""
        import torch

        joined = torch.cat([rows, condition], dim=1)
        return self.critic_net_(joined.reshape(-1, self.params.pac * joined.shape[1]))

    def _gradient_penalty(self, real: Any, fake: Any, condition: Any, generator: Any) -> Any:
        """WGAN-GP: the critic's gradient norm, per pack, held near 1 on lines between real and fake packs."""
        import torch

        packs = len(real) // self.params.pac
        mix = torch.rand(packs, 1, 1, generator=generator, device=real.device)
        mix = mix.expand(packs, self.params.pac, 1).reshape(len(real), 1)
        between = (mix * real + (1 - mix) * fake).requires_grad_(True)
        score = self._critic(between, condition)
        (gradient,) = torch.autograd.grad(score.sum(), between, create_graph=True)
        norm = gradient.reshape(packs, -1).norm(dim=1)
        return ((norm - 1) ** 2).mean()

    def _condition_loss(self, raw: Any, real: Any, given: Any) -> Any:
        """Cross-entropy of the generator's logits against every given category, per row, averaged."""
        import torch
        from torch.nn import functional

        loss = torch.zeros(len(raw), device=raw.device)
        for index, span in enumerate(self.conditions_.spans):
            target = real[:, span.start : span.stop].argmax(dim=1)
            error = functional.cross_entropy(raw[:, span.start : span.stop], target, reduction="none")
            loss = loss + error * given[:, index]
        return loss.mean()

    # --- the Generator contract ----------------------------------------------------------------

    # --- training ------------------------------------------------------------------------------

    def _prepare(self, data: np.ndarray, context: FitContext) -> None:
        from synthforge.errors import DataError

        if len(data) < self.params.pac:
            raise DataError(f"the gan generator judges rows in packs of pac={self.params.pac}, but the table has "
                            f"{len(data)} rows; lower pac.")

    def _train(self, data: np.ndarray, context: FitContext) -> History:
        import torch

        from synthforge.nn import train, use_bfloat16

        device = self.device_
        self._build_critic(data.shape[1])
        self.critic_net_.to(device)
        self.data_ = torch.as_tensor(data, device=device)
        self._category_sampler(self.data_)
        settings = {"lr": self.params.learning_rate, "betas": (0.5, 0.9), "weight_decay": self.params.weight_decay}
        generator_optimiser = torch.optim.Adam(self.generator_net_.parameters(), **settings)
        critic_optimiser = torch.optim.Adam(self.critic_net_.parameters(), **settings)
        generator = context.torch_generator("noise", device=device)
        pac = self.params.pac

        def fake_rows(real: Any, condition: Any) -> tuple[Any, Any]:
            noise = torch.randn(len(real), self.params.noise_dim, generator=generator, device=real.device)
            raw = self.generator_net_(torch.cat([noise, condition], dim=1))
            return raw, self._activate(raw, generator)

        bfloat16 = device.type == "cpu" and use_bfloat16(self.params.train_precision)

        def step(batch: Any, epoch: int) -> dict[str, float]:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                return adversarial_step(batch)

        def adversarial_step(batch: Any) -> dict[str, float]:
            batch = batch[: len(batch) // pac * pac]  # the last batch of a small table may not fill its packs
            for _ in range(self.params.critic_steps):
                real, condition, _ = self._training_rows(batch, generator)
                with torch.no_grad():
                    _, fake = fake_rows(real, condition)
                distance = self._critic(real, condition).mean() - self._critic(fake, condition).mean()
                penalty = self._gradient_penalty(real, fake, condition, generator)
                critic_optimiser.zero_grad(set_to_none=True)
                (-distance + self.params.gradient_penalty * penalty).backward()
                critic_optimiser.step()
            real, condition, given = self._training_rows(batch, generator)
            raw, fake = fake_rows(real, condition)
            condition_loss = self._condition_loss(raw, real, given)
            generator_loss = -self._critic(fake, condition).mean() + condition_loss
            generator_optimiser.zero_grad(set_to_none=True)
            generator_loss.backward()
            generator_optimiser.step()
            return {"wasserstein": distance.item(), "penalty": penalty.item(), "condition": condition_loss.item()}

        history = train(data=self.data_, step=step, modules=[self.generator_net_, self.critic_net_],
                        params=self.params, context=context, description="gan")
        # Sampling needs the generator only: drop the critic and training-by-sampling's tables of real rows.
        del self.data_, self.critic_net_, self.rows_by_category_, self.category_probabilities_, self.span_offset_
        del self.category_count_, self.category_first_
        return history

    def _after_training(self, data: np.ndarray, context: FitContext) -> None:
        self._calibrate(data, context.torch_generator("calibration"))

    def _calibrate(self, data: np.ndarray, generator: Any) -> None:
        """Fit the marginal calibration on unconditional output for fresh noise (see the module notes)."""
        import torch

        from synthforge.nn import forward_in_chunks, use_bfloat16
        from synthforge.nn.calibration import MarginalCalibration, calibration_draws

        self.calibration_ = MarginalCalibration(self.encoder_.spans_)
        if not self.params.calibrate:
            return
        rows = calibration_draws(len(data))
        noise = torch.randn(rows, self.params.noise_dim, generator=generator)
        raw = forward_in_chunks(self.generator_net_, torch.cat([noise, torch.zeros(rows, self.conditions_.width)], 1),
                                bfloat16=use_bfloat16(self.sample_params.precision))  # as sampling will run it
        self.calibration_.fit(self._bound(raw.numpy().astype(np.float64)), data)

    def _bound(self, raw: np.ndarray) -> np.ndarray:
        """Numbers through tanh where the encoding is bounded (mode-specific); logits as they are."""
        if self.bounded_:
            for span in self.encoder_.spans_:
                if span.kind == "numeric":
                    raw[:, span.start] = np.tanh(raw[:, span.start])
        return raw

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        import torch

        from synthforge.nn import forward_in_chunks, use_bfloat16
        from synthforge.nn.calibration import sample_categories

        conditions = conditions or {}
        condition = self.conditions_.for_sampling(n, conditions, "gan", "the copula generator for numeric conditions")
        noise = torch.from_numpy(rng.standard_normal((n, self.params.noise_dim), dtype=np.float32))
        output = forward_in_chunks(self.generator_net_, torch.cat([noise, condition], dim=1),
                                   bfloat16=use_bfloat16(self.sample_params.precision)).numpy()
        output = self.calibration_.apply(self._bound(output.astype(np.float64)))
        sample_categories(output, self.encoder_.spans_, rng)
        for span, value in conditions.items():
            output[:, span.start : span.stop] = value
        return output

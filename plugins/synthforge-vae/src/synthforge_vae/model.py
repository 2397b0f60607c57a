"""A tabular conditional VAE in the spirit of TVAE (Xu et al., 2019).

Rows arrive encoded by SynthForge's shared encoder: numbers mode-specific
normalised (a value relative to one mode of a Gaussian mixture, plus the mode as a
one-hot) or quantile normalised, categories and null indicators one-hot.

- **Encoder** ``q(z | x, c)`` and **decoder** ``p(x | z, c)`` are MLPs.
- **Heads**: every numeric span is Gaussian with a learned per-column standard
  deviation; every one-hot span is a softmax. The reconstruction loss is the sum of
  their negative log-likelihoods (weighted by ``loss_factor``, as TVAE does).
- **KL annealing**: the KL term's weight rises linearly from 0 to 1 over
  ``kl_anneal_epochs``, so the decoder learns to reconstruct before the posterior
  is pulled to the prior.
- **Conditions**: ``c`` holds, for every categorical column, its one-hot and a bit
  saying whether it is given. Training hides a random subset of columns in every
  row (all of them in ``unconditional_rate`` of rows), so one model samples
  unconditionally and conditioned on any subset of categorical values, from the
  learned conditional rather than by rejection.
- **Marginal calibration** (``calibrate``, :mod:`synthforge.nn.calibration`): after
  training, decoded prior samples are compared once with the training marginals;
  each categorical head gets a logit offset and each number a monotone quantile map,
  saved with the weights. Sampling from the prior where the aggregate posterior
  does not fill it is what makes a VAE's marginals drift.
- **Encoding**: low-cardinality integers are learned as categories of their values,
  and a column that is an exact function of another (education-num of education)
  is derived from it rather than learned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from synthforge import FitContext
from synthforge.data.encoder import Span
from synthforge.nn import CalibratedTorchGenerator, EarlyStopping, OneHotModelParams

if TYPE_CHECKING:
    from synthforge.nn import History


class VAEParams(OneHotModelParams, EarlyStopping):
    # Measured on Adult, 2 CPU cores: 50 epochs of 1,000 rows at 2e-3 fit in 42 s and score 0.975 SDMetrics
    # overall; 100 epochs of 500 at 1e-3, 83 s and 0.977.
    defaults: ClassVar[dict[str, Any]] = {"epochs": 50, "batch_size": 1000, "learning_rate": 2e-3, "weight_decay": 1e-5}
    latent_dim: int = Field(128, ge=1, le=2048, description="Size of the latent code.")
    hidden_dim: int = Field(256, ge=8, le=8192, description="Width of each hidden layer.")
    layers: int = Field(2, ge=1, le=8, description="Hidden layers in the encoder and in the decoder.")
    loss_factor: float = Field(2.0, gt=0, description="Weight of the reconstruction term against the KL term.")
    kl_anneal_epochs: int = Field(10, ge=0, description="Epochs over which the KL weight rises from 0 to 1.")
    # numeric_encoding keeps OneHotModelParams' mode_specific. Measured on Adult before calibration (100 epochs,
    # 2 cores): mode_specific 0.903 SDMetrics overall in 103 s, quantile 0.914 in 73 s; but with quantile,
    # conditionals of rare categories came out weaker on small tables (wives 35% female vs 66%).


class ConditionalVAE(CalibratedTorchGenerator):
    name = "vae"
    description = "A TVAE-style conditional VAE: Gaussian and softmax heads, KL annealing, native conditions."
    Params = VAEParams
    supports_conditions = True
    supports_privacy = True
    supports_streaming = True
    weights: ClassVar[dict[str, str]] = {"decoder_net_": "decoder.", "encoder_net_": "encoder.",
                                         "log_sigma_": "log_sigma."}
    params: VAEParams

    # --- the networks, and the layout of the data and of the condition vector ----------------

    def _build(self) -> None:
        import torch
        from torch import nn

        from synthforge.nn import CategoricalConditions

        spans, width = self.encoder_.spans_, self.encoder_.width
        self.numeric_spans_ = [s for s in spans if s.kind == "numeric"]
        self.onehot_spans_ = [s for s in spans if s.kind == "onehot"]
        self.conditions_ = CategoricalConditions(self.encoder_, self.schema_)

        def mlp(inputs: int, outputs: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for _ in range(self.params.layers):
                layers += [nn.Linear(inputs, self.params.hidden_dim), nn.ReLU()]
                inputs = self.params.hidden_dim
            return nn.Sequential(*layers, nn.Linear(inputs, outputs))

        latent, conditions = self.params.latent_dim, self.conditions_.width
        self.encoder_net_ = mlp(width + conditions, 2 * latent)
        self.decoder_net_ = mlp(latent + conditions, width)
        self.log_sigma_ = nn.Module()
        self.log_sigma_.value = nn.Parameter(torch.full((len(self.numeric_spans_),), np.log(0.1), dtype=torch.float32))

    def _sigma(self) -> Any:
        return self.log_sigma_.value.exp().clamp(0.01, 1.0)

    def _negative_log_likelihood(self, output: Any, batch: Any) -> Any:
        """Per-row reconstruction loss: Gaussian heads for numbers, softmax heads for one-hots."""
        import torch
        from torch.nn import functional

        loss = torch.zeros(len(batch), device=batch.device)
        sigma = self._sigma()
        for index, span in enumerate(self.numeric_spans_):
            error = (batch[:, span.start] - output[:, span.start]) / sigma[index]
            loss = loss + 0.5 * error**2 + sigma[index].log()
        for span in self.onehot_spans_:
            target = batch[:, span.start : span.stop].argmax(dim=1)
            loss = loss + functional.cross_entropy(output[:, span.start : span.stop], target, reduction="none")
        return loss

    def _row_losses(self, batch: Any, kl_weight: float, generator: Any) -> Any:
        import torch

        condition = self.conditions_.random(batch, self.params.unconditional_rate, self.params.condition_keep_rate,
                                            generator)
        mean, log_variance = self.encoder_net_(torch.cat([batch, condition], dim=1)).chunk(2, dim=1)
        noise = torch.randn(mean.shape, generator=generator, device=batch.device)
        code = mean + noise * (0.5 * log_variance).exp()
        output = self.decoder_net_(torch.cat([code, condition], dim=1))
        kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp()).sum(dim=1)
        return self.params.loss_factor * self._negative_log_likelihood(output, batch) + kl_weight * kl

    # --- training ------------------------------------------------------------------------------

    def _train(self, data: np.ndarray, context: FitContext) -> History:
        import torch

        from synthforge.nn import make_private, train, training_rows

        trained = self.weight_modules()
        if context.privacy is not None:
            # the numeric heads' spread is a parameter outside any layer's forward, whose per-row gradient DP-SGD
            # cannot clip: under a budget it stays at its start
            self.log_sigma_.value.requires_grad_(False)
            trained = [self.encoder_net_, self.decoder_net_]
        parameters = [p for module in trained for p in module.parameters() if p.requires_grad]
        optimiser, backward = make_private(
            torch.optim.Adam(parameters, lr=self.params.learning_rate, weight_decay=self.params.weight_decay),
            trained, context, rows=len(data), params=self.params)
        generator = context.torch_generator("noise", device=self.device_)
        validation_generator = context.torch_generator("validation noise", device=self.device_)

        def step(batch: Any, epoch: int) -> dict[str, float]:
            anneal = self.params.kl_anneal_epochs
            kl_weight = min(1.0, (epoch - 1) / anneal) if anneal else 1.0
            optimiser.zero_grad()
            loss = backward(self._row_losses(batch, kl_weight, generator))
            optimiser.step()
            return {"loss": loss.item()}

        return train(data=training_rows(data, np.asarray, self.device_), step=step, modules=self.weight_modules(),
                     params=self.params, context=context, description="vae",
                     validation_loss=lambda rows: self._row_losses(rows, 1.0, validation_generator).mean().item())

    def _after_training(self, data: np.ndarray, context: FitContext) -> None:
        from synthforge.nn.calibration import calibration_draws

        rng = context.rng("calibration")
        if context.privacy is not None:  # calibrated to the released marginals: the rows are not read again
            data = self.released_reference(calibration_draws(len(data)), rng)
        self._calibrate(data, rng)

    def _private_defaults(self, rows: int) -> dict[str, Any]:
        """Fewer, larger steps for DP-SGD, whose noise is per step."""
        return {"epochs": 20, "batch_size": int(np.clip(rows // 12, 256, 4096)), "learning_rate": 3e-3}

    def _decode_prior(self, condition: Any, rng: np.random.Generator) -> np.ndarray:
        """Decoder output for codes drawn from the prior: logits for one-hots, values (with their noise) for
        numbers."""
        import torch

        rows = len(condition)
        from synthforge.nn import forward_in_chunks

        code = torch.from_numpy(rng.standard_normal((rows, self.params.latent_dim), dtype=np.float32))
        output = forward_in_chunks(self.decoder_net_, torch.cat([code, condition], dim=1)).numpy().astype(np.float64)
        sigma = self._sigma().detach().numpy()
        for index, span in enumerate(self.numeric_spans_):
            output[:, span.start] += sigma[index] * rng.standard_normal(rows)
        return output

    def _calibrate(self, data: np.ndarray, rng: np.random.Generator) -> None:
        import torch

        from synthforge.nn.calibration import MarginalCalibration, calibration_draws

        self.calibration_ = MarginalCalibration(self.encoder_.spans_)
        if self.params.calibrate:
            rows = calibration_draws(len(data))
            prior = self._decode_prior(torch.zeros(rows, self.conditions_.width), rng)
            self.calibration_.fit(prior, data)

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        from synthforge.nn.calibration import sample_categories

        conditions = conditions or {}
        condition = self.conditions_.for_sampling(n, conditions, "vae", "the copula generator for numeric conditions")
        output = self.calibration_.apply(self._decode_prior(condition, rng))
        sample_categories(output, self.onehot_spans_, rng)
        for span, value in conditions.items():
            output[:, span.start : span.stop] = value
        return output

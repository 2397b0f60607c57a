"""DP-SGD for the torch generators: per-row gradients clipped, Gaussian noise, Poisson batches, every step charged.

A torch plugin that declares ``supports_privacy`` builds its optimiser through
:func:`make_private`, and computes its loss *per row*::

    optimiser, backward = make_private(adamw(self.network_.parameters(), self.params, device), [self.network_],
                                       context, rows=len(data), params=self.params)

    def step(batch, epoch):
        optimiser.zero_grad()
        loss = backward(self._row_losses(batch))   # a tensor of one loss per row of the batch
        optimiser.step()
        return {"loss": loss.item()}

Without a privacy budget ``backward`` is ``losses.mean().backward()`` and the optimiser
is untouched. Under one, :func:`make_private` plans the training — each row's chance
to be in a batch ``q = batch_size / rows``, ``epochs / q`` steps, and the smallest
noise multiplier with which they fit in what is left of the budget — and ``backward``
runs two passes: the first gives each row's gradient norm (Opacus's ghost clipping:
norms from each layer's activations and output gradients, never the per-row gradients
themselves), the second the sum of the rows' gradients each clipped to
``max_grad_norm``; the optimiser (Opacus's) adds the Gaussian noise before it steps.
:func:`synthforge.nn.train` draws the Poisson batches, charges each epoch to the run's
accountant *before* running it (an epoch the budget cannot pay for is not run), and
removes the hooks at the end. Each row's loss must depend on that row alone (no batch
norm, no loss across rows); a layer that breaks this is refused when training starts.

The noise and the batches come from a secret seed unless the recipe asks for seeded
noise (``privacy.seeded_noise``): knowing the noise would undo it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from synthforge.errors import SynthForgeError
from synthforge.generator import FitContext
from synthforge.privacy.accountant import subsampled_gaussian_rdp
from synthforge.seeds import derive_seed

STAGE = "model"


class PrivateTraining:
    """One DP-SGD training's plan and state; created by :func:`make_private`, used by ``train``."""

    def __init__(self, context: FitContext, rows: int, batch_size: int, epochs: int, modules: list[Any]) -> None:
        if rows < 2:
            raise SynthForgeError("differentially private training needs at least 2 training rows.")
        self.accountant = context.privacy
        self.rows = rows
        self.sample_rate = min(batch_size / rows, 1.0)
        self.steps_per_epoch = max(1, round(1 / self.sample_rate))
        self.epochs = epochs
        self.max_grad_norm = context.max_grad_norm
        self.noise_multiplier = self.accountant.noise_multiplier_for(self.sample_rate, epochs * self.steps_per_epoch)
        self.seed = context.noise_seed("dp-sgd")
        self.batch_generator = torch.Generator().manual_seed(derive_seed(self.seed, "batches") % 2**63)
        self.wrapped = [_per_row_gradients(module, self.max_grad_norm) for module in modules]
        self.optimisers: list[Any] = []
        self.epochs_charged = 0

    def wrap(self, optimiser: torch.optim.Optimizer, device: torch.device) -> torch.optim.Optimizer:
        from opacus.optimizers import DPOptimizerFastGradientClipping

        seed = derive_seed(self.seed, "noise", len(self.optimisers)) % 2**63
        noise = torch.Generator(device=device).manual_seed(seed)
        private = DPOptimizerFastGradientClipping(
            optimiser, noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
            expected_batch_size=max(1, round(self.sample_rate * self.rows)), loss_reduction="mean", generator=noise)
        self.optimisers.append(private)
        return private

    def backward(self, row_losses: torch.Tensor) -> torch.Tensor:
        """The batch's mean loss; the gradients left behind are the sum of each row's, clipped to
        ``max_grad_norm`` (the optimiser's step adds the noise and divides by the expected batch size)."""
        mean = row_losses.mean()
        with warnings.catch_warnings():
            # Opacus's full backward hooks on a first layer whose input (token indices) needs no gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            mean.backward(retain_graph=True)  # the hooks compute each row's gradient norm per layer
        norms = torch.stack([wrapped.get_norm_sample() for wrapped in self.wrapped]).norm(2, dim=0)
        clip = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0).to(row_losses.device)
        for optimiser in self.optimisers:
            optimiser.zero_grad()
        for wrapped in self.wrapped:
            wrapped.disable_hooks()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            (clip.detach() * row_losses).sum().backward()
        for wrapped in self.wrapped:
            wrapped.enable_hooks()
        return mean.detach()

    def batch(self, rows: int, device: torch.device) -> torch.Tensor:
        """The indices of one Poisson batch: each row in with probability ``sample_rate``, independently."""
        chosen = torch.rand(rows, generator=self.batch_generator) < self.sample_rate
        return torch.nonzero(chosen, as_tuple=True)[0].to(device)

    def charge_epoch(self) -> None:
        """Charge the next epoch's steps; :class:`~synthforge.privacy.accountant.BudgetExceeded` if the
        budget cannot pay for them (then they are not run)."""
        self.accountant.spend("DP-SGD", STAGE, subsampled_gaussian_rdp(self.sample_rate, self.noise_multiplier,
                                                                      self.steps_per_epoch),
                              steps=self.steps_per_epoch, noise_multiplier=round(self.noise_multiplier, 4),
                              sample_rate=round(self.sample_rate, 6), max_grad_norm=self.max_grad_norm)
        self.epochs_charged += 1

    def empty_step(self) -> None:
        """A step on a batch that drew no rows: noise alone, as the analysis assumes (skipping it would tell)."""
        for optimiser in self.optimisers:
            optimiser.zero_grad()
            for parameter in optimiser.params:
                parameter.grad = torch.zeros_like(parameter)
            optimiser.step()

    def close(self) -> None:
        for wrapped in self.wrapped:
            wrapped._close()


def _per_row_gradients(module: torch.nn.Module, max_grad_norm: float) -> Any:
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.validators import ModuleValidator

    _fast_embedding_norms()

    problems = ModuleValidator.validate(module, strict=False)
    if problems:
        raise SynthForgeError("this model cannot train with DP-SGD: " + "; ".join(str(p) for p in problems[:5])
                              + " (a layer mixes rows of a batch: replace batch norm with layer or group norm).")
    # strict=False lets a module hold constant buffers (a denoiser's time frequencies); what mixes rows of a
    # batch (batch norm's statistics) the validator above has refused already
    return GradSampleModuleFastGradientClipping(module, batch_first=True, loss_reduction="mean", strict=False,
                                                max_grad_norm=max_grad_norm, use_ghost_clipping=True)


def _fast_embedding_norms() -> None:
    """An embedding looked up once per row (a column's token) has one nonzero row of gradient per batch row:
    its norm is that row's output gradient's. Opacus's own sampler handles any lookup pattern, through a
    ``unique`` per batch that cost 60% of an autoregressive DP step; it still handles the other patterns."""
    from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleHooksFastGradientClipping

    samplers = GradSampleHooksFastGradientClipping.NORM_SAMPLERS
    general = samplers.get(torch.nn.Embedding)
    if general is None or getattr(general, "synthforge_fast", False):
        return

    def norms(layer: torch.nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict[Any, Any]:
        if activations[0].dim() == 1 and layer.padding_idx is None:
            return {layer.weight: backprops.reshape(len(backprops), -1).norm(2, dim=1)}
        return general(layer, activations, backprops)

    norms.synthforge_fast = True  # type: ignore[attr-defined]
    samplers[torch.nn.Embedding] = norms


def _mean_backward(row_losses: torch.Tensor) -> torch.Tensor:
    mean = row_losses.mean()
    mean.backward()
    return mean.detach()


def make_private(optimiser: torch.optim.Optimizer, modules: list[torch.nn.Module], context: FitContext, *,
                 rows: int, params: Any) -> tuple[torch.optim.Optimizer, Callable[[torch.Tensor], torch.Tensor]]:
    """``(optimiser, backward)``: DP-SGD under the run's privacy budget (see the module documentation), the
    optimiser untouched and a plain mean's backward without one."""
    if context.privacy is None:
        return optimiser, _mean_backward
    if context.private_training is None:
        context.private_training = PrivateTraining(context, rows, params.batch_size, params.epochs, list(modules))
    private = context.private_training
    device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
    return private.wrap(optimiser, device), private.backward


__all__ = ["PrivateTraining", "make_private"]

"""``synthforge new-plugin``: a ready generator distribution, installable with ``pip install -e``.

The generated model is small but real: a torch model trained with the core's loop
on the core's encoding, saved as safetensors, passing the conformance suite.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from synthforge.errors import SynthForgeError

FAMILIES = ("vae", "gan", "diffusion", "numpy")

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "synthforge-{name}"
version = "0.1.0"
description = "A {family} generator plugin for SynthForge."
readme = "README.md"
requires-python = ">=3.10"
# The range of SynthForge versions this plugin is written against: SynthForge warns
# about (and skips) a plugin whose range excludes the installed version.
dependencies = [{dependencies}]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.synthforge]
{name} = "synthforge_{module}"

[tool.setuptools.packages.find]
where = ["src"]
'''

_INIT = '''"""SynthForge plugin: the `{name}` generator."""

import synthforge
from synthforge_{module}.model import {cls}

__all__ = ["{cls}"]


@synthforge.hookimpl
def synthforge_generators() -> list[type[synthforge.Generator]]:
    return [{cls}]
'''

_TEST = '''"""SynthForge's conformance suite against the `{name}` generator, and a recipe in every output mode it
supports (it must be installed: recipes find it by name), with params small enough for CI."""

import pytest
from synthforge.testing import check_recipe_mode, conformance_checks, recipe_modes
from synthforge_{module} import {cls}

FAST = {fast}


@pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
def test_conformance(check):
    check({cls}, params=FAST)


@pytest.mark.parametrize("output", recipe_modes({cls}), ids=lambda output: output["mode"])
def test_recipe_modes(tmp_path, output):
    check_recipe_mode("{name}", FAST, output, tmp_path)
'''

_README = '''# synthforge-{name}

A `{family}` generator plugin for [SynthForge](https://github.com/synthforge/synthforge).

```bash
pip install -e .            # registers the `{name}` generator through the `synthforge` entry point
synthforge plugins          # lists it
pytest tests                # SynthForge's conformance suite against it
```

Use it in a recipe:

```yaml
generator:
  name: {name}
  params: {{epochs: 50}}
```

The model lives in `src/synthforge_{module}/model.py`: `_fit` trains on the encoded table,
`_sample` returns encoded rows, `_get_state`/`_set_state` hand the weights to safetensors.
Everything else (encoding, seeding, conditions, identifiers, save/load) is SynthForge's.
'''

_NUMPY_MODEL = '''"""The `{name}` generator: a latent class model, fitted by expectation-maximisation in numpy.

Each row belongs to one of `components` hidden classes, and within a class every column is
independent: a Gaussian for each number (the shared encoder maps numbers to a standard normal), a
categorical for each category and each null indicator. EM alternates the classes' posteriors for
every row and the classes' parameters. No torch: `uses_torch` stays False.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from synthforge import EncoderConfig, FitContext, Generator, GeneratorParams
from synthforge.data.encoder import Span


class {cls}Params(GeneratorParams):  # extra="forbid": a misspelled param is an error naming it
    components: int = Field(10, ge=1, le=1000, description="Hidden classes of rows.")
    iterations: int = Field(40, ge=1, le=10_000, description="Expectation-maximisation steps.")
    smoothing: float = Field(0.5, gt=0, description="Pseudo-count of every category in every class.")


class {cls}(Generator):
    name = "{name}"
    description = "A latent class model fitted by EM: independent columns within each hidden class."
    Params = {cls}Params
    encoding = EncoderConfig(numeric="quantile", categorical="onehot")
    params: {cls}Params

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        spans = self.encoder_.spans_
        self.numeric_ = np.array([s.start for s in spans if s.kind == "numeric"], dtype=np.int64)
        self.groups_ = [(s.start, s.stop) for s in spans if s.kind == "onehot"]
        classes = min(self.params.components, len(data))
        # A named random stream of the recipe's seed: the same seed gives the same model.
        posteriors = context.rng("initial classes").dirichlet(np.ones(classes), size=len(data))
        for _ in range(self.params.iterations):
            self._maximise(data, posteriors)
            posteriors = self._posteriors(data)

    def _maximise(self, data: np.ndarray, posteriors: np.ndarray) -> None:
        totals = posteriors.sum(axis=0) + 1e-9
        self.weights_ = totals / totals.sum()
        numbers = data[:, self.numeric_]
        self.means_ = posteriors.T @ numbers / totals[:, None]
        variances = posteriors.T @ numbers**2 / totals[:, None] - self.means_**2
        self.stds_ = np.sqrt(np.maximum(variances, 1e-4))
        counts = posteriors.T @ data + self.params.smoothing
        self.probabilities_ = np.ones_like(counts)
        for start, stop in self.groups_:
            self.probabilities_[:, start:stop] = counts[:, start:stop] / counts[:, start:stop].sum(1, keepdims=True)

    def _posteriors(self, data: np.ndarray) -> np.ndarray:
        numbers = data[:, self.numeric_][:, None, :]
        log_likelihood = -0.5 * (((numbers - self.means_) / self.stds_) ** 2).sum(-1) - np.log(self.stds_).sum(-1)
        onehot = np.concatenate([np.arange(a, b) for a, b in self.groups_]) if self.groups_ else np.arange(0)
        log_likelihood += data[:, onehot] @ np.log(self.probabilities_[:, onehot]).T
        log_posterior = log_likelihood + np.log(self.weights_)
        log_posterior -= log_posterior.max(axis=1, keepdims=True)
        posterior = np.exp(log_posterior)
        return posterior / posterior.sum(axis=1, keepdims=True)

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        # supports_conditions is False: the base class samples by rejection, so conditions are never passed.
        classes = rng.choice(len(self.weights_), size=n, p=self.weights_)
        output = np.zeros((n, self.encoder_.width))
        output[:, self.numeric_] = self.means_[classes] + self.stds_[classes] * rng.standard_normal(
            (n, len(self.numeric_)))
        for start, stop in self.groups_:
            cumulative = self.probabilities_[classes, start:stop].cumsum(axis=1)
            choice = (cumulative < rng.random((n, 1)) * cumulative[:, -1:]).sum(axis=1)
            output[np.arange(n), start + choice] = 1.0
        return output

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        names = ("numeric_", "weights_", "means_", "stds_", "probabilities_")
        return {name: getattr(self, name) for name in names}, {"groups": self.groups_}

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        for name, array in arrays.items():
            setattr(self, name, np.asarray(array))
        self.groups_ = [tuple(group) for group in extra["groups"]]
'''

_MODELS = {
    "vae": '''"""The `{name}` generator: a variational autoencoder over the encoded table."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from synthforge import EncoderConfig, FitContext, Generator
from synthforge.data.encoder import Span
from synthforge.nn import TrainingParams


class {cls}Params(TrainingParams):
    latent_dim: int = Field(16, ge=1, le=512, description="Size of the latent code.")
    hidden_dim: int = Field(128, ge=8, le=4096, description="Width of the hidden layers.")


class {cls}(Generator):
    name = "{name}"
    description = "A variational autoencoder: softmax heads for categories, Gaussian heads for numbers."
    Params = {cls}Params
    encoding = EncoderConfig(numeric="quantile", categorical="onehot")
    supports_gpu = True
    uses_torch = True
    params: {cls}Params

    def _build(self, width: int) -> None:
        import torch
        from torch import nn

        hidden, latent = self.params.hidden_dim, self.params.latent_dim
        self.encoder_net_ = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder_net_ = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, width))
        self._torch = torch

    def _reconstruction_loss(self, output: Any, batch: Any) -> Any:
        functional = self._torch.nn.functional
        loss = 0.0
        for span in self.encoder_.spans_:
            predicted, actual = output[:, span.start : span.stop], batch[:, span.start : span.stop]
            if span.kind == "onehot":
                loss = loss + functional.cross_entropy(predicted, actual.argmax(dim=1))
            else:
                loss = loss + functional.mse_loss(predicted, actual)
        return loss

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        import torch

        from synthforge.nn import resolve_device, train

        device = resolve_device(context.device)
        self._build(data.shape[1])
        modules = [self.encoder_net_.to(device), self.decoder_net_.to(device)]
        optimiser = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=self.params.learning_rate)
        latent = self.params.latent_dim

        def loss_of(batch: Any) -> Any:
            mean, log_variance = self.encoder_net_(batch).split(latent, dim=1)
            code = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
            kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp()).sum(dim=1).mean()
            return self._reconstruction_loss(self.decoder_net_(code), batch) + kl

        def step(batch: Any, epoch: int) -> dict[str, float]:
            optimiser.zero_grad()
            loss = loss_of(batch)
            loss.backward()
            optimiser.step()
            return {{"loss": loss.item()}}

        train(data=torch.as_tensor(data, device=device), step=step, modules=modules, params=self.params,
              context=context, validation_loss=lambda v: loss_of(v).item(), description=self.name)
        for module in modules:
            module.cpu()

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        import torch

        code = torch.as_tensor(rng.standard_normal((n, self.params.latent_dim)), dtype=torch.float32)
        with torch.no_grad():
            output = self.decoder_net_(code).numpy()
        for span in self.encoder_.spans_:
            if span.kind == "onehot":  # draw each category from its softmax instead of taking the mode
                logits = output[:, span.start : span.stop]
                gumbel = -np.log(-np.log(rng.random(logits.shape)))
                output[:, span.start : span.stop] = np.eye(span.width)[np.argmax(logits + gumbel, axis=1)]
        return output
''',
    "gan": '''"""The `{name}` generator: a Wasserstein GAN with gradient penalty over the encoded table."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from synthforge import EncoderConfig, FitContext, Generator
from synthforge.data.encoder import Span
from synthforge.nn import TrainingParams


class {cls}Params(TrainingParams):
    noise_dim: int = Field(32, ge=1, le=512, description="Size of the generator's input noise.")
    hidden_dim: int = Field(128, ge=8, le=4096, description="Width of the hidden layers.")
    gradient_penalty: float = Field(10.0, ge=0, description="Weight of the WGAN-GP penalty.")
    patience: int = Field(0, ge=0, description="GAN losses do not measure quality: no early stopping by default.")
    validation_fraction: float = Field(0.0, ge=0, lt=0.5)
    learning_rate: float = Field(2e-4, gt=0, lt=1)


class {cls}(Generator):
    name = "{name}"
    description = "A WGAN-GP: an MLP generator with softmax heads against an MLP critic."
    Params = {cls}Params
    encoding = EncoderConfig(numeric="quantile", categorical="onehot")
    supports_gpu = True
    uses_torch = True
    params: {cls}Params

    def _activate(self, raw: Any) -> Any:
        import torch

        parts = []
        for span in self.encoder_.spans_:
            block = raw[:, span.start : span.stop]
            parts.append(torch.softmax(block, dim=1) if span.kind == "onehot" else block)
        return torch.cat(parts, dim=1)

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        import torch
        from torch import nn

        from synthforge.nn import resolve_device, train

        device = resolve_device(context.device)
        width, hidden, noise = data.shape[1], self.params.hidden_dim, self.params.noise_dim
        self.generator_net_ = nn.Sequential(nn.Linear(noise, hidden), nn.ReLU(), nn.Linear(hidden, width)).to(device)
        critic = nn.Sequential(nn.Linear(width, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)).to(device)
        generator_optimiser = torch.optim.Adam(self.generator_net_.parameters(), lr=self.params.learning_rate,
                                               betas=(0.5, 0.9))
        critic_optimiser = torch.optim.Adam(critic.parameters(), lr=self.params.learning_rate, betas=(0.5, 0.9))

        def step(batch: Any, epoch: int) -> dict[str, float]:
            fake = self._activate(self.generator_net_(torch.randn(len(batch), noise, device=device)))
            mix = torch.rand(len(batch), 1, device=device)
            between = (mix * batch + (1 - mix) * fake.detach()).requires_grad_(True)
            gradients = torch.autograd.grad(critic(between).sum(), between, create_graph=True)[0]
            penalty = ((gradients.norm(dim=1) - 1) ** 2).mean()
            critic_loss = critic(fake.detach()).mean() - critic(batch).mean() + self.params.gradient_penalty * penalty
            critic_optimiser.zero_grad()
            critic_loss.backward()
            critic_optimiser.step()
            generator_loss = -critic(self._activate(self.generator_net_(
                torch.randn(len(batch), noise, device=device)))).mean()
            generator_optimiser.zero_grad()
            generator_loss.backward()
            generator_optimiser.step()
            return {{"critic": critic_loss.item(), "generator": generator_loss.item()}}

        train(data=torch.as_tensor(data, device=device), step=step, modules=[self.generator_net_, critic],
              params=self.params, context=context, description=self.name)
        self.generator_net_.cpu()

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        import torch

        noise = torch.as_tensor(rng.standard_normal((n, self.params.noise_dim)), dtype=torch.float32)
        with torch.no_grad():
            return self._activate(self.generator_net_(noise)).numpy()
''',
    "diffusion": '''"""The `{name}` generator: a denoising diffusion model (DDPM) over the encoded table."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from synthforge import EncoderConfig, FitContext, Generator
from synthforge.data.encoder import Span
from synthforge.nn import TrainingParams


class {cls}Params(TrainingParams):
    steps: int = Field(100, ge=2, le=5000, description="Diffusion steps.")
    hidden_dim: int = Field(256, ge=8, le=4096, description="Width of the denoiser.")


class {cls}(Generator):
    name = "{name}"
    description = "A DDPM: an MLP predicts the noise added to encoded rows; sampling denoises step by step."
    Params = {cls}Params
    encoding = EncoderConfig(numeric="quantile", categorical="onehot")
    supports_gpu = True
    uses_torch = True
    params: {cls}Params

    def _schedule(self) -> Any:
        import torch

        betas = torch.linspace(1e-4, 0.02, self.params.steps)
        return betas, torch.cumprod(1 - betas, dim=0)

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        import torch
        from torch import nn

        from synthforge.nn import resolve_device, train

        device = resolve_device(context.device)
        width, hidden = data.shape[1], self.params.hidden_dim
        self.denoiser_ = nn.Sequential(nn.Linear(width + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                       nn.Linear(hidden, width)).to(device)
        optimiser = torch.optim.Adam(self.denoiser_.parameters(), lr=self.params.learning_rate)
        _, alpha_bar = self._schedule()
        alpha_bar = alpha_bar.to(device)

        def loss_of(batch: Any) -> Any:
            t = torch.randint(0, self.params.steps, (len(batch),), device=device)
            noise = torch.randn_like(batch)
            scale = alpha_bar[t][:, None]
            noisy = scale.sqrt() * batch + (1 - scale).sqrt() * noise
            time = (t.float() / self.params.steps)[:, None]
            return nn.functional.mse_loss(self.denoiser_(torch.cat([noisy, time], dim=1)), noise)

        def step(batch: Any, epoch: int) -> dict[str, float]:
            optimiser.zero_grad()
            loss = loss_of(batch)
            loss.backward()
            optimiser.step()
            return {{"loss": loss.item()}}

        train(data=torch.as_tensor(data, device=device), step=step, modules=[self.denoiser_], params=self.params,
              context=context, validation_loss=lambda v: loss_of(v).item(), description=self.name)
        self.denoiser_.cpu()

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        import torch

        betas, alpha_bar = self._schedule()
        x = torch.as_tensor(rng.standard_normal((n, self.encoder_.width)), dtype=torch.float32)
        with torch.no_grad():
            for t in reversed(range(self.params.steps)):
                time = torch.full((n, 1), t / self.params.steps)
                predicted = self.denoiser_(torch.cat([x, time], dim=1))
                x = (x - betas[t] / (1 - alpha_bar[t]).sqrt() * predicted) / (1 - betas[t]).sqrt()
                if t > 0:
                    noise = torch.as_tensor(rng.standard_normal(x.shape), dtype=torch.float32)
                    x = x + betas[t].sqrt() * noise
        return x.numpy()
''',
}

_STATE = '''
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        from synthforge.nn import module_arrays

        return {modules_save}, {{}}

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        from synthforge.nn import load_module_arrays

        self._rebuild()
{modules_load}
'''

_REBUILD = {
    "vae": '''
    def _rebuild(self) -> None:
        self._build(self.encoder_.width)
''',
    "gan": '''
    def _rebuild(self) -> None:
        from torch import nn

        hidden, width = self.params.hidden_dim, self.encoder_.width
        self.generator_net_ = nn.Sequential(nn.Linear(self.params.noise_dim, hidden), nn.ReLU(),
                                            nn.Linear(hidden, width))
''',
    "diffusion": '''
    def _rebuild(self) -> None:
        from torch import nn

        width, hidden = self.encoder_.width, self.params.hidden_dim
        self.denoiser_ = nn.Sequential(nn.Linear(width + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                       nn.Linear(hidden, width))
''',
}

# Params for the conformance test: the fewest epochs at which each template learns the marginals and
# null rates the suite checks (measured on its 2,000-row table).
_FAST = {
    "vae": '{"epochs": 20, "batch_size": 100}',
    "gan": '{"epochs": 60, "batch_size": 100, "learning_rate": 1e-3}',
    "diffusion": '{"epochs": 40, "batch_size": 100}',
    "numpy": '{"components": 10, "iterations": 30}',
}

_SAVED_MODULES = {"vae": ["encoder_net_", "decoder_net_"], "gan": ["generator_net_"], "diffusion": ["denoiser_"]}


def new_plugin(name: str, family: str, directory: Path) -> Path:
    """Write ``directory/synthforge-NAME/`` and return its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise SynthForgeError(f"plugin name {name!r} must be lower-case letters, digits and _, starting with a letter.")
    if family not in FAMILIES:
        raise SynthForgeError(f"unknown family {family!r}; the templates are: {', '.join(FAMILIES)}.")
    root = directory / f"synthforge-{name.replace('_', '-')}"
    if root.exists():
        raise SynthForgeError(f"{root} already exists; choose another name or remove it.")
    from synthforge import __version__

    module = name
    cls = "".join(part.capitalize() for part in name.split("_")) + "Generator"
    major = int(__version__.split(".")[0])
    next_major = f"{major + 1}" if major else "1"
    requirements = [f"synthforge>={__version__},<{next_major}", *([] if family == "numpy" else ["torch>=2.2"])]
    fields = {"name": name, "module": module, "cls": cls, "family": family, "version": __version__,
              "next_major": next_major, "fast": _FAST[family],
              "dependencies": ", ".join(f'"{requirement}"' for requirement in requirements)}
    files = {
        "pyproject.toml": _PYPROJECT.format(**fields),
        "README.md": _README.format(**fields),
        f"src/synthforge_{module}/__init__.py": _INIT.format(**fields),
        f"src/synthforge_{module}/model.py": model_source(family, name, cls),
        f"tests/test_{module}_conformance.py": _TEST.format(**fields),
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def model_source(family: str, name: str, cls: str) -> str:
    """The ``model.py`` of a template (the ``numpy`` one is the plugin guide's worked example)."""
    if family == "numpy":
        return _NUMPY_MODEL.replace("{name}", name).replace("{cls}", cls)
    fields = {"name": name, "module": name, "cls": cls, "family": family}
    modules = _SAVED_MODULES[family]
    state = _STATE.format(
        modules_save="{\n            " + ",\n            ".join(f"**module_arrays(self.{m}, {m!r})" for m in modules)
        + ",\n        }",
        modules_load="\n".join(f"        load_module_arrays(self.{m}, arrays, {m!r})" for m in modules),
    )
    return _MODELS[family].format(**fields) + _REBUILD[family] + state

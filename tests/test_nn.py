from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthforge.errors import SynthForgeError  # noqa: E402
from synthforge.generator import FitContext  # noqa: E402
from synthforge.nn import (  # noqa: E402
    EarlyStopping,
    FastDropout,
    TrainingParams,
    load_module_arrays,
    module_arrays,
    resolve_device,
    train,
    training_autocast,
    use_bfloat16,
)


class StoppingParams(TrainingParams, EarlyStopping):
    """Training params of a model whose validation loss decides when to stop."""


def _regression(seed: int, params: TrainingParams, epochs_seen: list | None = None, noise: float = 0.1):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(123)
    x = torch.randn(2000, 4, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + noise * torch.randn(2000, generator=generator)
    data = torch.cat([x, y[:, None]], 1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=params.learning_rate)

    def loss(batch):
        return torch.nn.functional.mse_loss(model(batch[:, :4])[:, 0], batch[:, 4])

    def step(batch, epoch):
        optimiser.zero_grad()
        value = loss(batch)
        value.backward()
        optimiser.step()
        return {"loss": value.item()}

    context = FitContext(seed=seed, on_epoch_end=(lambda e, m: epochs_seen.append((e, m))) if epochs_seen is not None
                         else None, progress=True)
    history = train(data=data, step=step, modules=[model], params=params, context=context,
                    validation_loss=lambda v: loss(v).item())
    return model, history


def test_loss_decreases_and_the_epoch_hook_sees_every_epoch():
    seen: list = []
    _, history = _regression(0, StoppingParams(epochs=15, batch_size=100, learning_rate=1e-2, patience=0), seen)
    losses = [e["loss"] for e in history.epochs]
    assert losses[-1] < losses[0] / 5
    assert [e for e, _ in seen] == list(range(1, 16)) and "val_loss" in seen[0][1]


def test_early_stopping_stops_and_restores_the_best_epoch():
    params = StoppingParams(epochs=300, batch_size=2000, learning_rate=5e-2, patience=3, validation_fraction=0.3)
    _model, history = _regression(0, params, noise=3.0)
    assert history.stopped_early and len(history.epochs) < 300
    best = min(history.epochs, key=lambda e: e["val_loss"])
    assert history.best_epoch == best["epoch"]


def test_same_seed_same_weights():
    params = TrainingParams(epochs=3, batch_size=64)
    first, _ = _regression(7, params)
    second, _ = _regression(7, params)
    for a, b in zip(module_arrays(first).values(), module_arrays(second).values(), strict=True):
        assert np.array_equal(a, b)


def test_weights_round_trip_through_arrays():
    model, _ = _regression(1, TrainingParams(epochs=1))
    copy = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    load_module_arrays(copy, module_arrays(model, prefix="net."), prefix="net.")
    x = torch.randn(5, 4)
    assert torch.equal(copy(x), model(x))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(SynthForgeError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(SynthForgeError, match="unknown device"):
        resolve_device("tpu9")


def test_divergence_is_reported():
    params = StoppingParams(epochs=5, batch_size=100, patience=0)
    model = torch.nn.Linear(1, 1)

    def step(batch, epoch):
        return {"loss": float("nan")}

    with pytest.raises(SynthForgeError, match="diverged at epoch 1"):
        train(data=torch.zeros(200, 1), step=step, modules=[model], params=params, context=FitContext())


def test_marginal_calibration_matches_frequencies_and_keeps_ranks():
    from synthforge.data.encoder import Span
    from synthforge.nn.calibration import MarginalCalibration, proportional_fit, sample_categories

    rng = np.random.default_rng(0)
    spans = [Span("x", "value", "numeric", 0, 1), Span("c", "value", "onehot", 1, 3, 3)]
    data = np.zeros((4_000, 4), dtype=np.float32)
    data[:, 0] = rng.normal(2.0, 0.5, 4_000)
    data[np.arange(4_000), 1 + rng.choice(3, 4_000, p=[0.6, 0.3, 0.1])] = 1.0
    generated = np.column_stack([rng.normal(0, 1, 8_000), rng.normal(size=(8_000, 3)) + np.array([0.0, 1.0, 2.0])])
    calibration = MarginalCalibration(spans).fit(generated, data)
    calibrated = calibration.apply(generated)
    assert abs(calibrated[:, 0].mean() - 2.0) < 0.03 and abs(calibrated[:, 0].std() - 0.5) < 0.03
    assert np.array_equal(np.argsort(calibrated[:, 0]), np.argsort(generated[:, 0])), "a monotone map keeps ranks"
    sample_categories(calibrated, spans, np.random.default_rng(1))
    assert np.allclose(calibrated[:, 1:].mean(axis=0), [0.6, 0.3, 0.1], atol=0.02)
    reloaded = MarginalCalibration(spans).load(calibration.arrays())
    assert np.array_equal(reloaded.apply(generated), calibration.apply(generated))
    assert MarginalCalibration(spans).apply(generated) is generated, "an unfitted calibration changes nothing"
    logits = rng.normal(size=(5_000, 4)) + np.array([2.0, 0.0, -1.0, 0.5])
    shifted = logits + proportional_fit(logits, np.array([0.1, 0.2, 0.3, 0.4]))
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    assert np.allclose(probabilities.mean(axis=0), [0.1, 0.2, 0.3, 0.4], atol=1e-4)


def _reconstruction_step(model, optimiser):
    """A training step teaching ``model`` to reproduce its input."""

    def step(batch, epoch):
        optimiser.zero_grad()
        value = (model(batch) - batch).pow(2).mean()
        value.backward()
        optimiser.step()
        return {"loss": value.item()}

    return step


def test_without_a_progress_bar_a_log_gets_a_line_every_tenth_of_the_epochs():
    lines: list[str] = []
    data = torch.randn(200, 3)
    model = torch.nn.Linear(3, 3)
    step = _reconstruction_step(model, torch.optim.SGD(model.parameters(), lr=0.01))

    train(data=data, step=step, modules=[model], params=TrainingParams(epochs=20, batch_size=50),
          context=FitContext(seed=0, progress=False, log=lines.append), description="toy")
    assert [line.split(",")[0] for line in lines] == [f"toy: epoch {e}/20" for e in (1, 2, 4, 6, 8, 10, 12, 14, 16,
                                                                                   18, 20)]
    assert re.search(r"loss \d+\.\d{4}; \d+ s, about \d+ s left$", lines[0]), lines[0]


def test_max_training_time_stops_cleanly_after_the_epoch_that_passes_it():
    import time

    data = torch.randn(20_000, 8)
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    step = _reconstruction_step(model, torch.optim.Adam(model.parameters(), lr=1e-3))

    started = time.perf_counter()
    history = train(data=data, step=step, modules=[model],
                    params=TrainingParams(epochs=100_000, batch_size=500, max_training_time=1.0),
                    context=FitContext(seed=0))
    assert history.out_of_time and history.stopped_early and 1 <= len(history.epochs) < 100_000
    assert time.perf_counter() - started < 10
    assert not model.training, "the model is left in evaluation mode, ready to sample"


def test_training_autocast_is_bfloat16_on_a_cpu_only_where_asked_and_never_under_dp_sgd():
    from synthforge.nn import adamw, training_autocast

    layer = torch.nn.Linear(4, 3)
    inputs = torch.randn(5, 4)
    cpu = torch.device("cpu")

    def output_dtype(**kwargs):
        with training_autocast(cpu, **kwargs):
            return layer(inputs).dtype

    assert output_dtype(precision="bfloat16") == torch.bfloat16
    assert output_dtype(precision="float32") == torch.float32
    assert output_dtype(precision="bfloat16", private=True) == torch.float32  # per-row norms from float32
    assert output_dtype(precision="bfloat16") == torch.bfloat16  # the same context manager enters again
    optimiser = adamw(layer.parameters(), TrainingParams(learning_rate=0.01, weight_decay=0.1), cpu)
    assert optimiser.defaults["fused"] and optimiser.defaults["weight_decay"] == 0.1
    before = layer.weight.detach().clone()
    layer(inputs).sum().backward()
    optimiser.step()
    assert not torch.equal(before, layer.weight)


def test_fast_dropout_drops_p_of_every_lane_scales_the_rest_and_follows_the_seed():
    dropout = FastDropout(0.1)
    inputs = torch.ones(400_000, requires_grad=True)
    torch.manual_seed(0)
    outputs = dropout(inputs)
    dropped = outputs == 0
    # each of a 64-bit word's four lanes drops a tenth (torch's int64 words leave one lane's top bit clear)
    assert torch.allclose(dropped.view(-1, 4).float().mean(dim=0), torch.full((4,), 0.1), atol=0.004)
    kept = outputs[~dropped].unique()  # one scale for every kept value, so that the mean stays the input's
    assert kept.numel() == 1 and abs(kept.item() - 1 / (1 - 0.1)) < 1e-3
    assert abs(outputs.mean().item() - 1.0) < 0.005
    outputs.sum().backward()
    assert torch.equal(inputs.grad, outputs.detach())  # the gradient goes through the same mask and scale
    torch.manual_seed(0)
    assert torch.equal(dropout(inputs), outputs)
    dropout.train(False)
    assert dropout(inputs) is inputs
    assert FastDropout(0.0)(inputs) is inputs
    with pytest.raises(ValueError, match="below 1"):
        FastDropout(1.0)


def test_the_environment_forces_the_float32_or_the_bfloat16_path_that_auto_would_pick(monkeypatch):
    from synthforge.nn.training import BFLOAT16_ENV

    monkeypatch.setenv(BFLOAT16_ENV, "off")
    assert not use_bfloat16("auto") and use_bfloat16("bfloat16")  # an explicit precision is kept
    assert _product_dtype("auto") == torch.float32
    monkeypatch.setenv(BFLOAT16_ENV, "on")
    assert use_bfloat16("auto") and not use_bfloat16("float32")
    assert _product_dtype("auto") == torch.bfloat16
    monkeypatch.setenv(BFLOAT16_ENV, "auto")
    detected = use_bfloat16("auto")
    monkeypatch.delenv(BFLOAT16_ENV)
    assert use_bfloat16("auto") == detected
    monkeypatch.setenv(BFLOAT16_ENV, "maybe")
    with pytest.raises(SynthForgeError, match="SYNTHFORGE_BFLOAT16='maybe' is not one of auto, off, on"):
        use_bfloat16("auto")


def _product_dtype(precision: str) -> torch.dtype:
    """The dtype of a matrix product in a training step's forward pass at ``precision``."""
    x = torch.ones(4, 4)
    with training_autocast(torch.device("cpu"), precision):
        return (x @ x).dtype

"""The torch half of ``synthforge.nn`` (see its docstring): devices, the training loop, weights as arrays."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from synthforge.errors import SynthForgeError
from synthforge.generator import FitContext
from synthforge.nn.params import TrainingParams


def resolve_device(name: str = "auto") -> torch.device:
    """The device a recipe asked for; ``auto`` prefers CUDA, then MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SynthForgeError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SynthForgeError(f"device {name!r} was asked for, but torch sees no CUDA GPU here; use `device: auto`.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SynthForgeError("device 'mps' was asked for, but this machine has no MPS backend; use `device: auto`.")
    return device


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) % 2**63)
    return generator


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    out_of_time: bool = False  # stopped by ``max_training_time``
    out_of_budget: bool = False  # stopped before an epoch the privacy budget could not pay for
    seconds: float = 0.0


#: Blocks of streamed rows shuffled together into batches (StreamedRows), and the validation rows kept of them.
SHUFFLE_BLOCKS = 16
MAX_STREAMED_VALIDATION_ROWS = 20_000


class StreamedRows:
    """Training rows streamed from disk (:class:`synthforge.data.streaming.EncodedRows`) for :func:`train`.

    ``transform`` turns a block of encoded rows into the model's input (tokens, a rescaling) on ``device``. Each
    epoch reads the blocks in a seeded order, :data:`SHUFFLE_BLOCKS` at a time, shuffles the rows of those
    blocks together and cuts them into batches, so memory holds a few blocks, never the table; a row's batch
    mates come from sixteen random blocks, not the whole table (the usual price of a shuffle buffer).
    """

    def __init__(self, rows: Any, transform: Callable[[np.ndarray], Any], device: torch.device) -> None:
        self.rows, self.transform, self.device = rows, transform, device

    def __len__(self) -> int:
        return len(self.rows)

    def _tensor(self, encoded: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.transform(encoded), device=self.device)

    def split(self, fraction: float, rng: torch.Generator) -> tuple[torch.Tensor | None, list[int]]:
        """Held-back blocks' rows (at most MAX_STREAMED_VALIDATION_ROWS of them) and the training blocks."""
        order = torch.randperm(self.rows.blocks, generator=rng).tolist()
        held = max(round(len(order) * fraction), 1) if fraction and len(order) > 1 else 0
        if not held:
            return None, order
        kept, rows = [], 0
        for index in order[:held]:
            if rows >= MAX_STREAMED_VALIDATION_ROWS:
                break
            kept.append(self.rows.block(index)[: MAX_STREAMED_VALIDATION_ROWS - rows])
            rows += len(kept[-1])
        return self._tensor(np.concatenate(kept)), order[held:]

    def _block_length(self, block: int) -> int:
        last = self.rows.blocks - 1
        return len(self.rows) - last * self.rows.block_rows if block == last else self.rows.block_rows

    def training_rows(self, blocks: list[int]) -> int:
        return sum(self._block_length(b) for b in blocks)

    def batches(self, blocks: list[int], batch_size: int, steps: int, rng: torch.Generator) -> Iterator[torch.Tensor]:
        order = [blocks[i] for i in torch.randperm(len(blocks), generator=rng).tolist()]
        carried: torch.Tensor | None = None
        given = 0
        for start in range(0, len(order), SHUFFLE_BLOCKS):
            pooled = self._tensor(np.concatenate([self.rows.block(b) for b in order[start : start + SHUFFLE_BLOCKS]]))
            if carried is not None:
                pooled = torch.cat([carried, pooled])
            pooled = pooled[torch.randperm(len(pooled), generator=rng).to(pooled.device)]
            whole = len(pooled) // batch_size * batch_size
            for offset in range(0, whole, batch_size):
                if given == steps:
                    return
                yield pooled[offset : offset + batch_size]
                given += 1
            carried = pooled[whole:]

    def skip(self, blocks: list[int], batch_size: int, steps: int, rng: torch.Generator) -> None:
        """Draw from ``rng`` what :meth:`batches` draws for an epoch, reading no block: the draws depend on the
        blocks' lengths alone. A worker resuming from a checkpoint replays its trained epochs so."""
        order = [blocks[i] for i in torch.randperm(len(blocks), generator=rng).tolist()]
        carried = given = 0
        for start in range(0, len(order), SHUFFLE_BLOCKS):
            pooled = carried + sum(self._block_length(b) for b in order[start : start + SHUFFLE_BLOCKS])
            torch.randperm(pooled, generator=rng)
            whole = pooled // batch_size * batch_size
            for _ in range(0, whole, batch_size):  # batches' own control flow, so the draws end where its end
                if given == steps:
                    return
                given += 1
            carried = pooled - whole


def training_rows(data: Any, transform: Callable[[np.ndarray], Any], device: torch.device) -> Any:
    """What a plugin's ``_train`` hands :func:`train` as ``data``: ``transform(data)`` as a tensor on ``device``,
    or, for rows streamed from disk (a streamed run), :class:`StreamedRows` that transform each block."""
    from synthforge.data.streaming import EncodedRows

    if isinstance(data, EncodedRows):
        return StreamedRows(data, transform, device)
    return torch.as_tensor(transform(data), device=device)


def train(
    *,
    data: torch.Tensor | StreamedRows,
    step: Callable[[torch.Tensor, int], dict[str, float]],
    modules: Iterable[torch.nn.Module],
    params: TrainingParams,
    context: FitContext,
    validation_loss: Callable[[torch.Tensor], float] | None = None,
    description: str = "training",
) -> History:
    """Run ``step(batch, epoch)`` over shuffled batches for up to ``params.epochs`` epochs.

    ``step`` does the forward pass, the backward pass and the optimiser update(s),
    and returns the batch's losses by name. With ``validation_loss`` and a
    validation fraction above 0, the rows are split once (seeded), the validation
    loss is computed after each epoch, and training stops after ``patience`` epochs
    without improvement, restoring the weights of the best epoch.
    """
    modules = list(modules)
    private = context.private_training
    if context.privacy is not None and private is None:
        raise SynthForgeError(f"{description}: under a privacy budget the optimiser must come from "
                              f"synthforge.nn.make_private, so that every step is clipped, noised and charged.")
    rng = context.torch_generator("batches")
    validation_fraction = getattr(params, "validation_fraction", 0.0)  # EarlyStopping params
    streamed = isinstance(data, StreamedRows)
    if streamed:
        if private is not None:
            raise SynthForgeError(f"{description}: DP-SGD samples rows from the whole table; it does not train on "
                                  f"rows streamed from disk (set source.streaming: false).")
        validation, blocks = data.split(validation_fraction if validation_loss is not None else 0.0, rng)
        training_count = data.training_rows(blocks)
    else:
        rows = data.shape[0]
        permutation = torch.randperm(rows, generator=rng)
        # Under DP no rows are held back: a validation loss read each epoch would be a look at them the budget
        # does not pay for; the schedule decides the end.
        n_validation = int(rows * validation_fraction) if validation_loss is not None and private is None else 0
        if n_validation and rows - n_validation < 2:
            n_validation = 0
        validation = data[permutation[:n_validation].to(data.device)] if n_validation else None
        training = data[permutation[n_validation:].to(data.device)]
        training_count = training.shape[0]
    batch_size = min(params.batch_size, training_count)
    steps_per_epoch = private.steps_per_epoch if private else max(training_count // batch_size, 1)

    history = History()
    best_loss, best_state, since_best = math.inf, None, 0
    started = time.perf_counter()
    distributed = context.distributed
    hooks = []
    if distributed is not None:
        from synthforge.nn.collective import agree, average_gradients

        hooks = average_gradients(modules, distributed.world)
        history.epochs = list(distributed.restored_epochs)
        batch_size = max(batch_size, distributed.world)
    with _progress(context.progress, description, params.epochs, context.log) as advance:
        for epoch in range(1, params.epochs + 1):
            if private is not None and not _charged(private, history):
                break
            if distributed is not None and epoch <= distributed.start_epoch:
                # trained before a worker was lost (its weights came back from the checkpoint): the same draws
                # from the batch stream as the epoch had, so the epochs after it see the batches they would have
                if streamed:
                    data.skip(blocks, batch_size, steps_per_epoch, rng)
                else:
                    for _ in _batches(training, batch_size, steps_per_epoch, private, rng):
                        pass
                continue
            batches = (data.batches(blocks, batch_size, steps_per_epoch, rng) if streamed
                       else _batches(training, batch_size, steps_per_epoch, private, rng))
            for module in modules:
                module.train()
            sums: dict[str, float] = {}
            for batch in batches:
                if batch is None:
                    private.empty_step()
                    continue
                if distributed is not None:  # this worker's share of the batch; the gradients are averaged
                    batch = batch[distributed.rank :: distributed.world]
                for name, value in step(batch, epoch).items():
                    sums[name] = sums.get(name, 0.0) + float(value)
            metrics = {name: total / steps_per_epoch for name, total in sums.items()}
            if distributed is not None and metrics:
                metrics = dict(zip(metrics, agree(list(metrics.values())), strict=True))
            if validation is not None and validation_loss is not None:
                for module in modules:
                    module.train(False)  # evaluation mode
                with torch.no_grad():
                    metrics["val_loss"] = float(validation_loss(validation))
                if distributed is not None:
                    metrics["val_loss"] = agree([metrics["val_loss"]])[0]
                if metrics["val_loss"] < best_loss - 1e-6:
                    best_loss, since_best, history.best_epoch = metrics["val_loss"], 0, epoch
                    best_state = [copy.deepcopy(module.state_dict()) for module in modules]
                else:
                    since_best += 1
            for value in metrics.values():
                if not math.isfinite(value):
                    raise SynthForgeError(
                        f"{description} diverged at epoch {epoch} (a loss became {value}); lower learning_rate "
                        f"or check the data for extreme values."
                    )
            history.epochs.append({"epoch": epoch, **metrics})
            if context.on_epoch_end is not None:
                context.on_epoch_end(epoch, metrics)
            if context.on_progress is not None:
                context.on_progress(epoch, params.epochs)
            advance(epoch, metrics)
            patience_out = bool(getattr(params, "patience", 0) and since_best >= params.patience)
            budget = getattr(params, "max_training_time", None)
            time_out = bool(budget and time.perf_counter() - started >= budget and epoch < params.epochs)
            if distributed is not None:  # every worker stops at the same epoch, or the others would wait forever
                patience_out, time_out = (bool(flag) for flag in agree([patience_out, time_out], op="max"))
                history.seconds = time.perf_counter() - started
                if not (patience_out or time_out):
                    distributed.report(epoch, metrics, history)
            if patience_out:
                history.stopped_early = True
                break
            if time_out:
                history.stopped_early = history.out_of_time = True
                break
    for handle in hooks:
        handle.remove()
    if private is not None:
        private.close()
    if best_state is not None:
        for module, state in zip(modules, best_state, strict=True):
            module.load_state_dict(state)
    for module in modules:
        module.train(False)
    if not history.best_epoch:
        history.best_epoch = len(history.epochs)
    history.seconds = time.perf_counter() - started
    return history


def _batches(training: torch.Tensor, batch_size: int, steps: int, private: Any,
             rng: torch.Generator) -> Iterator[torch.Tensor | None]:
    """An epoch's batches of in-memory rows: a seeded permutation cut in order, or under DP-SGD each step's
    Poisson sample (None for an empty one)."""
    order = torch.randperm(training.shape[0], generator=rng).to(training.device)
    for index in range(steps):
        if private is not None:
            chosen = private.batch(training.shape[0], training.device)
            yield training[chosen] if len(chosen) else None
        else:
            yield training[order[index * batch_size : (index + 1) * batch_size]]


def _charged(private: Any, history: History) -> bool:
    """Charge the next epoch to the privacy budget; False (and the history says why) when it cannot pay."""
    from synthforge.privacy.accountant import BudgetExceeded

    try:
        private.charge_epoch()
    except BudgetExceeded:
        history.stopped_early = history.out_of_budget = True
        return False
    return True


def one_cycle(optimiser: torch.optim.Optimizer, params: TrainingParams, rows: int,
              context: FitContext | None = None) -> Callable[[], None]:
    """A one-cycle schedule (5% warm-up, cosine decay to zero) over ``params.epochs`` of ``rows`` rows.

    Returns the function to call after each optimiser step; it stops stepping at the
    schedule's end, so an estimate of the steps that falls one short does no harm. Given
    the ``context`` of a worker that resumes from a checkpoint, it starts where those
    epochs left it.
    """
    training_rows = rows - int(rows * getattr(params, "validation_fraction", 0.0))
    steps_per_epoch = max(training_rows // min(params.batch_size, max(training_rows, 1)), 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=params.learning_rate, total_steps=params.epochs * steps_per_epoch + 1, pct_start=0.05,
        anneal_strategy="cos")

    def advance() -> None:
        if schedule.last_epoch < schedule.total_steps - 1:
            schedule.step()

    resumed = getattr(getattr(context, "distributed", None), "start_epoch", 0)
    for _ in range(resumed * steps_per_epoch):
        advance()
    return advance


class _progress:
    """A rich progress bar (epochs, losses, ETA) when asked for; otherwise, given a ``log``, a line at the
    first epoch, every tenth of the epochs and the last (a job's log, a terminal-less run); else nothing."""

    def __init__(self, enabled: bool, description: str, total: int,
                 log: Callable[[str], None] | None = None) -> None:
        self.enabled, self.description, self.total, self.log = enabled, description, total, log

    def __enter__(self) -> Callable[[int, dict[str, float]], None]:
        if not self.enabled:
            return self._lines() if self.log is not None else (lambda epoch, metrics: None)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[losses]}"), TimeRemainingColumn(), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task(self.description, total=self.total, losses="")

        def advance(epoch: int, metrics: dict[str, float]) -> None:
            losses = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            self.bar.update(task, completed=epoch, losses=losses)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(None, None, None)

    def _lines(self) -> Callable[[int, dict[str, float]], None]:
        log, every, started = self.log, max(1, self.total // 10), time.perf_counter()
        assert log is not None

        def advance(epoch: int, metrics: dict[str, float]) -> None:
            if epoch == 1 or epoch % every == 0 or epoch == self.total:
                elapsed = time.perf_counter() - started
                left = elapsed / epoch * (self.total - epoch)
                losses = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                log(f"{self.description}: epoch {epoch}/{self.total}, {losses}; {elapsed:,.0f} s, "
                    f"about {left:,.0f} s left")

        return advance


#: What ``auto`` precision means on this machine: ``auto`` (the default) detects whether the CPU multiplies
#: bfloat16 natively; ``off`` takes the float32 path a CPU without it takes (so a machine with it can run what
#: such a CPU runs, as CI does for the tests that depend on training); ``on`` takes bfloat16, emulated where the
#: CPU lacks it (slow, but the same path). A model's explicit ``float32`` or ``bfloat16`` is kept either way.
BFLOAT16_ENV = "SYNTHFORGE_BFLOAT16"
_BFLOAT16_CHOICES = {"": None, "auto": None, "off": False, "0": False, "false": False, "on": True, "1": True,
                     "true": True}


def use_bfloat16(precision: str) -> bool:
    """Whether a model's matrix products (training or sampling) should run in bfloat16: ``bfloat16``/``float32``
    as asked, ``auto`` where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), about twice float32's
    throughput there, unless :data:`BFLOAT16_ENV` says otherwise."""
    if precision != "auto":
        return precision == "bfloat16"
    text = os.environ.get(BFLOAT16_ENV, "").strip().lower()
    if text not in _BFLOAT16_CHOICES:
        raise SynthForgeError(f"{BFLOAT16_ENV}={text!r} is not one of auto, off, on: auto detects whether the CPU "
                              f"multiplies bfloat16 natively, off takes the float32 path, on takes bfloat16.")
    forced = _BFLOAT16_CHOICES[text]
    if forced is not None:
        return forced
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    return bool(native()) or bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def training_autocast(device: torch.device, precision: str, private: bool = False) -> torch.autocast:
    """The autocast a training step's forward pass runs under (``train_precision`` of
    :class:`synthforge.nn.PrecisionTrainingParams`): bfloat16 matrix products on a CPU as ``precision`` says;
    float32 on a GPU and under DP-SGD, whose per-row gradient norms are taken from float32 activations."""
    enabled = device.type == "cpu" and not private and use_bfloat16(precision)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def adamw(parameters: Iterable[torch.nn.Parameter], params: TrainingParams,
          device: torch.device) -> torch.optim.AdamW:
    """AdamW at ``params``' learning rate and weight decay, its update fused into one kernel where torch has one
    for the device (on Adult's autoregressive model a CPU step took 6.7 ms fused, 7.5 ms as a loop of tensors)."""
    return torch.optim.AdamW(parameters, lr=params.learning_rate, weight_decay=params.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


class FastDropout(torch.nn.Module):
    """``torch.nn.Dropout`` (zero each input with probability ``p``, scale the rest up), its mask cut from 64-bit
    random words, four 15-bit lanes each.

    On a CPU ``nn.Dropout`` draws its mask one Bernoulli variable at a time: 0.8 ms of a 17 ms training step for
    a 512 × 128 mask on a 2-core EPYC, where drawing the same mask's words in bulk takes 0.15 ms. ``p`` is
    rounded to a multiple of 2⁻¹⁵, and the kept inputs are scaled by the inverse of the exact keep rate. The words
    come from torch's global generator, as ``nn.Dropout``'s do, so a run's seed fixes them. It has no weights, so
    it replaces ``nn.Dropout`` in a saved model's layout.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"a dropout probability must be at least 0 and below 1, not {p}")
        self.p = p
        self.threshold = round(p * 2**15)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.threshold:
            return inputs
        count = inputs.numel()
        words = torch.empty((count + 3) // 4, dtype=torch.int64, device=inputs.device).random_()
        # torch draws int64 words below 2**63, so one lane in four has its top bit clear: 15 random bits a lane
        lanes = words.view(torch.int16)[:count].view(inputs.shape) & 0x7FFF
        return inputs * (lanes >= self.threshold) * (2**15 / (2**15 - self.threshold))


def forward_in_chunks(module: torch.nn.Module, inputs: torch.Tensor, rows: int = 4096,
                      bfloat16: bool = False) -> torch.Tensor:
    """``module(inputs)`` without gradients, ``rows`` at a time, in float32 out; with ``bfloat16`` the
    matrix products run in bfloat16 (autocast). Sampling-sized batches of wide activations fall out of the
    CPU's caches: a 32,561-row pass of the gan generator took 0.22 s at once, 0.14 s in 4,096-row chunks,
    0.07 s in bfloat16 chunks."""
    with torch.no_grad(), torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bfloat16):
        return torch.cat([module(inputs[start : start + rows]).float() for start in range(0, len(inputs), rows)])


def module_arrays(module: torch.nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """A module's parameters and buffers as numpy arrays, keyed for safetensors."""
    return {f"{prefix}{name}": tensor.detach().cpu().contiguous().numpy()
            for name, tensor in module.state_dict().items()}


def load_module_arrays(module: torch.nn.Module, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
    state = {name[len(prefix):]: torch.from_numpy(np.array(value))
             for name, value in arrays.items() if name.startswith(prefix)}
    module.load_state_dict(state)


__all__ = ["FastDropout", "History", "StreamedRows", "adamw", "forward_in_chunks", "load_module_arrays",
           "module_arrays", "one_cycle", "resolve_device", "torch_generator", "train", "training_autocast",
           "training_rows", "use_bfloat16"]

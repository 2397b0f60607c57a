"""Data-parallel training on Ray Train: ``generator.workers: N`` trains one model on N workers.

:func:`train_on_ray` sends the built generator (encoder fitted, modules initialised
from the seed) and its encoded rows to N workers of Ray Train's ``TorchTrainer``,
which starts them, joins them in one ``torch.distributed`` process group (gloo on
the CPU, NCCL on GPUs), restarts the group from the last checkpoint when a worker
dies (``FailureConfig``), and keeps the checkpoints in a storage path every worker
can reach. Each worker runs the plugin's own ``_train`` unchanged: the shared loop
(:func:`synthforge.nn.train`) sees ``context.distributed`` and

- gives each worker every N-th row of each batch (the batch, the steps per epoch
  and the learning-rate schedule are those of one process; each worker does 1/N
  of the arithmetic);
- averages the gradients over the workers after each backward pass — DDP's
  all-reduce, hooked on the declared modules' parameters, so a plugin that calls
  its submodules directly needs no wrapper;
- averages the epoch's losses, and decides early stopping and ``max_training_time``
  together (a maximum over the workers), so every worker stops at the same epoch;
- has worker 0 report a checkpoint (the modules' weights in safetensors, the
  history as JSON) every ``checkpoint_every`` epochs and at the end.

The driver loads the last checkpoint into its generator: the result is one model,
saved as a single-process one is. The same seed and N give the same model. The
rows' order, the validation split and the initial weights come from the run's seed
exactly as in one process; only the sums' order differs, so N = 2 is close to, not
bit-equal with, N = 1.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synthforge.errors import SynthForgeError
from synthforge.generator import FitContext

WEIGHTS_FILE = "weights.safetensors"
HISTORY_FILE = "history.json"


@dataclass
class DistributedTraining:
    """What the loop of one worker knows about the others (``context.distributed``)."""

    rank: int
    world: int
    #: epochs already trained (restored from a checkpoint after a worker was lost)
    start_epoch: int = 0
    restored_epochs: list[dict[str, float]] = field(default_factory=list)
    checkpoint_every: int = 1
    #: set by the worker: ``report(epoch, metrics, history, final)``; worker 0's calls carry a checkpoint
    report: Any = None
    restarts: int = 0
    #: the epoch each restart resumed after, in order
    resumed_after: list[int] = field(default_factory=list)


def train_on_ray(generator: Any, data: Any, context: FitContext) -> Any:
    """Train ``generator`` (built, its modules on the CPU) on ``context.workers`` Ray Train workers; return the
    history, with the trained weights loaded into the generator's modules."""
    try:
        import ray
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        raise SynthForgeError("generator.workers above 1 trains on Ray Train: pip install 'synthforge[ray]'.") from None

    from synthforge.jobs.partitioned import init_ray
    from synthforge.nn.training import History

    if context.privacy is not None:
        raise SynthForgeError("generator.workers above 1 does not train under a privacy budget yet (each worker's "
                              "clipping and noise would have to be accounted together); use workers: 1.")
    init_ray(context.ray_address)
    use_gpu = generator.device_.type == "cuda"
    storage = Path(context.train_storage or tempfile.mkdtemp(prefix="synthforge-train-")).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    worker_context = replace(context, log=None, on_epoch_end=None, on_progress=None, progress=False, workers=1)
    payload = ray.put((generator, data, worker_context))
    threads = context.threads_per_worker or 1
    name = f"{generator.name}-{time.strftime('%Y%m%d-%H%M%S')}-{id(generator) % 100_000:05d}"
    if context.log is not None:
        context.log(f"{generator.name}: training on {context.workers} Ray Train workers ({'GPU' if use_gpu else 'CPU'}"
                    f", {threads} thread(s) each); checkpoints in {storage / name}")
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"payload": payload, "threads": threads, "use_gpu": use_gpu,
                           "checkpoint_every": context.checkpoint_every},
        scaling_config=ScalingConfig(num_workers=context.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": threads}),
        run_config=RunConfig(name=name, storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=context.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    try:
        result = trainer.fit()
    except Exception as error:  # Ray Train's own error types vary by version; say what happened, keep the cause
        raise SynthForgeError(f"{generator.name}: training on Ray Train failed: {error}") from error
    if result.checkpoint is None:
        raise SynthForgeError(f"{generator.name}: Ray Train finished without a checkpoint ({result.error}).")
    with result.checkpoint.as_directory() as folder:
        epochs, state = _load_checkpoint(generator, Path(folder))
    history = History(epochs=epochs, best_epoch=state.get("best_epoch", len(epochs)),
                      stopped_early=state.get("stopped_early", False), out_of_time=state.get("out_of_time", False),
                      seconds=state.get("seconds", 0.0))
    history.restarts = state.get("restarts", 0)  # type: ignore[attr-defined]
    history.resumed_after = state.get("resumed_after", [])  # type: ignore[attr-defined]
    for epoch in epochs:  # the run's epoch hooks hear every epoch, once training is back
        metrics = {k: v for k, v in epoch.items() if k != "epoch"}
        if context.on_epoch_end is not None:
            context.on_epoch_end(int(epoch["epoch"]), metrics)
        if context.on_progress is not None:
            context.on_progress(int(epoch["epoch"]), int(getattr(generator.params, "epochs", len(epochs))))
    if context.log is not None and history.restarts:
        context.log(f"{generator.name}: {history.restarts} worker restart(s); resumed from the last checkpoint")
    return history


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the plugin's own ``_train`` with ``context.distributed`` set."""
    import ray
    import ray.train
    import torch

    from synthforge.generator import seed_everything

    generator, data, context = ray.get(config["payload"])
    torch.set_num_threads(config["threads"])
    train_context = ray.train.get_context()
    rank, world = train_context.get_world_rank(), train_context.get_world_size()
    # A fresh process: the global streams (dropout's masks) seeded per worker, so each half-batch has its own
    # masks and the same seed and N give the same model.
    seed_everything(context.seed_for("global", "worker", rank), torch=True)
    distributed = DistributedTraining(rank, world, checkpoint_every=config["checkpoint_every"])
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            epochs, state = _load_checkpoint(generator, Path(folder))
        distributed.start_epoch, distributed.restored_epochs = len(epochs), epochs
        distributed.restarts = state.get("restarts", 0) + 1
        distributed.resumed_after = [*state.get("resumed_after", []), len(epochs)]
    generator.device_ = torch.device("cuda", train_context.get_local_rank()) if config["use_gpu"] \
        else torch.device("cpu")
    for module in generator.weight_modules():
        module.to(generator.device_)

    def report(epoch: int, metrics: dict[str, float], history: Any, final: bool = False) -> None:
        checkpoint = None
        if rank == 0 and (final or epoch % distributed.checkpoint_every == 0):
            folder = Path(tempfile.mkdtemp(prefix="synthforge-checkpoint-"))
            _save_checkpoint(generator, folder, history, final, distributed)
            checkpoint = ray.train.Checkpoint.from_directory(str(folder))
        ray.train.report({"epoch": epoch, "final": final, **metrics}, checkpoint=checkpoint)

    distributed.report = report
    history = generator._train(data, replace(context, distributed=distributed))
    report(len(history.epochs), {}, history, final=True)


def _save_checkpoint(generator: Any, folder: Path, history: Any, final: bool,
                     distributed: DistributedTraining) -> None:
    from safetensors.numpy import save_file

    save_file(generator.weight_arrays(), str(folder / WEIGHTS_FILE))
    (folder / HISTORY_FILE).write_text(json.dumps({
        "epochs": history.epochs, "best_epoch": history.best_epoch, "stopped_early": history.stopped_early,
        "out_of_time": history.out_of_time, "seconds": history.seconds, "final": final,
        "restarts": distributed.restarts, "resumed_after": distributed.resumed_after}))


def _load_checkpoint(generator: Any, folder: Path) -> tuple[list[dict[str, float]], dict[str, Any]]:
    from safetensors.numpy import load_file

    generator.load_weight_arrays(load_file(str(folder / WEIGHTS_FILE)))
    state = json.loads((folder / HISTORY_FILE).read_text())
    return list(state.pop("epochs")), state

"""Shared machinery for neural generator plugins, so that a plugin's own file is its model and its loss.

- :class:`TorchGenerator`: the skeleton of a torch generator (device, moves, the declared
  modules' weights in safetensors, the history); a plugin implements ``_build`` and ``_train``
  (importable without torch);
- :class:`TrainingParams`: the usual training knobs, with defaults, to subclass (and
  :class:`EarlyStopping` to mix in for a model a validation loss stops, :class:`OneHotModelParams`
  with the encoding and calibration knobs of the VAE and the GAN, :class:`PrecisionSampleParams`
  for sampling in bfloat16, :class:`PrecisionTrainingParams` for training in it) (importable
  without torch, so a plugin's ``Params`` cost nothing at start-up);
- :func:`resolve_device`: ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` to a device;
- :func:`torch_generator`: a seeded ``torch.Generator`` on that device;
- :func:`train`: the loop — seeded shuffling, batching, a validation split,
  early stopping that restores the best weights, a per-epoch hook, and a rich
  progress bar with the losses and an ETA; :func:`training_rows` gives it a plugin's rows,
  in memory or (a streamed run) as :class:`StreamedRows` read from disk a few blocks at a time;
- :func:`adamw`: AdamW, fused where torch has a kernel for the device; :func:`training_autocast`: a
  training step's forward pass in bfloat16 where the CPU has it natively;
- :class:`FastDropout`: ``nn.Dropout`` with its mask drawn in bulk (a fifth of the time on a CPU);
- :func:`forward_in_chunks`: a module's output for many rows, cache-sized chunks at a time,
  in bfloat16 where :func:`use_bfloat16` says the CPU has it natively;
- :func:`make_private`: the optimiser as DP-SGD under a run's privacy budget (``synthforge.nn.private``);
- :func:`one_cycle`: the warm-up and cosine decay of the learning rate over the epochs;
- :func:`module_arrays` / :func:`load_module_arrays`: a module's weights as numpy
  arrays for safetensors (the base class writes them; never pickle);
- :class:`CategoricalConditions`: the condition input of generators that learn to
  condition on categorical values.

Everything but the params and :class:`TorchGenerator` lives in ``synthforge.nn.training`` or
``synthforge.nn.conditions`` and is imported, with torch, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthforge.nn.generator import CalibratedTorchGenerator, TorchGenerator
from synthforge.nn.params import (
    ConditionalTrainingParams,
    EarlyStopping,
    OneHotModelParams,
    Precision,
    PrecisionSampleParams,
    PrecisionTrainingParams,
    TrainingParams,
)

if TYPE_CHECKING:
    from synthforge.nn.conditions import CategoricalConditions
    from synthforge.nn.private import make_private
    from synthforge.nn.training import (
        FastDropout,
        History,
        StreamedRows,
        adamw,
        forward_in_chunks,
        load_module_arrays,
        module_arrays,
        one_cycle,
        resolve_device,
        torch_generator,
        train,
        training_autocast,
        training_rows,
        use_bfloat16,
    )

_TORCH_NAMES = {"FastDropout", "History", "StreamedRows", "adamw", "forward_in_chunks", "load_module_arrays",
                "make_private", "module_arrays", "one_cycle", "resolve_device", "torch_generator", "train",
                "training_autocast", "training_rows", "use_bfloat16"}
__all__ = ["CalibratedTorchGenerator", "CategoricalConditions", "ConditionalTrainingParams", "EarlyStopping",
           "FastDropout", "History", "OneHotModelParams", "Precision", "PrecisionSampleParams",
           "PrecisionTrainingParams", "StreamedRows", "TorchGenerator", "TrainingParams", "adamw", "forward_in_chunks",
           "load_module_arrays", "make_private", "module_arrays", "one_cycle", "resolve_device", "torch_generator",
           "train", "training_autocast", "training_rows", "use_bfloat16"]


def __getattr__(name: str) -> Any:
    if name == "CategoricalConditions":
        from synthforge.nn.conditions import CategoricalConditions

        return CategoricalConditions
    if name == "make_private":
        from synthforge.nn.private import make_private

        return make_private
    if name in _TORCH_NAMES:
        from synthforge.nn import training

        return getattr(training, name)
    raise AttributeError(f"module 'synthforge.nn' has no attribute {name!r}")

"""The skeleton every torch generator shares, so that a plugin's file is its model and its loss.

A torch plugin subclasses :class:`TorchGenerator`, names the modules whose weights it
saves, and implements what only it knows::

    class MyGenerator(TorchGenerator):
        name = "mymodel"
        Params = MyParams
        weights = {"decoder_": "decoder."}          # module attribute → prefix in weights.safetensors

        def _build(self) -> None: ...               # create self.decoder_ from self.encoder_ and self.params
        def _train(self, data, context) -> History: ...   # the optimiser and the loss, on self.device_,
                                                          # train(data=training_rows(data, transform, device), …)
        def _sample(self, n, conditions, rng) -> np.ndarray: ...

The base class owns the rest, the same way for every plugin: the device
(``context.device`` → ``self.device_``), moving the modules there for training and
back to the CPU (in eval mode) for sampling, the declared modules' weights in
safetensors, the training history in the saved config, and the encoding from
``Params.encoder_config()`` when the Params define one. Optional hooks:
``_prepare(data, context)`` runs before ``_build`` in ``fit`` (what the modules'
shapes depend on: bins, vocabularies), ``_after_training(data, context)`` after it
with the modules on the CPU (a calibration), and ``_extra_state()`` /
``_load_extra_state(arrays, extra)`` save and restore state beyond the modules
(the latter runs before ``_build`` on load).

A plugin whose ``_train`` passes its rows through :func:`synthforge.nn.training_rows` may declare
``supports_streaming = True``: in a streamed run ``data`` is then
:class:`synthforge.data.streaming.EncodedRows` (on disk), ``_prepare`` and ``_after_training`` get its
in-memory ``sample``, and :func:`synthforge.nn.train` reads the rows a few blocks at a time.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from synthforge.data.encoder import RARE, EncoderConfig
from synthforge.generator import FitContext, Generator

if TYPE_CHECKING:
    from synthforge.nn.training import History

EMITTED_ROUNDS = 3  # raking a calibration's category offsets on emitted rows (CalibratedTorchGenerator)


class TorchGenerator(Generator):
    """Base class of the torch generators; see the module documentation."""

    uses_torch = True
    supports_gpu = True
    #: What this skeleton implements for its subclasses, who implement _build and _train instead.
    _reserved_names: ClassVar[frozenset[str]] = frozenset({"_fit", "_get_state", "_set_state", "weight_modules",
                                                            "weight_arrays", "load_weight_arrays"})
    #: The modules whose weights are saved: attribute name → prefix of their arrays in weights.safetensors.
    weights: ClassVar[dict[str, str]] = {}

    def encoder_config(self) -> EncoderConfig:
        """The Params' ``encoder_config()`` when they define one (the encoding follows params), else ``encoding``."""
        from_params = getattr(self.params, "encoder_config", None)
        return from_params() if callable(from_params) else super().encoder_config()

    # --- what a torch plugin implements -----------------------------------------------------

    def _build(self) -> None:
        """Create the modules named in ``weights`` (and what they need) from ``self.encoder_`` and ``self.params``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _build")

    def _train(self, data: np.ndarray, context: FitContext) -> History:
        """Train the built modules, which are on ``self.device_``, and return the history of
        :func:`synthforge.nn.train`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _train")

    def _prepare(self, data: np.ndarray, context: FitContext) -> None:
        """Learn, before ``_build``, what the modules' shapes depend on."""

    def _after_training(self, data: np.ndarray, context: FitContext) -> None:
        """Fit what follows training (a calibration), with the modules on the CPU in eval mode."""

    def _extra_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON-able extras to save besides the modules' weights."""
        return {}, {}

    def _adapt_to_table(self, rows: int, columns: int) -> dict[str, Any]:
        """Model params this table's shape changes beyond batch size and epochs (only those not set by the
        user: ``self.params.model_fields_set``); applied with them before ``_prepare``."""
        return {}

    def more_private(self, step: int) -> dict[str, Any] | None:
        """Half the epochs this fit trained (a torch model memorises the rows of a small table over its epochs:
        on 12 small public tables, 180 epochs failed a privacy gate in 10 runs, 100 in 5, 60 in 4), down to 1."""
        epochs = getattr(self.params, "epochs", None)
        if not isinstance(epochs, int) or epochs <= 1:
            return None
        return {"epochs": max(1, epochs // 2)}

    def _private_defaults(self, rows: int) -> dict[str, Any]:
        """Params that suit DP-SGD better than the defaults (fewer, larger steps; a smaller network), applied
        under a privacy budget to those the user did not set."""
        return {}

    def _load_extra_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        """Restore what ``_extra_state`` saved; runs before ``_build``."""

    # --- the skeleton -------------------------------------------------------------------------

    def weight_modules(self) -> list[Any]:
        """The modules named in ``weights``, in their order."""
        return [getattr(self, attribute) for attribute in self.weights]

    def _fit(self, data: np.ndarray, context: FitContext) -> None:
        from synthforge.data.streaming import EncodedRows
        from synthforge.nn.training import resolve_device

        # rows streamed from disk: what is learned before and after training comes from their sample
        in_memory = data.sample if isinstance(data, EncodedRows) else data
        self.device_ = resolve_device(context.device)
        self._adapt_params(len(data), context)
        self._prepare(in_memory, context)
        self._build()
        if context.workers > 1:  # data-parallel on Ray Train; the weights come back into these modules
            from synthforge.nn.distributed import train_on_ray

            self.history_ = train_on_ray(self, data, context)
        else:
            for module in self.weight_modules():
                module.to(self.device_)
            self.history_ = self._train(data, context)
        for module in self.weight_modules():
            module.cpu()
            module.train(False)
        self._after_training(in_memory, context)

    def _adapt_params(self, rows: int, context: FitContext) -> None:
        """Params chosen from the table's shape (:meth:`TrainingParams.adapted_to`) and, under a privacy budget,
        :meth:`_private_defaults`, logged and kept in ``self.params``, so that the manifest and the saved model
        say what was trained."""
        adapted = getattr(self.params, "adapted_to", None)
        changes: dict[str, Any] = {}
        if callable(adapted) and getattr(self.params, "adapt_to_table", False):
            changes = adapted(rows) | self._adapt_to_table(rows, len(self.encoder_.columns))
        if context.privacy is not None:
            given = self.params.model_fields_set
            changes |= {k: v for k, v in self._private_defaults(rows).items() if k not in given}
        if not changes:
            return
        before = self.params
        given = before.model_fields_set
        self.params = type(before).model_validate({**before.model_dump(), **changes})
        self.params.__pydantic_fields_set__ = set(given)  # still only what the user set, for a refit
        if context.log is not None or context.progress:
            said = ", ".join(f"{k} {getattr(before, k)} → {v}" for k, v in changes.items())
            (context.log or print)(f"{self.name}: adapted to a {rows:,}-row table: {said} "
                                   f"(set them in the recipe, or adapt_to_table: false, to keep the defaults)")

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The declared modules' weights as numpy arrays, keyed by their ``weights`` prefixes (what
        weights.safetensors and a Ray Train checkpoint hold)."""
        from synthforge.nn.training import module_arrays

        arrays: dict[str, np.ndarray] = {}
        for attribute, prefix in self.weights.items():
            arrays |= module_arrays(getattr(self, attribute), prefix)
        return arrays

    def load_weight_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Load :meth:`weight_arrays`' arrays into the built modules."""
        from synthforge.nn.training import load_module_arrays

        for attribute, prefix in self.weights.items():
            load_module_arrays(getattr(self, attribute), arrays, prefix)

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        more, extra = self._extra_state()
        history = {"epochs_trained": len(self.history_.epochs), "best_epoch": self.history_.best_epoch}
        return {**self.weight_arrays(), **more}, {**extra, **history}

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        from synthforge.nn.training import History, resolve_device

        self._load_extra_state(arrays, extra)
        self._build()
        self.load_weight_arrays(arrays)
        for module in self.weight_modules():
            module.train(False)
        self.device_ = resolve_device("cpu")
        epochs = int(extra.get("epochs_trained", 0))
        self.history_ = History(epochs=[{}] * epochs, best_epoch=int(extra.get("best_epoch", epochs)))


class CalibratedTorchGenerator(TorchGenerator):
    """A torch generator whose samples get marginal calibration (:mod:`synthforge.nn.calibration`), fitted in
    ``_after_training`` into ``self.calibration_`` and saved with the weights (the VAE and the GAN)."""

    def _calibrate_output(self, emitted: Callable[[int], np.ndarray], context: FitContext) -> None:
        """Rake the calibration's category offsets, fitted on raw draws, on rows as a run emits them, for
        ``EMITTED_ROUNDS``: copy protection draws again the rows that single out a training record, which come
        from the sparse part of the table, so the emitted marginals lean to the common values. The round whose
        emitted rows came nearest is kept (:func:`synthforge.nn.calibration.rake_keeping_the_best`). Not under a
        privacy budget (no copy protection there, and the offsets aim at the released marginals)."""
        from synthforge.nn.calibration import mean_total_variation, rake_keeping_the_best

        calibration = self.calibration_
        targets, calibration.emitted_targets = calibration.emitted_targets, None
        if context.privacy is not None or targets is None:
            return
        pooled = self._pooled_columns()
        never_emitted = {span.start: [self.encoder_.transformer(span.column).categories_.index(RARE)]
                         for span in self.encoder_.spans_
                         if span.column in pooled and span.kind == "onehot" and span.role == "value"}
        aims = calibration.aims(targets.shares, never_emitted)
        rake_keeping_the_best(
            EMITTED_ROUNDS, lambda: calibration.emitted_shares(emitted(targets.draws)),
            lambda shares: mean_total_variation([shares[start] for start in aims], list(aims.values())),
            lambda shares: calibration.rake(shares, aims),
            lambda: calibration.logit_offset_.copy(), lambda kept: setattr(calibration, "logit_offset_", kept))

    def _extra_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self.calibration_.arrays(), {}

    def _load_extra_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        from synthforge.nn.calibration import MarginalCalibration

        self.calibration_ = MarginalCalibration(self.encoder_.spans_).load(arrays)

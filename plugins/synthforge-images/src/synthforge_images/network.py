"""What the plugin's image models share: one torch module as their fitted state, and the end of an epoch.

Each model (:mod:`~synthforge_images.diffusion`, :mod:`~synthforge_images.vae`) keeps its network in
``network_``, built by its own ``_build()`` for the padded image size ``padded_``; its weights are saved
through the core's safetensors helpers (:func:`synthforge.nn.training.module_arrays`), never pickle.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from synthforge.generator import FitContext
from synthforge.image_generator import ImageGenerator


class NetworkImageGenerator(ImageGenerator):
    """An image generator whose fitted state is one torch module, ``network_``, and the padded size it was built for."""

    def _build(self) -> Any:
        raise NotImplementedError

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        from synthforge.nn.training import module_arrays

        return module_arrays(self.network_), {"padded": list(self.padded_)}

    def _set_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        from synthforge.nn.training import load_module_arrays, resolve_device

        self.device_ = resolve_device("auto")
        self.padded_ = tuple(extra["padded"])
        self.network_ = self._build()
        load_module_arrays(self.network_, arrays)
        self.network_.to(self.device_).train(False)  # inference mode: dropout and normalisation as in sampling

    def _epoch_ended(self, epoch: int, loss: float, context: FitContext, started: float) -> bool:
        """Report an epoch's mean ``loss`` to the run (hooks, progress, a log line every tenth); whether training
        stops here because ``max_training_time`` has passed."""
        epochs, limit = self.params.epochs, self.params.max_training_time  # type: ignore[attr-defined]
        metrics = {"loss": loss}
        if context.on_epoch_end is not None:
            context.on_epoch_end(epoch, metrics)
        if context.on_progress is not None:
            context.on_progress(epoch, epochs)
        if context.log is not None and (epoch == epochs or epoch % max(epochs // 10, 1) == 0):
            context.log(f"epoch {epoch}/{epochs}: loss {loss:.4f}")
        if limit is not None and time.perf_counter() - started > limit:
            if context.log is not None:
                context.log(f"stopped after epoch {epoch}: max_training_time {limit:g}s")
            return True
        return False

"""One hierarchy for every failure a user can act on.

The CLI prints a ``SynthForgeError`` as a one-paragraph message, with no traceback,
and exits 2 (bad input: a recipe, data, a model, a plugin), or 3 for
:class:`GateFailed` (the input was fine, the output did not pass its gates); any
other exception reaching the user is a bug in SynthForge.
"""

from __future__ import annotations


class SynthForgeError(Exception):
    """A failure caused by the input, not by SynthForge: its message says what to do."""


class RecipeError(SynthForgeError):
    """A recipe that cannot be read or does not describe a valid run."""


class PluginError(SynthForgeError):
    """An unknown, duplicated or broken plugin, generator or check."""


class DataError(SynthForgeError):
    """A table that cannot be read, or whose contents cannot be learned as they are."""


class ModelError(SynthForgeError):
    """A saved model directory that is missing, damaged, or from an incompatible version."""


class ConditionError(SynthForgeError):
    """Conditions that name unknown columns or values, or that a generator cannot honour."""


class Memorised(SynthForgeError):
    """A generator that keeps reproducing rare training rows after its redraws: it has memorised them."""


class GateFailed(SynthForgeError):
    """One or more quality/privacy checks failed a gate with ``on_fail: error``."""

    def __init__(self, message: str, failures: list | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []

"""SynthForge plugin: the `autoregressive` generator."""

import synthforge
from synthforge_autoregressive.model import AutoregressiveGenerator

__all__ = ["AutoregressiveGenerator"]


@synthforge.hookimpl
def synthforge_generators() -> list[type[synthforge.Generator]]:
    return [AutoregressiveGenerator]

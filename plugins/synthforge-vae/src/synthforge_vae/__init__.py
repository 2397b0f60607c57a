"""SynthForge plugin: the `vae` generator."""

import synthforge
from synthforge_vae.model import ConditionalVAE

__all__ = ["ConditionalVAE"]


@synthforge.hookimpl
def synthforge_generators() -> list[type[synthforge.Generator]]:
    return [ConditionalVAE]

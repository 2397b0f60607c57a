"""SynthForge plugin: the `diffusion` generator (diffusers is imported only when a model fits or samples)."""

import synthforge
from synthforge_diffusion.model import TabularDiffusion

__all__ = ["TabularDiffusion"]


@synthforge.hookimpl
def synthforge_generators() -> list[type[synthforge.Generator]]:
    return [TabularDiffusion]

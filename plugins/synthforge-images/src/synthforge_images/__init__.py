"""SynthForge plugin: image generators (``source.images`` recipes)."""

import synthforge
from synthforge_images.diffusion import ImageDiffusion

__all__ = ["ImageDiffusion"]


@synthforge.hookimpl
def synthforge_generators() -> list[type]:
    return [ImageDiffusion]

"""SynthForge plugin: image generators (``source.images`` recipes)."""

import synthforge
from synthforge_images.diffusion import ImageDiffusion
from synthforge_images.vae import ImageVAE

__all__ = ["ImageDiffusion", "ImageVAE"]


@synthforge.hookimpl
def synthforge_generators() -> list[type]:
    return [ImageDiffusion, ImageVAE]

"""SynthForge plugin: the `gan` generator."""

import synthforge
from synthforge_gan.model import ConditionalGAN

__all__ = ["ConditionalGAN"]


@synthforge.hookimpl
def synthforge_generators() -> list[type[synthforge.Generator]]:
    return [ConditionalGAN]

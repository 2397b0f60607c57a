"""Named random streams: every random draw of a run follows from the recipe's one seed, by name.

A stream is named by what it is for (``"split"``, ``"encoder"``, ``"weights"``,
``("sample", 3)``), and its seed is a hash of the recipe seed and the name, so
streams never overlap and seed ``s``'s streams share nothing with seed ``s + 1``'s
(adding 1 to a seed made seed 0's second stream equal seed 1's first)::

    streams = RandomStreams(42)
    streams.rng("encoder")                     # a numpy Generator
    streams.torch_generator("noise", device)   # a seeded torch.Generator (torch imported on first use)
    streams.child("fit")                       # streams of their own for one stage

:class:`synthforge.FitContext` hands these out to plugins: ``context.rng(name)``,
``context.torch_generator(name, device)``, ``context.seed_for(name)``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def derive_seed(seed: int, *labels: Any) -> int:
    """A stable 63-bit child seed of ``seed`` for the purpose ``labels`` names."""
    text = json.dumps([seed, *labels], default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


class RandomStreams:
    """The random streams derived from one seed, each by its name."""

    def __init__(self, seed: int, *path: Any) -> None:
        self.seed = int(seed)
        self.path = path

    def __repr__(self) -> str:
        return f"RandomStreams({self.seed}{''.join(f', {part!r}' for part in self.path)})"

    def seed_for(self, *name: Any) -> int:
        """The seed of the stream ``name`` (for a library that takes a seed rather than a generator)."""
        if not name:
            raise ValueError("name the stream: seed_for('encoder'), not seed_for()")
        return derive_seed(self.seed, *self.path, *name)

    def rng(self, *name: Any) -> Any:
        """A numpy ``Generator`` for the stream ``name``."""
        import numpy as np

        return np.random.default_rng(self.seed_for(*name))

    def torch_generator(self, *name: Any, device: Any = "cpu") -> Any:
        """A ``torch.Generator`` on ``device`` for the stream ``name``."""
        import torch

        generator = torch.Generator(device=device)
        generator.manual_seed(self.seed_for(*name))
        return generator

    def child(self, *name: Any) -> RandomStreams:
        """The streams of one part of the run, named apart from every other part's."""
        return RandomStreams(self.seed, *self.path, *name)

"""SynthForge: learn a real table, produce synthetic or augmented versions of it, with proof.

The public API, mirroring the CLI::

    import synthforge
    result = synthforge.run_recipe("recipes/adult-synthesize.yaml")
    model = synthforge.fit(frame, generator="copula", seed=0)
    synthetic = model.sample(1000, conditions={"sex": "Female"})
    model.save("model/"); model = synthforge.load("model/")
    results = synthforge.evaluate(real, synthetic, holdout=holdout, target="income", out="report/")

Attributes are imported on first use so that ``import synthforge`` (and the CLI's
start-up) stays fast: no polars, numpy or torch until something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthforge.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Check",
    "CheckResult",
    "EncoderConfig",
    "FitContext",
    "Generator",
    "GeneratorParams",
    "RandomStreams",
    "SynthForgeError",
    "evaluate",
    "fit",
    "get_plugin_manager",
    "hookimpl",
    "load",
    "load_recipe",
    "run_recipe",
]

_LAZY = {
    "Check": "synthforge.checks.base",
    "CheckResult": "synthforge.checks.base",
    "EncoderConfig": "synthforge.data.encoder",
    "FitContext": "synthforge.generator",
    "Generator": "synthforge.generator",
    "GeneratorParams": "synthforge.generator",
    "RandomStreams": "synthforge.seeds",
    "SynthForgeError": "synthforge.errors",
    "evaluate": "synthforge.api",
    "fit": "synthforge.api",
    "load": "synthforge.api",
    "run_recipe": "synthforge.api",
    "load_recipe": "synthforge.recipe",
    "get_plugin_manager": "synthforge.plugins",
}

if TYPE_CHECKING:
    from synthforge.api import evaluate, fit, load, run_recipe
    from synthforge.checks.base import Check, CheckResult
    from synthforge.data.encoder import EncoderConfig
    from synthforge.errors import SynthForgeError
    from synthforge.generator import FitContext, Generator, GeneratorParams
    from synthforge.plugins import get_plugin_manager
    from synthforge.recipe import load_recipe
    from synthforge.seeds import RandomStreams


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'synthforge' has no attribute {name!r}")

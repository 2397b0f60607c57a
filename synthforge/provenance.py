"""Where a run's output came from: file hashes, package versions, the machine, for manifests and reports."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
from pathlib import Path
from typing import Any


def own_version() -> str:
    """This SynthForge's version."""
    from synthforge import __version__

    return __version__


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(generator: Any | None = None) -> dict[str, str]:
    """Python's version and the core dependencies', torch's if loaded, and the distribution of ``generator``."""
    import importlib.metadata

    versions = {"python": platform.python_version()}
    for name in ("synthforge", "polars", "numpy", "scipy", "pydantic", "pluggy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    if generator is not None:
        module = type(generator).__module__.split(".")[0]
        try:
            distribution = importlib.metadata.packages_distributions().get(module, [module])[0]
            versions[distribution] = importlib.metadata.version(distribution)
        except (importlib.metadata.PackageNotFoundError, IndexError):
            pass
    return versions


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"

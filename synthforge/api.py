"""The Python API for notebooks, mirroring the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthforge.checks.base import CheckResult
from synthforge.data.schema import ColumnOverride, infer_schema
from synthforge.engine import RunResult
from synthforge.engine import run as run_engine
from synthforge.errors import SynthForgeError
from synthforge.generator import FitContext, Generator, _to_polars, read_model_config
from synthforge.plugins import SynthForgePluginManager, get_plugin_manager
from synthforge.relational import DatabaseGenerator, is_database_model


def run_recipe(recipe: str | Path | dict[str, Any], *, pm: SynthForgePluginManager | None = None,
               log: Any = None, progress: bool = False) -> RunResult:
    """Run a recipe file or dict (paths in a dict are relative to the working directory).

    ``log`` (``print``, a logger's ``info``) hears each stage and each check's result as it ends;
    ``progress`` shows rich progress bars for training and the checks instead (a notebook, a terminal).
    """
    return run_engine(recipe, pm=pm, log=log, progress=progress)


def fit(
    table: Any,
    generator: str = "copula",
    *,
    seed: int = 0,
    columns: dict[str, str | dict[str, str]] | None = None,
    device: str = "auto",
    progress: bool = False,
    protect_rows_below: int = 5,
    pm: SynthForgePluginManager | None = None,
    **params: Any,
) -> Generator:
    """Fit a generator on a polars or pandas frame; ``sample`` then returns the same kind of frame.

    :param columns: per-column overrides, as in a recipe's ``source.columns``
        (``{"customer_id": "identifier"}``).
    :param protect_rows_below: ``sample`` draws again any row identical to a training
        row that fewer than this many training rows share (0: never); see
        :meth:`Generator.protect_rows`.
    :param params: the generator's own parameters.
    """
    pm = pm or get_plugin_manager()
    frame, kind = _to_polars(table)
    overrides = {name: ColumnOverride(**({"kind": value} if isinstance(value, str) else value))
                 for name, value in (columns or {}).items()}
    schema = infer_schema(frame, overrides)
    cls = pm.get_generator(generator)
    if getattr(cls, "data_kind", "table") == "images":
        raise SynthForgeError(f"generator {generator!r} learns labelled images, not a table: fit it with "
                              f"{cls.__name__}().fit(pixels, labels, classes), or run a recipe with source.images.")
    model = cls(params)
    model.fit(frame, schema, FitContext(seed=seed, device=device, progress=progress,
                                        protect_rows_below=protect_rows_below))
    model.frame_kind_ = kind
    return model


def evaluate(
    real: Any,
    synthetic: Any,
    *,
    holdout: Any = None,
    target: str | None = None,
    columns: dict[str, str | dict[str, str]] | None = None,
    checks: list[str] | None = None,
    out: str | Path | None = None,
    pm: SynthForgePluginManager | None = None,
) -> list[CheckResult]:
    """Score any synthetic table against its real source, as ``synthforge evaluate`` does.

    Each table is a polars or pandas frame or a file path. ``holdout`` is real rows the generator never saw
    (the privacy checks' yardstick); ``target`` the column ML efficacy predicts; ``columns`` per-column
    overrides as in :func:`fit`; ``checks`` the check names to run (default: every default check); ``out`` a
    folder for ``report.json`` and ``report.html``. A result's ``passed`` and ``on_fail`` say whether its gate
    held and whether a failure is an error or a warning.
    """
    from synthforge.data.io import read_table
    from synthforge.evaluation import evaluate_frames

    pm = pm or get_plugin_manager()

    def frame(table: Any) -> Any:
        if isinstance(table, str | Path):
            return read_table(table, pm=pm)
        return _to_polars(table)[0]

    real_frame = frame(real)
    overrides = {name: ColumnOverride(**({"kind": value} if isinstance(value, str) else value))
                 for name, value in (columns or {}).items()}
    return evaluate_frames(real_frame, frame(synthetic), holdout=None if holdout is None else frame(holdout),
                           target=target, schema=infer_schema(real_frame, overrides), pm=pm, checks=checks,
                           out=None if out is None else Path(out))


def load(directory: str | Path, *, pm: SynthForgePluginManager | None = None) -> Generator | DatabaseGenerator:
    """Load a saved model: one table's (a :class:`Generator`) or related tables' (a :class:`DatabaseGenerator`,
    whose ``sample`` gives a dict of tables); its generators' plugins must be installed. Reads JSON and
    safetensors only."""
    pm = pm or get_plugin_manager()
    if is_database_model(directory):
        return DatabaseGenerator.load(directory, pm)
    from synthforge.image_generator import image_model_name

    name = image_model_name(directory)
    if name is not None:  # an image model (format IMAGE_MODEL_FORMAT): its class reads its own config
        return pm.get_generator(name).load(directory)  # type: ignore[return-value]
    config = read_model_config(directory)
    return pm.get_generator(config["generator"]).load(directory)

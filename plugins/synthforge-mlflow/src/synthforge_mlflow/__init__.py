"""MLflow tracking for SynthForge runs: an observer plugin (run hooks only, no generator).

Active when ``MLFLOW_TRACKING_URI`` is set. mlflow is imported on the first run it
tracks, never at plugin discovery, so installing this keeps ``synthforge`` start-up instant.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import synthforge

EXPERIMENT_ENV = "SYNTHFORGE_MLFLOW_EXPERIMENT"
ARTEFACTS = ("report.html", "report.json", "manifest.json")
_log = logging.getLogger("synthforge.mlflow")
# One MLflow run per SynthForge run id: hooks of runs in several threads (a service's worker) never mix.
_runs: dict[str, str] = {}
_lock = threading.Lock()


def _client() -> Any | None:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _guarded(hook: Any) -> Any:
    """A tracker must never fail a run: its errors are logged, once per hook call, and swallowed."""

    @functools.wraps(hook)  # pluggy reads the hook's argument names through __wrapped__
    def call(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception as error:  # an MLflow server down, a full disk: the run goes on
            _log.warning("synthforge-mlflow: %s failed: %s", hook.__name__, error)

    return call


@synthforge.hookimpl
@_guarded
def synthforge_run_started(run: Any) -> None:
    """Open an MLflow run with the recipe's params."""
    client = _client()
    if client is None:
        return
    recipe = run.recipe
    name = os.environ.get(EXPERIMENT_ENV) or recipe.name
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    tracked = client.create_run(experiment_id, run_name=f"{recipe.name}-{run.id}",
                                tags={"synthforge.run_id": run.id, "synthforge.output": str(run.output_path)})
    with _lock:
        _runs[run.id] = tracked.info.run_id
    params = {"seed": run.seed, "generator": recipe.generator.name, "output.mode": recipe.output.mode,
              "output.rows": recipe.output.rows,
              "source": str(recipe.source.path) if recipe.source.path else ",".join(recipe.source.tables)}
    params |= {f"generator.params.{key}": value for key, value in _flat(recipe.generator.params).items()}
    if recipe.privacy is not None:
        params |= {"privacy.epsilon": recipe.privacy.epsilon, "privacy.delta": recipe.privacy.delta}
    from mlflow.entities import Param

    client.log_batch(tracked.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])


@synthforge.hookimpl
@_guarded
def synthforge_epoch_end(run: Any, epoch: int, metrics: dict[str, float]) -> None:
    """Each epoch's losses, stepped by epoch."""
    run_id = _runs.get(run.id) if run is not None else None
    if run_id is None:
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    _client().log_batch(run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in metrics.items()])


@synthforge.hookimpl
@_guarded
def synthforge_run_finished(run: Any, result: Any) -> None:
    """Check scores, timings and rows as metrics, the report as artefacts, and the run's outcome."""
    with _lock:
        run_id = _runs.pop(run.id, None)
    if run_id is None:
        return
    from mlflow.entities import Metric

    client, now = _client(), int(time.time() * 1000)
    values: dict[str, float] = {}
    for check in result.checks:
        if check.score is not None:
            values[f"check.{check.name}"] = float(check.score)
        values[f"check.{check.name}.passed"] = float(bool(check.passed))
    values |= {f"seconds.{stage}": float(seconds) for stage, seconds in result.timings.items()}
    values |= {f"rows.{kind}": float(rows) for kind, rows in result.rows.items()}
    if result.privacy:
        values["privacy.epsilon_spent"] = float(result.privacy["spent"]["epsilon"])
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
    if result.output_path is not None:
        for name in ARTEFACTS:
            path = Path(result.output_path) / name
            if path.is_file():
                client.log_artifact(run_id, str(path))
    if result.error:
        client.set_tag(run_id, "synthforge.error", str(result.error)[:5000])
    client.set_terminated(run_id, "FINISHED" if result.status == "succeeded" else "FAILED")


def _flat(params: Any, prefix: str = "") -> dict[str, Any]:
    values = params.model_dump() if hasattr(params, "model_dump") else dict(params or {})
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat

"""The MLflow observer: a real run tracked in a local MLflow store (params, per-epoch losses, checks, report)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from synthforge.engine import run
from synthforge.plugins import get_plugin_manager

mlflow = pytest.importorskip("mlflow")
ADULT = Path(__file__).parents[3] / "tests" / "data" / "adult_4k.csv"


def _recipe(folder: Path, generator: dict) -> Path:
    (folder / "adult.csv").write_bytes(ADULT.read_bytes())
    recipe = {"name": "tracked", "seed": 5, "source": {"path": "adult.csv"}, "holdout": 0.25, "generator": generator,
              "output": {"mode": "synthesize", "rows": 1000, "path": "out", "format": "parquet"},
              "checks": [{"name": "column_shapes", "min": 0.5}, {"name": "exact_copies"}]}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_run_is_tracked_with_params_epoch_losses_checks_and_the_report(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the test's store: a folder (no database needed)
    pm = get_plugin_manager()
    assert "mlflow" in [plugin["name"] for plugin in pm.describe()["plugins"]], "found by its entry point"
    result = run(_recipe(tmp_path, {"name": "autoregressive", "params": {"epochs": 3}}), pm=pm)

    client = mlflow.tracking.MlflowClient()
    [tracked] = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert tracked.info.status == "FINISHED"
    assert tracked.data.params["generator"] == "autoregressive" and tracked.data.params["seed"] == "5"
    assert tracked.data.params["generator.params.epochs"] == "3"
    losses = client.get_metric_history(tracked.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3] and losses[-1].value < losses[0].value
    shapes = next(c for c in result.checks if c.name == "column_shapes")
    assert tracked.data.metrics["check.column_shapes"] == pytest.approx(shapes.score)
    assert tracked.data.metrics["check.exact_copies.passed"] == 1.0
    assert tracked.data.metrics["rows.synthetic"] == 1000 and tracked.data.metrics["seconds.fit"] > 0
    assert {a.path for a in client.list_artifacts(tracked.info.run_id)} == {"report.html", "report.json",
                                                                           "manifest.json"}


def test_nothing_is_tracked_without_a_tracking_uri_and_a_down_server_never_fails_a_run(tmp_path: Path,
                                                                                        monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    run(_recipe(tmp_path, {"name": "copula"}))
    assert not (tmp_path / "mlruns").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    assert run(_recipe(tmp_path, {"name": "copula"})).status == "succeeded"

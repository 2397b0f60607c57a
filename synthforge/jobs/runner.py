"""Run one job's recipe: in a child process of a local worker, or inside a Ray task.

    python -m synthforge.jobs.runner --recipe R [--params JSON] --result FILE [--plugins-dir D] [--output-path P]

Engine log lines go to stdout (the worker stores them as the job's log), and so
do progress events, one JSON line each after :data:`PROGRESS_PREFIX` (the worker
stores the latest as the job's progress, for the dashboard's bar and ETA); the
result (output paths, rows, checks, timings) is written to ``--result``. Exit
status 0: succeeded; 2: a :class:`SynthForgeError` (bad input or a failed gate:
retrying cannot help) or a recipe nested too deep to read (``RecursionError``: the
same input fails the same way every time); anything else: a crash, which the
worker retries. ``--output-path`` replaces the recipe's ``output.path``: a service
job writes into the folder the job store gave it, never where its text points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import synthforge
from synthforge.errors import SynthForgeError

#: A runner's stdout line that starts with this is a progress event, not a log line.
PROGRESS_PREFIX = "@synthforge-progress "


class ProgressReporter:
    """A run-hook plugin: each ``synthforge_progress`` call as one line for the worker to read."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.stage_started_at = time.time()
        self.metrics: dict[str, float] = {}

    @synthforge.hookimpl
    def synthforge_epoch_end(self, run: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.metrics = {name: round(float(value), 5) for name, value in metrics.items()}  # sent with the progress

    @synthforge.hookimpl
    def synthforge_progress(self, run: Any, stage: str, done: int, total: int | None) -> None:
        now = time.time()
        if done == 0:
            self.stage_started_at, self.metrics = now, {}
        self.emit(PROGRESS_PREFIX + json.dumps({"stage": stage, "done": done, "total": total,
                                                "stage_started_at": self.stage_started_at, "at": now,
                                                "metrics": self.metrics}))


def parse_progress(line: str) -> dict[str, Any] | None:
    """The progress event a runner's line carries, or None for a log line."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        event = json.loads(line[len(PROGRESS_PREFIX):])
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def execute(recipe: str, params: dict[str, Any], *, plugins_dir: str | None = None,
            log: Callable[[str], None] = print, output_path: str | None = None) -> dict[str, Any]:
    """Run the recipe with its overrides through the engine (run hooks included); return what a job records.

    ``output_path`` (the job's own folder) wins over the recipe's ``output.path`` and any override of it.
    """
    from synthforge.engine import run
    from synthforge.plugins import get_plugin_manager
    from synthforge.recipe import load_recipe

    pm = get_plugin_manager(plugins_dir=Path(plugins_dir) if plugins_dir else None)
    pm.register(ProgressReporter(log), name="synthforge-job-progress")
    overrides = {**params, "output.path": output_path} if output_path else params
    try:
        loaded = load_recipe(recipe, pm=pm, overrides=overrides)
        result = run(loaded, pm=pm, log=log)
    except RecursionError:
        raise SynthForgeError("the recipe nests too deeply to read (a rule or a value thousands of levels deep); "
                              "write it flatter.") from None
    return {
        "output_path": str(result.output_path),
        "dataset_path": str(result.dataset_path),
        "rows": result.rows,
        "timings": {name: round(seconds, 3) for name, seconds in result.timings.items()},
        "checks": [{"name": c.name, "kind": c.kind, "score": c.score, "passed": c.passed, "gate": str(c.gate),
                    "summary": c.summary} for c in result.checks],
    }


def execute_captured(recipe: str, params: dict[str, Any], plugins_dir: str | None = None,
                     output_path: str | None = None) -> dict[str, Any]:
    """:func:`execute` that never raises: the outcome, whether a retry could help, and the log lines (for Ray)."""
    lines: list[str] = []
    try:
        result = execute(recipe, params, plugins_dir=plugins_dir, log=lines.append, output_path=output_path)
        return {"status": "succeeded", "result": result, "logs": _without_progress(lines)}
    except SynthForgeError as error:
        return {"status": "failed", "error": str(error), "retryable": False, "logs": _without_progress(lines)}
    except Exception as error:  # a crash: the worker retries it with back-off
        lines += traceback.format_exc().splitlines()
        return {"status": "failed", "error": f"{type(error).__name__}: {error}", "retryable": True,
                "logs": _without_progress(lines)}


def _without_progress(lines: list[str]) -> list[str]:
    """A Ray task's log arrives when it ends: its progress events are stale by then."""
    return [line for line in lines if parse_progress(line) is None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m synthforge.jobs.runner")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--params", default="{}")
    parser.add_argument("--result", required=True)
    parser.add_argument("--plugins-dir", default=None)
    parser.add_argument("--output-path", default=None)
    args = parser.parse_args(argv)
    try:
        result = execute(args.recipe, json.loads(args.params), plugins_dir=args.plugins_dir,
                         log=lambda line: print(line, flush=True), output_path=args.output_path)
    except SynthForgeError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        Path(args.result).write_text(json.dumps({"error": str(error)}))
        raise SystemExit(2) from None
    Path(args.result).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()

"""``generator: auto``: pick the installed generator that suits this table, by the gates' own scores.

Most users cannot tell which backend suits their table. With ``generator: auto`` (or ``{name: auto, params:
{budget_seconds: 300, candidates: [copula, autoregressive]}}``) a run, before it fits for real:

1. splits a validation part off the training rows (a fifth, seeded by the recipe's seed);
2. fits each candidate (every installed generator that can do what the recipe asks: a privacy budget, imputation,
   a streamed source, several workers) on the rest, each at its own defaults (adapted to the table's size) with an
   equal share of ``budget_seconds`` as its ``max_training_time``, copula first;
3. samples as many rows as the validation part holds and runs the recipe's checks on them, the validation part as
   the holdout: a candidate that a privacy gate refuses (or that keeps copying rare rows) ranks after every one that
   passes; among those, the higher mean of column shapes, pair trends, ML efficacy (with a target) and
   ``2 × (1 − detection AUC)`` (capped at 1) wins;
4. runs the recipe with the winner. A winner stopped by its time share trains the epochs it reached, with no time
   limit, so the run is repeatable: the manifest's recipe names the chosen generator and params, and
   ``generator_choice`` lists every trial's scores.

This is a choice among defaults, not a search over each generator's params (an optimiser such as Optuna could
follow, on the same split and scores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
from pydantic import Field

from synthforge.errors import RecipeError, SynthForgeError
from synthforge.generator import FitContext, GeneratorParams
from synthforge.recipe import Recipe
from synthforge.seeds import RandomStreams, derive_seed

AUTO = "auto"
#: the share of the training rows each candidate is judged on
VALIDATION_SHARE = 0.2


class AutoParams(GeneratorParams):
    budget_seconds: float = Field(600.0, gt=0, description="Seconds of training for all the trials together, an "
                                                           "equal share each (their max_training_time).")
    candidates: list[str] | None = Field(None, description="Generators to try (default: every installed one that "
                                                           "can do what the recipe asks).")


def candidates(recipe: Recipe, pm: Any, streamed: bool = False) -> list[str]:
    """The installed generators that can run ``recipe`` (copula first), or the recipe's own list, checked."""
    params = AutoParams.model_validate(recipe.generator.params)
    installed = sorted(pm.generators(), key=lambda name: (name != "copula", name))
    named = params.candidates or installed
    unknown = [name for name in named if name not in installed]
    if unknown:
        raise RecipeError(f"{recipe.file}: generator.params.candidates names {', '.join(map(repr, unknown))}, not an "
                          f"installed generator ({', '.join(installed)}).")
    able = []
    for name in named:
        cls = pm.get_generator(name)
        if (recipe.privacy is not None and not cls.supports_privacy) or (
                recipe.output.mode == "impute" and not cls.supports_imputation) or (
                streamed and not cls.supports_streaming) or (recipe.generator.workers > 1 and not cls.uses_torch):
            continue
        able.append(name)
    if not able:
        raise RecipeError(f"{recipe.file}: generator: auto found no installed generator that can run this recipe "
                          f"(tried {', '.join(named)}).")
    return able


def choose_generator(recipe: Recipe, pm: Any, train: pl.DataFrame, schema: Any, streamed: bool,
                     context: Callable[[int], FitContext], log: Callable[[str], None]) -> tuple[Recipe, dict]:
    """``recipe`` with the chosen generator and params in place of ``auto``, and what was tried (see the module)."""
    from synthforge.engine import run_checks

    names = candidates(recipe, pm, streamed)
    budget = AutoParams.model_validate(recipe.generator.params).budget_seconds
    order = RandomStreams(recipe.seed).rng("auto split").permutation(train.height)
    cut = max(1, round(train.height * VALIDATION_SHARE))
    fit_part, validation = train[np.sort(order[cut:])], train[np.sort(order[:cut])]
    share = budget / len(names)
    trials: list[dict[str, Any]] = []
    training = 0.0  # seconds of fitting so far: the budget's measure (sampling and checks come on top)
    for index, name in enumerate(names):
        cls = pm.get_generator(name)
        timed = "max_training_time" in cls.Params.model_fields
        params = {"max_training_time": share} if timed else {}
        trial: dict[str, Any] = {"generator": name, "params": params}
        began = time.perf_counter()
        try:
            generator = cls(params)
            try:
                generator.fit(fit_part, schema, context(derive_seed(recipe.seed, "auto", index)))
            finally:
                trial["fit_seconds"] = round(time.perf_counter() - began, 2)
                training += trial["fit_seconds"]
            synthetic = generator.sample(validation.height, seed=derive_seed(recipe.seed, "auto sample", index))
            checks = run_checks(recipe.checks, pm, fit_part, validation, synthetic, schema, target=recipe.target)
        except SynthForgeError as error:
            trial |= {"error": str(error).split(". ")[0], "refused": 99, "quality": 0.0}
        else:
            scores = {c.name: c.score for c in checks if c.score is not None}
            quality = [scores[n] for n in ("column_shapes", "pair_trends", "ml_efficacy") if n in scores]
            if "detection" in scores:
                quality.append(min(1.0, 2 * (1 - scores["detection"])))
            trial |= {"refused": sum(not c.passed and c.on_fail == "error" and c.kind == "privacy" for c in checks),
                      "quality": round(float(np.mean(quality)) if quality else 0.0, 4),
                      "scores": {k: round(v, 4) for k, v in scores.items()}}
            history = getattr(generator, "history_", None)
            if timed and history is not None and history.out_of_time:  # judged on the epochs it reached
                trial["epochs_reached"] = len(history.epochs)
        trial["seconds"] = round(time.perf_counter() - began, 2)
        trials.append(trial)
        log(f"auto: {name}: quality {trial['quality']:.3f}, {trial['refused']} privacy gate(s) refused"
            + (f" ({trial['error']})" if "error" in trial else "")
            + f", fitted in {trial.get('fit_seconds', 0):.1f} s, {trial['seconds']:.1f} s in all")
        if training > budget and index + 1 < len(names):
            log(f"auto: the budget of {budget:g} s is spent; {', '.join(names[index + 1:])} not tried")
            break
    best = min(trials, key=lambda t: (t["refused"], -t["quality"]))
    chosen = {"epochs": best["epochs_reached"]} if "epochs_reached" in best else {}
    log(f"auto: chose {best['generator']}" + (f" with {chosen}" if chosen else "")
        + f" (validation rows {validation.height:,}, trained on {fit_part.height:,})")
    spec = recipe.generator.model_copy(update={"name": best["generator"], "params": chosen})
    return recipe.model_copy(update={"generator": spec}), {
        "asked": AUTO, "chosen": best["generator"], "params": chosen, "trials": trials,
        "validation_rows": validation.height}

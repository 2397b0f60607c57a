"""Quality against sampling steps for diffusers schedulers, from one trained diffusion model.

    python -m benchmarks.diffusion_steps [--schedulers ddim,dpm_solver] [--steps 10,25,50] [--epochs N]

Fits the ``diffusion`` generator once on Adult train, then samples as many rows
with each scheduler and step count and scores them against the holdout like
``benchmarks.run`` does; sampling includes redrawing copies of rare training rows, as
every SynthForge run does, and each row says how many were redrawn. Writes
``results/adult-<date>-diffusion-steps.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.datasets import load
from benchmarks.run import RESULTS, machine, score, versions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedulers", default="ddim,dpm_solver")
    parser.add_argument("--steps", default="10,25,50")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--params", default="{}", help="other diffusion params as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from synthforge_diffusion import TabularDiffusion

    from synthforge.generator import FitContext
    from synthforge.seeds import derive_seed

    data = load("adult", None, args.seed)
    params: dict[str, Any] = json.loads(args.params)
    if args.epochs is not None:
        params["epochs"] = args.epochs
    model = TabularDiffusion(params)
    started = time.perf_counter()
    model.fit(data.train, None, FitContext(seed=args.seed))
    fit_s = time.perf_counter() - started
    print(f"fit {fit_s:.1f} s, {len(model.history_.epochs)} epochs", flush=True)
    rows = []
    for scheduler in args.schedulers.split(","):
        for steps in [int(s) for s in args.steps.split(",")]:
            redrawn_before = model.copies_redrawn_
            started = time.perf_counter()
            synthetic = model.sample(data.train.height, seed=derive_seed(args.seed, "sample"), scheduler=scheduler,
                                     steps=steps)
            sample_s = time.perf_counter() - started
            row = {"scheduler": scheduler, "steps": steps, "sample_s": round(sample_s, 2),
                   "copies_redrawn": model.copies_redrawn_ - redrawn_before,
                   **score("adult", data.train, data.holdout, data.target, synthetic)}
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)

    stamp = date.today().isoformat()
    record = {"date": stamp, "machine": machine(), "versions": versions(), "fit_s": fit_s,
              "params": model.params.model_dump(mode="json"), "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"adult-{stamp}-diffusion-steps.json").write_text(json.dumps(record, indent=1, default=str))
    lines = ["| scheduler | steps | sample 32,561 rows s | SDM overall | shapes | trends | TSTR AUC | DCR share "
             "| exact copies | copies redrawn |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['scheduler']} | {r['steps']} | {r['sample_s']:.1f} | {r.get('sdm_overall', 0):.3f} | "
              f"{r.get('sdm_shapes', 0):.3f} | {r.get('sdm_trends', 0):.3f} | {r['tstr_auc']:.3f} | "
              f"{r['dcr_share']:.3f} | {r['exact_copies']} | {r['copies_redrawn']} |" for r in rows]
    (args.out / f"adult-{stamp}-diffusion-steps.md").write_text(
        f"# Diffusion: quality against sampling steps — {stamp}\n\nOne model fitted on Adult train in {fit_s:.0f} s "
        f"(params {model.params.model_dump(mode='json')}); each row samples 32,561 rows and scores them against the "
        f"16,281-row holdout. Machine: {machine()}.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

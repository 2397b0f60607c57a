"""Differential privacy on Adult: ours at ε = 1 and ε = 10 against MOSTLY AI's TabularARGN with its DP config.

    python -m benchmarks.privacy --python mostlyai-argn=.venv-mostly/bin/python
    python -m benchmarks.privacy --epsilons 1 --generators copula        # one row

Every generator fits and samples in its own process (``benchmarks.worker --epsilon``) on
the same training rows, at the same (ε, δ = 1e-5): ours as a recipe's ``privacy:`` with
the default shares (30% for the encoder's releases, the rest for the model), TabularARGN
with ``differential_privacy: {max_epsilon: ε, value_protection_epsilon: s·ε}`` (its value
protection inside the same budget; ``--peer-share``, default 0.1 as its own default config's
1 of 10), smartnoise's MST with a tenth of ε for its preprocessor. The non-private fit of each of our backends
is measured in the same run for the fit-time ratio. Each table is scored as every Adult
table is (SDMetrics overall, shapes and trends, TSTR ROC AUC next to train-on-real, DCR
share) plus the membership-inference AUC of SynthForge's check, against the real holdout.
Writes ``benchmarks/results/privacy-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.datasets import load
from benchmarks.run import RESULTS, WORK, format_cell, machine, markdown_table, run_worker, score, versions

COLUMNS = [("generator", "generator"), ("epsilon", "ε"), ("spent_epsilon", "ε spent"), ("fit_s", "fit s"),
           ("fit_ratio", "fit ÷ non-private"), ("sdm_overall", "SDM overall"), ("sdm_shapes", "SDM shapes"),
           ("sdm_trends", "SDM trends"), ("tstr_auc", "TSTR AUC"), ("trtr_auc", "TRTR AUC"),
           ("dcr_share", "DCR share"), ("mia_auc", "MIA AUC"), ("exact_copies", "exact copies")]


def membership_auc(train: pl.DataFrame, holdout: pl.DataFrame, synthetic: pl.DataFrame) -> float | None:
    from synthforge.data.schema import infer_schema, to_internal
    from synthforge.evaluation import align, evaluate_frames

    schema = infer_schema(train)
    synthetic = align(to_internal(synthetic, schema), to_internal(train, schema), "synthetic")
    results = evaluate_frames(train, synthetic, holdout=holdout, schema=schema, checks=["membership_inference"])
    return next((r.score for r in results if r.name == "membership_inference"), None)


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any, key: str) -> str:
        if key == "fit_ratio" and value is not None:
            return f"{value:.2f}×"
        if key == "epsilon" and value is not None:
            return f"{value:g}"
        return format_cell(value, key)

    labelled = [{**row, "generator": f"{row['generator']} (ε {row.get('epsilon', 0):g})"} if "error" in row
                else row for row in rows]
    return markdown_table(labelled, COLUMNS, cell)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="adult")
    parser.add_argument("--generators", default="autoregressive,copula,mostlyai-argn")
    parser.add_argument("--epsilons", default="1,10")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3 * 3600)
    parser.add_argument("--python", action="append", default=[], metavar="GENERATOR=PATH")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--label", default="", help="appended to the results' file name")
    parser.add_argument("--peer-share", type=float, default=0.1, help="TabularARGN's value-protection share of ε")
    args = parser.parse_args(argv)
    interpreters = dict(item.split("=", 1) for item in args.python)
    dataset = load(args.dataset, None, args.seed)
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    epsilons = [float(e) for e in args.epsilons.split(",")]
    rows: list[dict[str, Any]] = []
    private_fit: dict[str, float] = {}
    for generator in generators:
        if generator != "mostlyai-argn":  # the non-private fit of the same backend, for the fit-time ratio
            out = WORK / "privacy" / f"{generator}-nonprivate"
            print(f"[{generator}] non-private fit …", flush=True)
            row = run_worker(generator, args.dataset, out, rows=None, epochs=None, seed=args.seed,
                             timeout=args.timeout)
            private_fit[generator] = row.get("fit_s", float("nan"))
        for epsilon in epsilons:
            out = WORK / "privacy" / f"{generator}-eps{epsilon:g}"
            print(f"[{generator}] ε = {epsilon:g} …", flush=True)
            row = run_worker(generator, args.dataset, out, rows=None, epochs=None, seed=args.seed,
                             timeout=args.timeout, python=interpreters.get(generator),
                             extra=["--epsilon", str(epsilon), "--delta", str(args.delta),
                                    "--peer-share", str(args.peer_share)])
            row["epsilon"] = epsilon
            if "error" not in row:
                synthetic = pl.read_parquet(out / "synthetic.parquet")
                row |= score(args.dataset, dataset.train, dataset.holdout, dataset.target, synthetic)
                row["mia_auc"] = membership_auc(dataset.train, dataset.holdout, synthetic)
                spent = (row.get("privacy") or {}).get("spent", {})
                row["spent_epsilon"] = spent.get("epsilon")
                if generator in private_fit:
                    row["fit_ratio"] = row["fit_s"] / private_fit[generator]
            rows.append(row)
            print(markdown([row]).splitlines()[-1], flush=True)
    stamp = date.today().isoformat()
    name = f"privacy-{stamp}{'-' + args.label if args.label else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"dataset": args.dataset, "date": stamp, "machine": machine(), "versions": versions(),
              "delta": args.delta, "train_rows": dataset.train.height, "holdout_rows": dataset.holdout.height,
              "non_private_fit_s": private_fit, "results": rows}
    (args.out / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
    text = markdown(rows)
    header = (f"# Differential privacy on {args.dataset} — {stamp}\n\nδ = {args.delta:g}; trained on "
              f"{dataset.train.height:,} rows, scored on {dataset.holdout.height:,} holdout rows; non-private fit s: "
              f"{', '.join(f'{k} {v:.1f}' for k, v in private_fit.items())}.\nMachine: {machine()}.\n"
              f"Versions: {', '.join(f'{k} {v}' for k, v in versions().items())}.\n\n")
    (args.out / f"{name}.md").write_text(header + text + "\n")
    print()
    print(text)


if __name__ == "__main__":
    main()

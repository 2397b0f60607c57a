"""An independent classifier two-sample test (C2ST), the yardstick for the built-in ``detection`` check.

Written on pandas and scikit-learn alone, with nothing of SynthForge's encoding or sampling: 10,000 rows of
each table (or all of the smaller), a ``HistGradientBoostingClassifier`` at its defaults on native
categories, 5-fold stratified cross-validation, the ROC AUC of the out-of-fold predictions. 0.5: the
classifier cannot tell the tables apart. This is the protocol of the literature's C2ST on Adult (TabDiff,
TabularARGN) and of the issue that asked for the check (issue 44).

    python -m benchmarks.c2st recipes/data/adult/train.csv out/adult-synthesize/data.csv
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def c2st_auc(real: pd.DataFrame, synthetic: pd.DataFrame, *, rows: int = 10_000, folds: int = 5,
             seed: int = 0) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n = min(rows, len(real), len(synthetic))
    both = pd.concat([real[synthetic.columns].sample(n, random_state=seed),
                      synthetic.sample(n, random_state=seed + 1)], ignore_index=True)
    for name in both.columns:
        if not pd.api.types.is_numeric_dtype(both[name]):
            # 255 categories at most a feature: the most frequent ones, the rest one category
            top = both[name].value_counts().index[:250]
            both[name] = both[name].where(both[name].isin(top), "\x00other").astype("category")
    labels = np.r_[np.zeros(n), np.ones(n)]
    classifier = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(classifier, both, labels, cv=split, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, predicted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("real")
    parser.add_argument("synthetic")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    real, synthetic = pd.read_csv(args.real), pd.read_csv(args.synthetic)
    started = time.perf_counter()
    auc = c2st_auc(real, synthetic, rows=args.rows, folds=args.folds, seed=args.seed)
    print(f"C2ST ROC AUC {auc:.4f} ({args.folds}-fold, {min(args.rows, len(real), len(synthetic)):,} rows each, "
          f"{time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

"""Differential privacy: a run trained at a stated (ε, δ), with the budget accounted for and shown.

A recipe's ``privacy: {epsilon, delta, shares}`` gives the run one
:class:`~synthforge.privacy.accountant.Accountant` (``FitContext.privacy``). Everything that
reads the training rows is charged to it, and refused before it would take the run past it:

1. ``Generator.fit`` releases what the encoder learns — vocabularies, bounds, distributions,
   point masses, null rates — with Gaussian mechanisms (:mod:`synthforge.privacy.marginals`),
   from the ``preprocessing`` share; the encoder and the saved schema then hold released
   figures only;
2. the model spends the rest: DP-SGD for a torch plugin (:mod:`synthforge.nn.private`), noisy
   correlations for the copula.

The accountant's summary (requested and spent (ε, δ), stages, mechanisms) goes to the
manifest, the report and the CLI summary. The guarantee covers the synthetic dataset and the
model; the checks, which compare with the real rows, are empirical and the report says so.
Imports numpy and scipy only.
"""

from synthforge.privacy.accountant import Accountant, BudgetExceeded, default_delta

__all__ = ["Accountant", "BudgetExceeded", "default_delta"]

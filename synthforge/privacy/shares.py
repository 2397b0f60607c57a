"""How a run's ε is split by default between the encoder's releases and the model.

The encoder's releases (vocabularies, bounds, distributions, null rates: :mod:`synthforge.privacy.marginals`)
are a few dozen low-sensitivity counts and take less of the budget than the model, whose every training step
is charged (:mod:`synthforge.nn.private`). A recipe's ``privacy.shares`` overrides these; the accountant
(:mod:`synthforge.privacy.accountant`) refuses a stage that spends past its share.
"""

from __future__ import annotations

#: stage → share of ε; the recipe (``privacy.shares``) and the accountant both start from this
DEFAULT_PRIVACY_SHARES: dict[str, float] = {"preprocessing": 0.3, "model": 0.7}

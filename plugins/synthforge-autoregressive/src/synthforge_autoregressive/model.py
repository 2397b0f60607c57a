"""An any-order autoregressive tabular generator, in the spirit of TabularARGN (MOSTLY AI, 2025).

The table is factorised column by column, ``p(x) = Π p(x_j | x_visible)``:

- **Tokens**: every column becomes one discrete token. Categories are their own
  tokens; numbers are quantile binned in the rank space of SynthForge's quantile
  encoder (a common value, such as the zero of a zero-inflated column, is a bin of
  its own), and a sampled bin is turned back into a number by drawing uniformly
  inside it, so numbers come out smooth rather than as copies of real values. An
  integer column with few distinct values (``discrete_integer_max``: ages, hours,
  capital gains) is instead a token per common value, so its point masses are
  sampled exactly. A numeric column with nulls has a null token.
- **Network**: each column's token (or a per-column ``MASK`` token while it is
  unknown) is embedded; the concatenated embeddings go through an MLP trunk with
  one softmax head per column. Because the first layer is linear in each column's
  embedding, sampling keeps its pre-activation as a running sum and updates it
  with one table lookup per sampled column.
- **Any order**: sampling visits the hidden columns in a canonical order, each
  given every column before it and any later columns that are conditioned on.
  Training shows the network exactly those visible sets — a random target
  column, everything before it, and in a share of rows a random subset of the
  columns after it — so ``conditions:`` on any columns (numbers included) and
  :meth:`impute` sample the other columns from the learned conditional, with no
  rejection.
- Sampling costs one small trunk pass per column; ``temperature`` below 1
  sharpens every conditional.
- **Calibration** (``calibrate``): after training, a per-token offset on each
  column's logits rakes the one-column marginals of the rows a run emits — copy
  protection's redraws included — to the training table's, in three rounds of
  fresh draws (:meth:`AutoregressiveGenerator._calibrate_output`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field
from scipy.special import ndtr, ndtri

from synthforge import EncoderConfig, FitContext
from synthforge.data.encoder import RARE, Span
from synthforge.generator import ParamsError
from synthforge.nn import (
    EarlyStopping,
    PrecisionSampleParams,
    PrecisionTrainingParams,
    TorchGenerator,
    TrainingParams,
)

if TYPE_CHECKING:
    from synthforge.nn import History

_SAMPLE_CHUNK = 4096  # rows per pass: the activations stay in cache
VALIDATION_CELLS = 25_000  # rows × columns of the early-stopping NLL each epoch
MARGINAL_ROUNDS, MARGINAL_ROWS = 4, 20_000  # raking the sampled marginals to the released ones (privacy only)
OUTPUT_ROUNDS = 3  # raking what a run emits to the training marginals (rows: calibration_draws)
# A small table's capacity (AutoregressiveGenerator._adapt_to_table): below SMALL_TABLE_ROWS training rows the
# trunk is HIDDEN_PER_COLUMN units per column wide, at least SMALL_TABLE_HIDDEN; a numeric column gets a bin per
# ROWS_PER_BIN rows, at least MIN_BINS.
SMALL_TABLE_ROWS, SMALL_TABLE_HIDDEN, HIDDEN_PER_COLUMN = 2_000, 64, 8
ROWS_PER_BIN, MIN_BINS = 50, 20
#: the smoothing a refit tries first when a run's privacy gate refused the model's output (more_private)
SMOOTHING_WHEN_MEMORISED = 0.3


class AutoregressiveParams(TrainingParams, EarlyStopping, PrecisionTrainingParams):
    # AdamW with a one-cycle schedule: learning_rate is its peak, weight_decay decoupled.
    defaults: ClassVar[dict[str, Any]] = {"epochs": 60, "batch_size": 512, "learning_rate": 2e-3, "weight_decay": 1e-5,
                "patience": 0, "validation_fraction": 0.0}
    # At most 100 epochs on a small table, not 180: on 12 public tables of 61-1,155 rows it had never seen
    # (plotnine's and statsmodels', `benchmarks.sweep`), 180 epochs memorised — 10 runs failed a privacy gate
    # (membership AUC up to 0.74, DCR ratio down to 0.10) — where 100 failed 5, two of them tables the copula
    # fails as well (a 12-row holdout), with the same shapes and trends (penguins' 0.888 / 0.882; 60 epochs:
    # 4 failed, but penguins' trends fell to 0.689).
    max_epoch_factor: ClassVar[float] = 5 / 3
    # The learning rate anneals to zero at `epochs`, and annealed weights sample better than an early stop's:
    # on Adult, 60 annealed epochs scored 0.988 SDMetrics overall, a stop at epoch 73 of 100 scored 0.977.
    # So the schedule decides the end, and every row trains (0.990 with no validation split, 0.988 with 10%);
    # set validation_fraction (and patience) to watch a validation NLL.
    # Measured on Adult (seeds 0/1, TSTR AUC on the holdout): integers with at most 128 values as categories
    # of their values (capital-gain/-loss, age, hours-per-week, education-num) lifted TSTR from 0.914-0.915 to
    # 0.918-0.920 at 250 bins and to 0.920 at 100 bins; bins then only shape fnlwgt-like columns, and 100 bins
    # sample 144-149k rows/s against 105-108k at 250.
    bins: int = Field(100, ge=2, le=10_000, description="Quantile bins per numeric column (fewer on tables of under "
                                                        "5,000 rows: a bin per 50 rows, at least 20).")
    discrete_integer_max: int = Field(
        128, ge=0, le=1000, description="Integer columns with at most this many distinct values are learned as "
                                        "categories of their values, rarer values to the nearest common one "
                                        "(0: never).")
    embedding_dim: int = Field(32, ge=1, le=1024, description="Size of each column's token embedding.")
    hidden_dim: int = Field(128, ge=8, le=8192, description="Width of the trunk's hidden layers.")
    layers: int = Field(2, ge=1, le=8, description="Hidden layers in the trunk.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer, in training only.")
    condition_rate: float = Field(
        0.5, ge=0, le=1, description="Share of training rows that also show some later columns, for conditions.")
    column_order: list[str] | None = Field(
        None, description="Canonical column order for sampling (default: the table's order).")
    smoothing: float = Field(
        0.0, ge=0, le=10, description="Ordinal smoothing of a numeric column's training targets: a Gaussian over "
                                      "its bins in rank space, its width this times rows^(-1/5) (0: off).")
    calibrate: bool = Field(
        True, description="After training, rake the one-column marginals of what a run emits (copy protection's "
                          "redraws included) to the training table's, by an offset on each token's logit.")

    def encoder_config(self) -> EncoderConfig:
        """Numbers to normal scores (then binned into tokens), categories as indices (one token each)."""
        return EncoderConfig(numeric="quantile", categorical="index", discrete_integer_max=self.discrete_integer_max)


class AutoregressiveSampleParams(PrecisionSampleParams):
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature; below 1 sharpens, above flattens.")


class AutoregressiveGenerator(TorchGenerator):
    name = "autoregressive"
    description = "Any-order autoregressive model over binned columns: exact conditions on any columns, imputation."
    Params = AutoregressiveParams
    SampleParams = AutoregressiveSampleParams
    supports_conditions = True
    supports_imputation = True
    supports_context = True
    supports_privacy = True
    supports_streaming = True
    weights: ClassVar[dict[str, str]] = {"network_": "network."}
    params: AutoregressiveParams

    # --- tokens: one per column -------------------------------------------------------------

    def _columns(self) -> list[tuple[str, Span, Span | None]]:
        """(column, value span, null span or None) for each learned column, in encoder order."""
        columns = []
        for name in self.encoder_.columns:
            spans = {span.role: span for span in self.encoder_.spans_of(name)}
            columns.append((name, spans["value"], spans.get("null")))
        return columns

    def _fit_bins(self, data: np.ndarray, released: bool = False) -> None:
        """Bin edges in rank space for numeric columns; vocabulary sizes for all (a null span adds token 0).

        With ``released`` (a privacy budget) the bins come from the encoder's released distribution, not from
        the rows: equal shares of rank between its point masses, each point mass a bin of its own.
        """
        self.bin_low_: dict[str, np.ndarray] = {}
        self.bin_high_: dict[str, np.ndarray] = {}
        self.released_shares_: dict[str, np.ndarray] = {}
        vocab = []
        for name, value, null in self._columns():
            if value.kind == "numeric" and released:
                bins = min(self.params.bins, max(2, len(data) // (2 * self.encoder_.config.min_category_count)))
                points = self.encoder_.transformer(name).point_ranks_
                self.bin_low_[name], self.bin_high_[name], masses = _released_bins(points, bins)
                self.released_shares_[name] = masses / masses.sum()
                vocab.append(len(self.bin_low_[name]) + (null is not None))
            elif value.kind == "numeric":
                present = data[:, value.start] if null is None else data[data[:, null.start] == 0, value.start]
                # A value sampled exactly (a bin of its own) must be held by min_category_count rows or more,
                # as a category must, so a small table gets fewer, larger bins.
                bins = min(self.params.bins, max(2, len(present) // (2 * self.encoder_.config.min_category_count)))
                self.bin_low_[name], self.bin_high_[name] = _rank_bins(ndtr(present.astype(np.float64)), bins)
                vocab.append(len(self.bin_low_[name]) + (null is not None))
            else:
                vocab.append(value.n_categories + (null is not None))
        self.vocab_sizes_ = vocab

    def _tokenize(self, data: np.ndarray) -> np.ndarray:
        tokens = np.empty((len(data), len(self.vocab_sizes_)), dtype=np.int64)
        for index, (name, value, null) in enumerate(self._columns()):
            if value.kind == "numeric":
                high = self.bin_high_[name]
                column = np.minimum(np.searchsorted(high, ndtr(data[:, value.start].astype(np.float64))), len(high) - 1)
            else:
                column = np.rint(data[:, value.start]).astype(np.int64)
            tokens[:, index] = column if null is None else np.where(data[:, null.start] == 1, 0, column + 1)
        return tokens

    def _detokenize(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        encoded = np.zeros((len(tokens), self.encoder_.width))
        for index, (name, value, null) in enumerate(self._columns()):
            column = tokens[:, index]
            if null is not None:
                encoded[:, null.start] = column == 0
                column = np.maximum(column - 1, 0)
            if value.kind != "numeric":
                encoded[:, value.start] = column
                continue
            low, high = self.bin_low_[name][column], self.bin_high_[name][column]
            encoded[:, value.start] = ndtri(low + (high - low) * rng.random(len(column)))
        return encoded

    # --- the network -----------------------------------------------------------------------

    def _build(self) -> None:
        import torch
        from torch import nn

        from synthforge.nn import FastDropout

        params = self.params
        self.marginal_offsets_: list[np.ndarray] | None = getattr(self, "marginal_offsets_", None)
        self.embeddings_ = nn.ModuleList(nn.Embedding(size + 1, params.embedding_dim) for size in self.vocab_sizes_)
        layers: list[nn.Module] = []
        width = len(self.vocab_sizes_) * params.embedding_dim
        for _ in range(params.layers):
            layers += [nn.Linear(width, params.hidden_dim), nn.SiLU(), FastDropout(params.dropout)]
            width = params.hidden_dim
        self.trunk_ = nn.Sequential(*layers)
        self.heads_ = nn.Linear(width, sum(self.vocab_sizes_))
        self.network_ = nn.ModuleDict({"embeddings": self.embeddings_, "trunk": self.trunk_, "heads": self.heads_})
        self.sampling_network_ = None
        offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes_)]).astype(int).tolist()
        self.head_slices_ = [slice(a, b) for a, b in itertools.pairwise(offsets)]
        self.head_offsets_ = torch.as_tensor(offsets[:-1], dtype=torch.long)  # each column's first logit
        # each column's first row in the embedding tables stacked: its first logit, plus one mask row per column before
        self.embedding_offsets_ = self.head_offsets_ + torch.arange(len(self.vocab_sizes_))
        self.vocab_tensor_ = torch.as_tensor(self.vocab_sizes_, dtype=torch.long)
        names = [name for name, _, _ in self._columns()]
        order = params.column_order or names
        unknown = [c for c in order if c not in names]
        if unknown or sorted(order) != sorted(names):
            raise ParamsError(f"generator 'autoregressive': column_order must list each learned column once "
                              f"({', '.join(names)}); got {order}.")
        self.order_ = [names.index(c) for c in order]
        self.order_rank_ = torch.as_tensor(np.argsort(self.order_), dtype=torch.long)
        self.order_tensor_ = torch.as_tensor(self.order_, dtype=torch.long)

    def _embedded(self, tokens: Any, visible: Any, per_module: bool = False) -> Any:
        """Each row's column embeddings side by side, a column's ``MASK`` token where it is not visible.

        One lookup in the tables stacked (their layout in a saved model unchanged), not one per column: fifteen
        times fewer calls forward and backward on Adult. ``per_module`` calls each column's ``nn.Embedding``, as
        DP-SGD's per-row gradient norms (Opacus's hooks on each module) need.
        """
        import torch
        from torch.nn import functional

        masked = torch.where(visible, tokens, self.vocab_tensor_.to(tokens.device))
        if per_module:
            return torch.cat([embedding(masked[:, j]) for j, embedding in enumerate(self.embeddings_)], dim=1)
        tables = torch.cat([embedding.weight for embedding in self.embeddings_])
        rows = masked + self.embedding_offsets_.to(tokens.device)
        if tokens.device.type == "cpu":  # index_select's backward (index_add_) takes a third of embedding's there
            return tables.index_select(0, rows.flatten()).view(len(rows), -1)
        return functional.embedding(rows, tables).flatten(1)  # deterministic on a GPU, where index_add_ is not

    def _logits(self, tokens: Any, visible: Any, per_module: bool = False) -> Any:
        return self.heads_(self.trunk_(self._embedded(tokens, visible, per_module)))

    def _row_losses(self, tokens: Any, generator: Any, private: bool = False,
                    kernels: dict[int, Any] | None = None) -> Any:
        """Each row's cross-entropy of the one conditional sampling will ask for, for a random target column.

        Sampling always draws the first hidden column in the canonical order, given
        every column before it and whatever later columns are conditioned on. So
        each row picks a target column, shows every column before it, and — in a
        ``condition_rate`` share of rows — a random subset of the columns after
        it: the network learns exactly the conditionals that sampling, conditions
        and imputation use, and no others.

        A batch's rows come shuffled, so the targets are drawn in sorted order (the same distribution): each
        target column's rows are then one slice of the batch, and only that column's head runs on them, a
        fifteenth of the head's products on Adult and no logits for the other columns. Under DP-SGD
        (``private``) the whole head and every embedding run as modules, as Opacus's per-row norms hook them.
        ``kernels`` (:meth:`_smoothing_kernels`, on the batch's device) give a numeric column's soft targets.
        """
        import torch
        from torch.nn import functional

        rows, columns = tokens.shape
        device = tokens.device
        position = self.order_rank_.to(device)[None, :]
        target = torch.randint(0, columns, (rows,), generator=generator, device=device).sort().values[:, None]
        conditioned = torch.rand(rows, 1, generator=generator, device=device) < self.params.condition_rate
        keep = torch.rand(rows, 1, generator=generator, device=device) * conditioned
        shown_after = (position > target) & (torch.rand(rows, columns, generator=generator, device=device) < keep)
        visible = (position < target) | shown_after
        target_column = self.order_tensor_.to(device)[target[:, 0]]
        truth = tokens.gather(1, target_column[:, None])
        if not private:
            hidden = self.trunk_(self._embedded(tokens, visible)).float()
            counts = torch.bincount(target[:, 0], minlength=columns).tolist()
            weights, biases = self.heads_.weight.split(self.vocab_sizes_), self.heads_.bias.split(self.vocab_sizes_)
            losses = []
            kernels = kernels or {}
            with torch.autocast(device.type, enabled=False):
                for at, (inputs, true) in enumerate(zip(hidden.split(counts), truth.split(counts), strict=True)):
                    if len(inputs):
                        j = self.order_[at]
                        logits = functional.linear(inputs, weights[j], biases[j])
                        if j in kernels:  # cross-entropy against the true bin's neighbourhood
                            soft = kernels[j].index_select(0, true[:, 0])
                            losses.append(logits.logsumexp(dim=1) - (soft * logits).sum(dim=1))
                        else:
                            losses.append(logits.logsumexp(dim=1) - logits.gather(1, true)[:, 0])
            return torch.cat(losses)
        logits = self._logits(tokens, visible, per_module=True).float()
        # Each row's cross-entropy over its target column's tokens alone, every row at once: those logits are
        # gathered into a row as wide as the largest vocabulary (the slots past the column's own masked), so the
        # log-sum-exp runs over one column's tokens, not every column's (a training step in half the time).
        size = self.vocab_tensor_.to(device)[target_column, None]
        slot = torch.arange(int(self.vocab_tensor_.max()), device=device)[None, :]
        own = logits.gather(1, self.head_offsets_.to(device)[target_column, None] + slot.minimum(size - 1))
        own = own.masked_fill(slot >= size, -torch.inf)
        return own.logsumexp(dim=1) - own.gather(1, truth)[:, 0]

    def _negative_log_likelihood(self, tokens: Any) -> Any:
        """Exact NLL per row in the canonical order (nats), for early stopping.

        It takes one network pass per column, so it runs on at most ``VALIDATION_CELLS / columns`` of the
        held-back rows (the first, the same every epoch; they are a random share already): an epoch's
        validation then costs the same whatever the table's width, not a pass per column per row.
        """
        import torch
        from torch.nn import functional

        tokens = tokens[: max(1, VALIDATION_CELLS // max(tokens.shape[1], 1))]
        visible = torch.zeros_like(tokens, dtype=torch.bool)
        total = torch.zeros(len(tokens), device=tokens.device)
        for j in self.order_:
            logits = self._logits(tokens, visible)[:, self.head_slices_[j]]
            total = total + functional.cross_entropy(logits, tokens[:, j], reduction="none")
            visible[:, j] = True
        return total.mean()

    # --- the Generator contract ---------------------------------------------------------------

    def more_private(self, step: int) -> dict[str, Any] | None:
        """First ordinal smoothing of 0.3 and a trunk of at most 64 (on 8 small public tables at 4 seeds, 32 runs:
        13 failed a privacy gate with the small-table defaults, 7 with these two; pair trends 0.01-0.05 lower),
        then half the epochs."""
        if self.params.smoothing == 0:
            return {"smoothing": SMOOTHING_WHEN_MEMORISED} | (
                {"hidden_dim": SMALL_TABLE_HIDDEN} if self.params.hidden_dim > SMALL_TABLE_HIDDEN else {})
        return super().more_private(step)

    def _adapt_to_table(self, rows: int, columns: int) -> dict[str, Any]:
        """Less capacity on a small table: below 2,000 rows a trunk of 8 units per column (64 to the default
        128), and on tables of under 5,000 rows a bin per 50 rows (at least 20).

        With the defaults tuned on Adult's 29,000 training rows, a table of a few hundred rows whose rows a key
        or a date sets apart (a time series, a grid of measurements, one row per animal) was learned row by row:
        on 8 such public tables of 66-924 rows and 2-11 columns (``benchmarks.sweep``, seeds 1-4), 24 of 32 runs
        failed a privacy gate (mean membership AUC 0.626, median DCR ratio 0.780); with a trunk of 64 and 20
        bins 13 did (0.577, 0.909), the pair trends kept (economics 0.992, seals 0.983, meat 0.979); the trunk
        alone, 16. A trunk of 64 for every small table cost the wider ones their trends (star98, 22 columns:
        0.76 → 0.71; the World Bank's 58 columns: shapes 0.89 → 0.85), hence its width grows with the columns.
        """
        given = self.params.model_fields_set
        changes: dict[str, Any] = {}
        hidden = max(SMALL_TABLE_HIDDEN, HIDDEN_PER_COLUMN * columns)
        if "hidden_dim" not in given and rows < SMALL_TABLE_ROWS and hidden < self.params.hidden_dim:
            changes["hidden_dim"] = hidden
        bins = max(MIN_BINS, rows // ROWS_PER_BIN)
        if "bins" not in given and bins < self.params.bins:
            changes["bins"] = bins
        return changes

    def _private_defaults(self, rows: int) -> dict[str, Any]:
        """DP-SGD's noise is per step, so fewer, larger steps with a higher rate, and a narrower trunk (on Adult at
        ε = 1, before the marginals' start and raking: batch 2,048 × 10 epochs at 1e-2 with 64 units, TSTR 0.783;
        1,024 × 10 at 3e-3 with 128, 0.549)."""
        return {"epochs": 10, "batch_size": int(np.clip(rows // 12, 256, 4096)), "learning_rate": 1e-2,
                "hidden_dim": 64}

    def _prepare(self, data: np.ndarray, context: FitContext) -> None:
        self.marginal_offsets_ = None
        self._fit_bins(data, released=context.privacy is not None)

    def _train(self, data: np.ndarray, context: FitContext) -> History:
        from synthforge.nn import adamw, make_private, one_cycle, train, training_autocast, training_rows

        device = self.device_
        optimiser, backward = make_private(adamw(self.network_.parameters(), self.params, device), [self.network_],
                                           context, rows=len(data), params=self.params)
        advance_schedule = one_cycle(optimiser, self.params, len(data), context)
        generator = context.torch_generator("noise", device=device)
        autocast = training_autocast(device, self.params.train_precision, private=context.privacy is not None)

        def step(batch: Any, epoch: int) -> dict[str, float]:
            optimiser.zero_grad()
            with autocast:
                losses = self._row_losses(batch, generator, private=context.privacy is not None, kernels=kernels)
            loss = backward(losses)
            optimiser.step()
            advance_schedule()
            return {"loss": loss.item()}

        if context.privacy is not None:
            self._start_from_released_marginals()
        kernels = {} if context.privacy is not None else \
            {j: kernel.to(device) for j, kernel in self._smoothing_kernels(len(data)).items()}
        return train(data=training_rows(data, self._tokenize, device), step=step, modules=[self.network_],
                     params=self.params, context=context, description="autoregressive",
                     validation_loss=lambda rows: self._negative_log_likelihood(rows).item())

    def _smoothing_kernels(self, rows: int) -> dict[int, Any]:
        """Per numeric column, each token's soft training target (a row of a tokens × tokens matrix)."""
        import torch

        if not self.params.smoothing:
            return {}
        width = self.params.smoothing * max(rows, 1) ** -0.2
        kernels = {}
        for index, (name, value, null) in enumerate(self._columns()):
            if value.kind != "numeric":
                continue
            low, high = self.bin_low_[name], self.bin_high_[name]
            centre = (low + high) / 2
            spread = low < high  # a point mass (a common value) stays its own target
            kernel = np.exp(-0.5 * ((centre[:, None] - centre[None, :]) / width) ** 2) * spread[None, :]
            kernel = np.where(spread[:, None], kernel, np.eye(len(low)))
            kernel /= kernel.sum(axis=1, keepdims=True)
            if null is not None:
                kernel = np.pad(kernel, ((1, 0), (1, 0)))
                kernel[0, 0] = 1.0
            kernels[index] = torch.as_tensor(kernel, dtype=torch.float32)
        return kernels

    def _released_marginals(self) -> list[np.ndarray]:
        """Each column's token shares as the privacy budget released them (null token first where there is one)."""
        marginals = []
        for name, value, null in self._columns():
            if value.kind == "numeric":
                shares = self.released_shares_[name]
            else:
                counts = np.maximum(getattr(self.encoder_.transformer(name), "counts_", None)
                                    or np.ones(value.n_categories), 1.0)
                shares = np.asarray(counts, dtype=np.float64) / np.sum(counts)
            if null is not None:
                rate = self.schema_[name].null_rate if name in self.schema_ else 0.0
                shares = np.concatenate([[max(rate, 1e-3)], shares * (1 - rate)])
            marginals.append(shares / shares.sum())
        return marginals

    def _start_from_released_marginals(self) -> None:
        """Each head's bias set to the log of its column's released marginal (post-processing, no cost): under
        DP-SGD's noise the network then has only the dependencies to learn (Adult, ε = 1: TSTR 0.783 → 0.816)."""
        import torch

        biases = [np.log(np.maximum(shares, 1e-6)) for shares in self._released_marginals()]
        with torch.no_grad():
            self.heads_.bias.copy_(torch.as_tensor(np.concatenate(biases), dtype=self.heads_.bias.dtype))

    def _after_training(self, data: np.ndarray, context: FitContext) -> None:
        """Under a privacy budget: rake the sampled marginals to the released ones. Otherwise keep the training
        rows' token shares for :meth:`_calibrate_output`.

        DP-SGD's noise shifts every conditional a little, and sampling column after column compounds it (Adult
        at ε = 1: sex 0.74, relationship 0.64 in Column Shapes). A per-token offset on each column's logits,
        moved by the log ratio of the released share to the sampled share for a few rounds, brings the sampled
        marginals back; it reads only the model and what was released, so it costs no budget.
        """
        if context.privacy is None:
            from synthforge.nn.calibration import EmittedTargets, calibration_draws

            shares = dict(enumerate(self._token_shares(self._tokenize(data))))
            self._emitted_targets = EmittedTargets(calibration_draws(len(data)), shares) \
                if self.params.calibrate else None
            return
        targets = self._released_marginals()
        self.marginal_offsets_ = [np.zeros(len(t), dtype=np.float32) for t in targets]
        rng = np.random.default_rng(context.seed_for("marginal offsets"))
        for _ in range(MARGINAL_ROUNDS):
            tokens = self._complete(np.zeros((MARGINAL_ROWS, len(targets)), dtype=np.int64),
                                    np.zeros((MARGINAL_ROWS, len(targets)), dtype=bool), rng, allow_missing=True)
            self._rake(self._shares(tokens), targets)

    def _calibrate_output(self, emitted: Callable[[int], np.ndarray], context: FitContext) -> None:
        """Rake the marginals of what a run emits to the training rows', for a few rounds of fresh draws.

        Copy protection draws again every row that reproduces a training record unique on its
        quasi-identifiers — about a tenth of Adult's draws, as often as fresh real people match one — and
        those rows come from the sparse part of the table, so the emitted marginals lean to the common
        values (Adult: education 0.978, income 0.990 TV-similar). Raking the rows as emitted, not the
        model's raw draws, brings them back (Adult, one fitted model, two sample seeds: SDMetrics overall
        0.9859 → 0.9904-0.9919, pair trends 0.981 → 0.986-0.989). The offsets are saved with the model; a
        model loaded without its training table samples unprotected, slightly toward the sparse part.
        """
        targets, self._emitted_targets = getattr(self, "_emitted_targets", None), None
        if context.privacy is not None or targets is None:
            return
        from synthforge.nn.calibration import mean_total_variation, rake_keeping_the_best

        shares = [targets.shares[j] for j in range(len(self.vocab_sizes_))]
        self.marginal_offsets_ = [np.zeros(len(t), dtype=np.float32) for t in shares]
        rake_keeping_the_best(
            OUTPUT_ROUNDS, lambda: self._shares(self._tokenize(emitted(targets.draws))),
            lambda emitted_shares: mean_total_variation(emitted_shares, shares),
            lambda emitted_shares: self._rake(emitted_shares, shares),
            lambda: [offset.copy() for offset in self.marginal_offsets_],
            lambda kept: setattr(self, "marginal_offsets_", kept))

    def _token_shares(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Each column's token shares in ``tokens``, the pooled rare category's set to zero: a run never emits
        it (it is drawn again), so raking toward its share would only make the model draw it more."""
        pooled = self._pooled_columns()
        shares = []
        for index, (name, _, null) in enumerate(self._columns()):
            counts = np.bincount(tokens[:, index], minlength=self.vocab_sizes_[index]).astype(np.float64)
            if name in pooled:
                counts[self.encoder_.transformer(name).categories_.index(RARE) + (null is not None)] = 0.0
            shares.append(counts / max(counts.sum(), 1.0))
        return shares

    def _rake(self, sampled_shares: list[np.ndarray], targets: list[np.ndarray]) -> None:
        """One round: each token's logit offset moved by the log ratio of its target share to its share in rows
        sampled with the offsets so far (:meth:`_shares`)."""
        for j, (target, sampled) in enumerate(zip(targets, sampled_shares, strict=True)):
            step = np.log((target + 1e-4) / (sampled + 1e-4))
            self.marginal_offsets_[j] = np.clip(self.marginal_offsets_[j] + step, -5, 5).astype(np.float32)

    def _shares(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Each column's token shares in ``tokens``."""
        return [np.bincount(tokens[:, j], minlength=size) / max(len(tokens), 1)
                for j, size in enumerate(self.vocab_sizes_)]

    def _sample(self, n: int, conditions: dict[Span, np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
        known = np.zeros((n, len(self.vocab_sizes_)), dtype=np.int64)
        visible = np.zeros_like(known, dtype=bool)
        if conditions:
            given = np.zeros((1, self.encoder_.width))
            for span, value in conditions.items():
                given[0, span.start : span.stop] = value
            tokens = self._tokenize(given)[0]
            for index, (name, _, _) in enumerate(self._columns()):
                if any(span.column == name for span in conditions):
                    known[:, index], visible[:, index] = tokens[index], True
        return self._detokenize(self._complete(known, visible, rng, allow_missing=True), rng)

    def _impute(self, data: np.ndarray, missing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        tokens = self._complete(self._tokenize(data), ~missing, rng, allow_missing=False)
        filled = self._detokenize(tokens, rng)
        # Keep the given cells exactly as encoded; only the missing ones come from the model.
        for index, (_, value, null) in enumerate(self._columns()):
            rows = ~missing[:, index]
            for span in (value, null):
                if span is not None:
                    filled[rows, span.start : span.stop] = data[rows, span.start : span.stop]
        return filled

    def _sample_given(self, data: np.ndarray, given: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each row's hidden columns from p(x_j | its given columns), nulls drawn as learned."""
        return self._detokenize(self._complete(self._tokenize(data), given, rng, allow_missing=True), rng)

    def _complete(self, tokens: np.ndarray, visible: np.ndarray, rng: np.random.Generator,
                  allow_missing: bool) -> np.ndarray:
        """Sample every invisible cell, column by column in the canonical order, from p(x_j | visible)."""
        tokens = tokens.copy()
        for start in range(0, len(tokens), _SAMPLE_CHUNK):
            rows = slice(start, start + _SAMPLE_CHUNK)
            tokens[rows] = self._complete_chunk(tokens[rows], visible[rows].copy(), rng, allow_missing)
        return tokens

    def _complete_chunk(self, tokens: np.ndarray, visible: np.ndarray, rng: np.random.Generator,
                        allow_missing: bool) -> np.ndarray:
        import torch

        with torch.no_grad():
            start, updates, rest, head_weight, head_bias = self._sampling_network()
            pre = start.expand(len(tokens), -1).clone()
            for j in np.flatnonzero(visible.any(axis=0)):
                given = np.flatnonzero(visible[:, j])
                rows = torch.from_numpy(given)
                pre[rows] += updates[j][torch.from_numpy(tokens[given, j])]
            excluded = self._excluded_tokens(allow_missing)
            alike = not visible.any()  # every row's running sum is still `start`: one pass serves them all
            for j in self.order_:
                missing = ~visible[:, j]
                everyone = bool(missing.all())
                todo = slice(None) if everyone else np.flatnonzero(missing)
                count = len(tokens) if everyone else len(todo)
                if not count:
                    continue
                index = None if everyone else torch.from_numpy(todo)
                part = self.head_slices_[j]
                inputs = pre[:1] if alike else pre if everyone else pre[index]
                # the first activation in float32 (faster than bfloat16's here), the rest of the trunk in its dtype
                hidden = rest(torch.nn.functional.silu(inputs).to(head_weight.dtype))
                logits = torch.nn.functional.linear(hidden, head_weight[part], head_bias[part]).float()
                if self.marginal_offsets_ is not None:
                    logits += torch.from_numpy(self.marginal_offsets_[j])
                if self.sample_params.temperature != 1.0:
                    logits /= self.sample_params.temperature
                if excluded[j]:
                    logits[:, excluded[j]] = -torch.inf
                # Inverse-CDF sampling with one uniform per row, from the one numpy generator (reproducible);
                # the cumulative sum of unnormalised probabilities spares softmax's division.
                cdf = logits.sub_(logits.amax(dim=1, keepdim=True)).exp_().cumsum_(dim=1)
                uniform = torch.from_numpy(rng.random((count, 1), dtype=np.float32)) * cdf[:, -1:]
                if alike:
                    choice = torch.searchsorted(cdf[0], uniform[:, 0]).clamp_(max=cdf.shape[1] - 1)
                    alike = False
                else:
                    choice = torch.searchsorted(cdf, uniform).clamp_(max=cdf.shape[1] - 1)[:, 0]
                tokens[todo, j] = choice.numpy()
                # index_select, not indexing: a fifth of the time for these row lookups
                if everyone:
                    pre.add_(updates[j].index_select(0, choice))
                else:
                    pre.index_add_(0, index, updates[j].index_select(0, choice))
                visible[todo, j] = True
        return tokens

    def _sampling_network(self) -> tuple[Any, list[Any], Any, Any, Any]:
        """The network as sampling uses it, built once per fitted model.

        The first layer is linear in each column's embedding, so sampling keeps its
        pre-activation as a running sum: ``start`` is every column masked, and
        revealing a column's token adds that token's row of ``updates[j]`` (its
        contribution minus the mask's) — one lookup per sampled cell. The rest of
        the trunk and the heads run in bfloat16 where the CPU multiplies it
        natively (the sampling param ``precision: auto``): about 2.4× the float32 throughput on
        an AVX512-BF16 core, and the same rows for the same seed on one machine.
        """
        if getattr(self, "sampling_network_", None) is None:
            import copy

            import torch
            from torch import nn

            from synthforge.nn import FastDropout, use_bfloat16

            first, dim = self.trunk_[0], self.params.embedding_dim
            tables = [embedding.weight @ first.weight[:, j * dim : (j + 1) * dim].T
                      for j, embedding in enumerate(self.embeddings_)]
            masked = [table[size] for table, size in zip(tables, self.vocab_sizes_, strict=True)]
            start = first.bias + torch.stack(masked).sum(dim=0)
            updates = [table - mask for table, mask in zip(tables, masked, strict=True)]
            dtype = torch.bfloat16 if use_bfloat16(self.sample_params.precision) else torch.float32
            # In place: each pass works on a fresh tensor (the first activation's output); no dropout in sampling.
            rest = copy.deepcopy(nn.Sequential(*(m for m in self.trunk_[2:] if not isinstance(m, FastDropout))))
            rest.to(dtype)
            for module in rest:
                if isinstance(module, nn.SiLU):
                    module.inplace = True
            self.sampling_network_ = (start, updates, rest, self.heads_.weight.to(dtype), self.heads_.bias.to(dtype))
        return self.sampling_network_

    def _excluded_tokens(self, allow_missing: bool) -> list[list[int]]:
        """Per column, the tokens imputation must not produce: null, and the pooled rare category."""
        excluded: list[list[int]] = [[] for _ in self.vocab_sizes_]
        if allow_missing:
            return excluded
        for index, (name, value, null) in enumerate(self._columns()):
            if null is not None:
                excluded[index] = [0]
            elif value.kind != "numeric":
                categories = getattr(self.encoder_.transformer(name), "categories_", [])
                excluded[index] = [k for k, c in enumerate(categories) if c is None or c == RARE]
        return excluded

    def _extra_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"offsets.{j}": offsets for j, offsets in enumerate(self.marginal_offsets_ or [])}
        for name in self.bin_low_:
            arrays[f"bins.{name}.low"], arrays[f"bins.{name}.high"] = self.bin_low_[name], self.bin_high_[name]
        return arrays, {"vocab_sizes": self.vocab_sizes_}

    def _load_extra_state(self, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.vocab_sizes_ = list(extra["vocab_sizes"])
        offsets = [arrays[f"offsets.{j}"] for j in range(len(self.vocab_sizes_)) if f"offsets.{j}" in arrays]
        self.marginal_offsets_ = [np.asarray(o, dtype=np.float32) for o in offsets] or None
        self.bin_low_, self.bin_high_ = {}, {}
        for name, value, _ in self._columns():
            if value.kind == "numeric":
                self.bin_low_[name] = np.asarray(arrays[f"bins.{name}.low"], dtype=np.float64)
                self.bin_high_[name] = np.asarray(arrays[f"bins.{name}.high"], dtype=np.float64)


def _rank_bins(ranks: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins of about equal mass over the distinct rank values; each bin's (lowest, highest) rank to sample from.

    A common value (at least half a bin's mass) is a bin of its own, sampled
    exactly. The other bins tile the rank space between their neighbours, so
    sampling interpolates between real values instead of copying them, and no bin
    holds less than half the target mass, except a lone tail.
    """
    values, counts = np.unique(ranks, return_counts=True)
    total = max(len(ranks), 1)
    target = max(total / n_bins, 1.0)
    bins: list[tuple[float, float, bool, float]] = []  # (first rank, last rank, common, upper edge)
    start, size, previous = 0.0, 0, 0.0
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if count >= target / 2:
            if size:
                bins.append((start, previous, False, previous))
                size = 0
            # The encoder maps a common value to the middle of its mass; its mass ends half of it higher.
            bins.append((value, value, True, value + count / (2 * total)))
            continue
        if not size:
            start = value
        size += count
        previous = value
        if size >= target:
            bins.append((start, previous, False, previous))
            size = 0
    if size:
        if bins and size < target / 2 and not bins[-1][2]:
            bins[-1] = (bins[-1][0], previous, False, previous)
        else:
            bins.append((start, previous, False, previous))
    if not bins:  # no values at all: one bin at the median
        bins.append((0.5, 0.5, True, 0.5))
    low = [first if common or k == 0 else bins[k - 1][3] for k, (first, _, common, _) in enumerate(bins)]
    high = [last for _, last, _, _ in bins]
    return np.asarray(low), np.asarray(high)


def _released_bins(points: list[tuple[float, float]], n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins over rank space from a released distribution: the grid of ``n_bins`` equal shares, cut at each
    point mass's interval of ranks, which becomes a bin of its own sampled exactly at its middle (where the
    encoder puts the point's value). Also each bin's share of the rows, as released."""
    grid = np.linspace(0.0, 1.0, n_bins + 1)
    low: list[float] = []
    high: list[float] = []
    mass: list[float] = []
    cursor = 0.0
    for start, stop in [*sorted(points), (1.0, None)]:
        cuts = [cursor, *(g for g in grid if cursor < g < start), start]
        for a, b in itertools.pairwise(cuts):
            if b - a > 1e-9:
                low.append(a)
                high.append(b)
                mass.append(b - a)
        if stop is None:
            break
        middle = (start + stop) / 2
        low.append(middle)
        high.append(middle)
        mass.append(stop - start)
        cursor = stop
    return np.asarray(low), np.asarray(high), np.asarray(mass)

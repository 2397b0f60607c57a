"""The condition input shared by generators that learn to condition on categorical values (CVAE, diffusion).

For every categorical or boolean column the vector holds its one-hot where the
value is given (zeros where not) and one bit saying whether it is given. Training
hides a random subset of columns per row — all of them in a share of rows — so
one network samples both unconditionally and conditioned on any subset.
"""

from __future__ import annotations

import numpy as np
import torch

from synthforge.data.encoder import Span, TableEncoder
from synthforge.data.schema import ColumnKind, Schema
from synthforge.errors import ConditionError


class CategoricalConditions:
    def __init__(self, encoder: TableEncoder, schema: Schema) -> None:
        kinds = {column.name: column.kind for column in schema.learned}
        self.spans: list[Span] = [
            span for span in encoder.spans_ if span.role == "value" and span.kind == "onehot"
            and kinds[span.column] in (ColumnKind.categorical, ColumnKind.boolean)]
        self.width = sum(span.width + 1 for span in self.spans)
        self.encoded_width = encoder.width

    def vector(self, data: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """The condition vector of encoded rows ``data``; ``given`` is a (rows, spans) 0/1 mask."""
        parts = []
        for index, span in enumerate(self.spans):
            bit = given[:, index : index + 1]
            parts += [data[:, span.start : span.stop] * bit, bit]
        return torch.cat(parts, dim=1) if parts else data[:, :0]

    def random(self, data: torch.Tensor, unconditional_rate: float, keep_rate: float,
               generator: torch.Generator) -> torch.Tensor:
        """Training's condition vector: nothing given in ``unconditional_rate`` of rows, else each span with
        probability ``keep_rate``."""
        rows, device = len(data), data.device
        conditioned = torch.rand(rows, 1, generator=generator, device=device) >= unconditional_rate
        kept = torch.rand(rows, len(self.spans), generator=generator, device=device) < keep_rate
        return self.vector(data, (kept & conditioned).float())

    def for_sampling(self, rows: int, conditions: dict[Span, np.ndarray], generator_name: str,
                     alternative: str) -> torch.Tensor:
        """The condition vector that pins ``conditions`` in ``rows`` rows; other columns are refused."""
        unsupported = sorted({span.column for span in conditions if span not in self.spans})
        if unsupported:
            raise ConditionError(
                f"the {generator_name} generator conditions natively on categorical columns only, not on "
                f"{', '.join(map(repr, unsupported))}; use {alternative}.")
        given = torch.zeros(rows, len(self.spans))
        fixed = torch.zeros(rows, self.encoded_width)
        for index, span in enumerate(self.spans):
            if span in conditions:
                given[:, index] = 1.0
                fixed[:, span.start : span.stop] = torch.as_tensor(conditions[span], dtype=torch.float32)
        return self.vector(fixed, given)

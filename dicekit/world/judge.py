"""The oracle as a pairwise judge, behind the interface every evaluation uses.

For a comparison (instruction, output_1 = baseline, output_2 = model), the preference is
1 + P(output_2 is better). The oracle is deterministic, so that probability is 1, 0 or ½:
2 when quality(output_2) > quality(output_1), 1 when it is lower, 1.5 for equal quality — a draw,
which alpaca_eval's win rate counts as half a win. An instruction that is not a world prompt gets
``None`` (no usable judgement), as an API judge's unparsable answer would.
"""

from __future__ import annotations

from typing import Sequence

from dicekit.evals.judges import Comparison
from dicekit.world.oracle import quality


def preference(q_baseline: float, q_model: float) -> float:
    """1 + P(model better) for a deterministic judge: 2 / 1 / 1.5 (equal quality)."""
    if q_model > q_baseline:
        return 2.0
    if q_model < q_baseline:
        return 1.0
    return 1.5


class OracleJudge:
    """``PairwiseJudge`` backed by the world's ground-truth quality (free, exact, no cache needed)."""

    name = "world-oracle"

    def judge(self, items: Sequence[Comparison]) -> list[float | None]:
        out: list[float | None] = []
        for c in items:
            try:
                out.append(preference(quality(c.instruction, c.output_1), quality(c.instruction, c.output_2)))
            except ValueError:
                out.append(None)
        return out

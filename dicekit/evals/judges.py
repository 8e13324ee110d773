"""The pairwise-judge interface shared by every evaluation.

A judge answers, for each comparison, a *preference* in [1, 2] for "output_2 vs output_1" in
alpaca_eval's convention: 1 = output_1 is better, 2 = output_2 is better, 1.5 = a draw, values in
between = the probability-weighted preference (preference = 1 + P(output_2 wins)). ``None`` means the
judge gave no usable answer for that item.

Implementations: the world's oracle (``dicekit.world.judge``), an OpenAI-compatible endpoint running
the weighted_alpaca_eval_gpt4_turbo protocol, and a local HF model scoring the same template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Comparison:
    instruction: str
    output_1: str  # the baseline / reference
    output_2: str  # the model under evaluation


class PairwiseJudge(Protocol):
    name: str

    def judge(self, items: Sequence[Comparison]) -> list[float | None]:
        """Preferences in [1, 2] (or None), one per item, in order."""
        ...

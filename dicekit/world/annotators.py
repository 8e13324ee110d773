"""Simulated human annotators: noisy, and biased towards longer answers.

One comparison of responses a and b to the same prompt (Bradley–Terry with a verbosity bias):

    P(a ≻ b) = σ( (quality_a − quality_b) / τ  +  λ · (len_a − len_b) / s )

quality from the oracle, length in characters, τ the noise (smaller = more reliable), λ the
verbosity bias (λ > 0: longer answers win more often at equal quality — the bias of human and LLM
judges that DICE's length regularisation α is there to undo), s the length scale. Each draw takes
its randomness from a key (seed + the pair's identity), so a label does not depend on which other
pairs were labelled or in which order.

Offline preference data is built as UltraFeedback-like "best vs worst": an annotator compares every
two of m responses to a prompt, the responses are ranked by wins (ties broken at random), and the
pair is (most wins, fewest wins).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from dicekit.world.oracle import quality


@dataclass(frozen=True)
class Annotators:
    tau: float = 0.1  # τ: noise of the quality judgement
    verbosity: float = 1.0  # λ: weight of the length difference
    length_scale: float = 20.0  # s: characters per unit of length preference
    seed: int = 0

    def quality(self, prompt: str, response: str) -> float:
        """The quality the annotators perceive (the world's oracle; a subclass may judge otherwise,
        e.g. by the share of a prompt's verifiable instructions followed)."""
        return quality(prompt, response)

    def prob_first(self, prompt: str, a: str, b: str) -> float:
        """P(a ≻ b) under the model above."""
        logit = (self.quality(prompt, a) - self.quality(prompt, b)) / self.tau
        logit += self.verbosity * (len(a) - len(b)) / self.length_scale
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))

    def _uniform(self, *key) -> float:
        h = hashlib.blake2b(repr((self.seed,) + key).encode(), digest_size=8).digest()
        return (int.from_bytes(h, "little") >> 11) / float(1 << 53)

    def prefers_first(self, prompt: str, a: str, b: str, key=()) -> bool:
        """One seeded annotator label: True if a is preferred to b. ``key`` names the comparison."""
        return self._uniform("label", prompt, a, b, *key) < self.prob_first(prompt, a, b)

    def best_and_worst(self, prompt: str, responses: list[str], key=()) -> tuple[int, int] | None:
        """Indices (chosen, rejected) by round-robin wins among distinct responses; None if fewer
        than two distinct responses."""
        distinct = list(dict.fromkeys(responses))
        if len(distinct) < 2:
            return None
        wins = {r: 0 for r in distinct}
        for a, b in combinations(distinct, 2):
            wins[a if self.prefers_first(prompt, a, b, key) else b] += 1
        tie = {r: self._uniform("tie", prompt, r, *key) for r in distinct}
        order = sorted(distinct, key=lambda r: (-wins[r], tie[r]))
        return responses.index(order[0]), responses.index(order[-1])


def label_rate(annotators: Annotators, prompt: str, a: str, b: str, draws: int) -> float:
    """Fraction of ``draws`` independent labels preferring a (for tests and calibration)."""
    return float(np.mean([annotators.prefers_first(prompt, a, b, ("draw", i)) for i in range(draws)]))

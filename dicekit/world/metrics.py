"""Pure numbers of the world's evaluation (numpy/pandas only, no I/O, no torch).

* ``pair_agreement(group, score, truth)``: over every two items of the same group whose ``truth``
  differs, the fraction where ``score`` orders them the same way (a ``score`` tie counts half).
  With score = implicit reward and truth = oracle quality on one prompt's K samples this is the
  DICE precondition: does the reward rank a policy's *own* samples like the truth does?
* ``within_group_corr(group, x, y)``: Pearson correlation of x and y after subtracting each
  group's mean (what a per-prompt ranking can use; prompt-level offsets removed).

The win rate and the reward accuracy are not defined here: the world uses the evaluation suite's
(dicekit.evals.metrics.head_to_head; dicekit.evals.reward_accuracy.accuracy, ties count as wrong).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pair_agreement(group, score, truth) -> tuple[float, int]:
    """(agreement, number of pairs) over within-group pairs whose truth differs (pooled over groups;
    per group: dicekit.analysis.health.pair_agreement_by_group)."""
    from dicekit.analysis.health import pair_agreement_by_group

    _, agree, n = pair_agreement_by_group(group, score, truth)
    total = int(n.sum())
    return (float(np.nansum(agree * n)) / total if total else float("nan")), total


def within_group_corr(group, x, y) -> float:
    """Pearson correlation of x and y after removing each group's mean (nan if degenerate)."""
    df = pd.DataFrame({"g": np.asarray(group), "x": np.asarray(x, float), "y": np.asarray(y, float)})
    dx = df["x"] - df.groupby("g")["x"].transform("mean")
    dy = df["y"] - df.groupby("g")["y"].transform("mean")
    denom = float(np.sqrt((dx**2).sum() * (dy**2).sum()))
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")

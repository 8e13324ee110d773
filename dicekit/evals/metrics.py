"""AlpacaEval head-to-head metrics from preferences (pure; numpy only).

A preference is alpaca_eval's number in [1, 2] for "output_2 (the model) vs output_1 (the
baseline)": 1 = baseline wins, 2 = model wins, 1.5 = draw, in between = probability-weighted.
The legacy value 0 also means a draw. NaN or out-of-range values are not preferences and are left
out of every count except ``n_draws`` (as upstream does; dicekit's loaders reject NaN before this).

- ``win_rate`` = 100 · mean(p − 1); ``standard_error`` = 100 · sample std(p − 1) / √n (ddof = 1).
- ``n_wins`` / ``n_wins_base``: rows with p − 1 above / below 0.5; ``n_draws``: rows equal to 1.5.
- ``discrete_win_rate``: the same win rate after rounding each preference to 1, 1.5 or 2
  (exactly 1.5 stays a draw; otherwise round half to even, as numpy does).
- ``avg_length``: integer part of the mean number of characters of the model's outputs.

These reproduce alpaca_eval 0.6.6's ``get_winrate`` (AbsoluteScoringRule and ZeroOneScoringRule).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _as_array(preferences: Sequence[float]) -> np.ndarray:
    p = np.array([np.nan if x is None else float(x) for x in preferences], dtype=float)
    p[p == 0.0] = 1.5  # legacy encoding of a draw
    return p


def _valid(p: np.ndarray) -> np.ndarray:
    return p[(p >= 1.0) & (p <= 2.0)]  # NaN fails both comparisons


def _sem(x: np.ndarray) -> float:
    """Standard error of the mean with ddof = 1 (NaN below two values, like pandas).

    >>> round(_sem(np.array([0.0, 1.0])), 12)
    0.5
    """
    if len(x) < 2:
        return float("nan")
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def head_to_head(preferences: Sequence[float]) -> dict[str, float]:
    """Win rate, its standard error and the counts for one model against the baseline.

    Hand-worked: preferences [1, 2, 1.5, 1.75] → p − 1 = [0, 1, .5, .75], mean .5625 → win_rate
    56.25; one row above .5 besides the 1 (→ n_wins 2), one below (n_wins_base 1), one draw.

    >>> m = head_to_head([1, 2, 1.5, 1.75])
    >>> (m["win_rate"], m["n_wins"], m["n_wins_base"], m["n_draws"], m["n_total"])
    (56.25, 2, 1, 1, 4)
    """
    p = _as_array(preferences)
    n_draws = int(np.sum(p == 1.5))
    x = _valid(p) - 1.0
    return {
        "win_rate": float(np.mean(x) * 100) if len(x) else float("nan"),
        "standard_error": _sem(x) * 100,
        "n_wins": int(np.sum(x > 0.5)),
        "n_wins_base": int(np.sum(x < 0.5)),
        "n_draws": n_draws,
        "n_total": int(len(x)),
    }


def discrete_preferences(preferences: Sequence[float]) -> np.ndarray:
    """Each preference rounded to 1, 1.5 (draw) or 2; NaN stays NaN.

    >>> discrete_preferences([1.2, 1.5, 1.7, 1.5000001]).tolist()
    [1.0, 1.5, 2.0, 2.0]
    """
    p = _as_array(preferences)
    out = np.round(p)
    out[p == 1.5] = 1.5
    return out


def discrete_win_rate(preferences: Sequence[float]) -> float:
    """Win rate of the rounded preferences: (n_wins + n_draws / 2) / n_total · 100.

    >>> discrete_win_rate([1.2, 1.5, 1.7, 1.9])
    62.5
    """
    x = _valid(discrete_preferences(preferences)) - 1.0
    return float(np.mean(x) * 100) if len(x) else float("nan")


def avg_length(outputs: Sequence[str]) -> int:
    """Integer part of the mean length in characters.

    >>> avg_length(["ab", "abcd", "abc"])
    3
    """
    if not outputs:
        return 0
    return int(sum(len(o) for o in outputs) / len(outputs))


def alpaca_metrics(preferences: Sequence[float], model_outputs: Sequence[str]) -> dict[str, float]:
    """All raw (not length-controlled) leaderboard metrics in one dict."""
    out = head_to_head(preferences)
    out["discrete_win_rate"] = discrete_win_rate(preferences)
    out["avg_length"] = avg_length(model_outputs)
    return out

"""Pure numbers of the world's evaluation (numpy/pandas only, no I/O, no torch).

* ``win_rate(preferences)``: alpaca_eval's raw win rate — mean of (preference − 1) over judged items,
  draws (1.5) counting half — with its standard error and counts.
* ``pair_agreement(group, score, truth)``: over every two items of the same group whose ``truth``
  differs, the fraction where ``score`` orders them the same way (a ``score`` tie counts half).
  With score = implicit reward and truth = oracle quality on one prompt's K samples this is the
  DICE precondition: does the reward rank a policy's *own* samples like the truth does?
* ``within_group_corr(group, x, y)``: Pearson correlation of x and y after subtracting each
  group's mean (what a per-prompt ranking can use; prompt-level offsets removed).
* ``accuracy(margins)``: fraction of pairs with margin > 0, ties half (reward accuracy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def win_rate(preferences) -> dict:
    """Raw win rate (percent) of output_2 over output_1 from preferences in [1, 2] (None = unjudged)."""
    p = np.array([x for x in preferences if x is not None and not pd.isna(x)], dtype=float)
    if len(p) == 0:
        return {"win_rate": float("nan"), "standard_error": float("nan"), "n_wins": 0, "n_wins_base": 0,
                "n_draws": 0, "n_total": 0}
    w = p - 1.0
    se = float(w.std(ddof=1) / np.sqrt(len(w))) if len(w) > 1 else float("nan")
    return {"win_rate": 100.0 * float(w.mean()), "standard_error": 100.0 * se, "n_wins": int((w > 0.5).sum()),
            "n_wins_base": int((w < 0.5).sum()), "n_draws": int((w == 0.5).sum()), "n_total": int(len(w))}


def accuracy(margins) -> float:
    """Fraction of margins > 0, exact ties counting half."""
    m = np.asarray(margins, dtype=float)
    if m.size == 0:
        return float("nan")
    return float(((m > 0).sum() + 0.5 * (m == 0).sum()) / m.size)


def pair_agreement(group, score, truth) -> tuple[float, int]:
    """(agreement, number of pairs) over within-group pairs whose truth differs."""
    df = pd.DataFrame({"g": np.asarray(group), "s": np.asarray(score, float), "t": np.asarray(truth, float)})
    agree, n = 0.0, 0
    for _, g in df.groupby("g", sort=False):
        s, t = g["s"].to_numpy(), g["t"].to_numpy()
        ds = np.sign(s[:, None] - s[None, :])
        dt = np.sign(t[:, None] - t[None, :])
        upper = np.triu(np.ones_like(dt, dtype=bool), 1) & (dt != 0)
        agree += float((ds[upper] == dt[upper]).sum() + 0.5 * (ds[upper] == 0).sum())
        n += int(upper.sum())
    return (agree / n if n else float("nan")), n


def within_group_corr(group, x, y) -> float:
    """Pearson correlation of x and y after removing each group's mean (nan if degenerate)."""
    df = pd.DataFrame({"g": np.asarray(group), "x": np.asarray(x, float), "y": np.asarray(y, float)})
    dx = df["x"] - df.groupby("g")["x"].transform("mean")
    dy = df["y"] - df.groupby("g")["y"].transform("mean")
    denom = float(np.sqrt((dx**2).sum() * (dy**2).sum()))
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")

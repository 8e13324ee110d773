"""Bradley–Terry scores against a baseline, with bootstrap intervals and optional style control (pure numpy).

Each battle is between players a and b with outcome y ∈ {1 (a wins), 0.5 (tie), 0 (b wins)} and
an optional feature row f (style differences, a minus b). The model is

    P(a beats b) = σ(r_a − r_b + β · f)

fitted by maximum likelihood (Newton's method) with the baseline's rating fixed at r = 0. A tie
counts as half a win for each side — the same likelihood as Arena-Hard's "one win for A plus one
win for B" duplication. The score of a model is its predicted win rate against the baseline with
the style features at zero: 100 · σ(r_model), so the baseline scores 50.

The 95% interval is the 2.5th and 97.5th percentile of the score over bootstrap rounds, each
resampling the battles with replacement (a strong verdict is three battles and is resampled as
three), from ``numpy.random.default_rng(seed)``.

Style control adds the length and markdown differences of each battle's two answers as features;
the score is then the predicted win rate at equal style. Deviation: arena-hard-auto centres these
features on the mean over the judged battles, so "zero" is the judged models' average style —
with one model against the baseline that absorbs the model's whole style advantage into its
rating. dicekit only scales them (sd = 1), keeping zero = the same style as the baseline.

A player that wins (or loses) every battle has no finite MLE; the fit stops when the gradient
vanishes to 1e−10, which puts its score within 1e−8 of 100 (or 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dicekit.evals.lc_glm import sigmoid


def design_matrix(player_a: np.ndarray, player_b: np.ndarray, n_players: int, baseline: int,
                  features: np.ndarray | None = None) -> np.ndarray:
    """(n_battles, n_players − 1 + n_features): +1 in a's column, −1 in b's, the baseline's dropped.

    >>> design_matrix(np.array([0, 1]), np.array([1, 2]), 3, baseline=0).tolist()
    [[-1.0, 0.0], [1.0, -1.0]]
    """
    n = len(player_a)
    X = np.zeros((n, n_players))
    X[np.arange(n), player_a] += 1.0
    X[np.arange(n), player_b] -= 1.0
    X = np.delete(X, baseline, axis=1)
    if features is not None and features.shape[1]:
        X = np.concatenate([X, features], axis=1)
    return X


def fit_logistic(X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None, tol: float = 1e-10,
                 max_iter: int = 200) -> np.ndarray:
    """No-intercept logistic regression on soft labels y ∈ [0, 1] by damped Newton steps.

    One player beating the baseline 3 times in 4 (y = [1, 1, 1, 0]) has MLE logit log(3):

    >>> round(float(fit_logistic(np.ones((4, 1)), np.array([1.0, 1, 1, 0]))[0]), 9) == round(float(np.log(3)), 9)
    True
    """
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    theta = np.zeros(X.shape[1])
    ridge = 1e-12 * np.eye(X.shape[1])  # keeps the Newton system solvable when a column is separable
    for _ in range(max_iter):
        p = sigmoid(X @ theta)
        grad = X.T @ (w * (y - p))
        if np.max(np.abs(grad), initial=0.0) < tol * max(1.0, w.sum()):
            break
        hess = (X * (w * p * (1 - p))[:, None]).T @ X + ridge
        step = np.linalg.solve(hess, grad)
        step *= min(1.0, 5.0 / max(np.max(np.abs(step)), 1e-300))  # at most 5 logits per step
        theta += step
    return theta


@dataclass(frozen=True)
class Battles:
    """Unit battles: player indices, outcome for a (1, 0.5, 0), optional features (n, k)."""

    player_a: np.ndarray
    player_b: np.ndarray
    outcome: np.ndarray
    features: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> "Battles":
        f = None if self.features is None else self.features[idx]
        return Battles(self.player_a[idx], self.player_b[idx], self.outcome[idx], f)


def ratings(battles: Battles, n_players: int, baseline: int) -> tuple[np.ndarray, np.ndarray]:
    """(r per player with r_baseline = 0, style coefficients β)."""
    X = design_matrix(battles.player_a, battles.player_b, n_players, baseline, battles.features)
    theta = fit_logistic(X, battles.outcome)
    r = np.insert(theta[: n_players - 1], baseline, 0.0)
    return r, theta[n_players - 1:]


def scores_from_ratings(r: np.ndarray) -> np.ndarray:
    """Win rate (percent) of each player against the baseline (whose r is 0).

    >>> scores_from_ratings(np.array([0.0, np.log(3.0)])).round(9).tolist()
    [50.0, 75.0]
    """
    return 100.0 * sigmoid(r)


@dataclass(frozen=True)
class BTResult:
    score: np.ndarray  # (n_players,) percent, baseline 50
    ci_low: np.ndarray
    ci_high: np.ndarray
    rating: np.ndarray  # log-odds against the baseline
    style_coefs: np.ndarray
    bootstrap_scores: np.ndarray  # (rounds, n_players)


def bt_scores(battles: Battles, n_players: int, baseline: int, rounds: int = 100, seed: int = 0) -> BTResult:
    """Full-data BT scores and bootstrap 95% intervals."""
    r, beta = ratings(battles, n_players, baseline)
    rng = np.random.default_rng(seed)
    n = len(battles.outcome)
    boot = np.empty((rounds, n_players))
    for k in range(rounds):
        rb, _ = ratings(battles.take(rng.integers(0, n, size=n)), n_players, baseline)
        boot[k] = scores_from_ratings(rb)
    low = np.percentile(boot, 2.5, axis=0) if rounds else np.full(n_players, np.nan)
    high = np.percentile(boot, 97.5, axis=0) if rounds else np.full(n_players, np.nan)
    return BTResult(scores_from_ratings(r), low, high, r, beta, boot)


def scale(columns: np.ndarray) -> np.ndarray:
    """Each column divided by its sd (ddof = 1), not centred, so 0 keeps meaning "no difference";
    a constant column carries no information apart from the rating and becomes 0.

    >>> scale(np.array([[1.0, 5.0], [3.0, 5.0]])).round(6).tolist()
    [[0.707107, 0.0], [2.12132, 0.0]]
    """
    sd = columns.std(axis=0, ddof=1) if len(columns) > 1 else np.zeros(columns.shape[1])
    return np.where(sd > 0, columns / np.where(sd > 0, sd, 1.0), 0.0)


def style_features(len_a: np.ndarray, len_b: np.ndarray, md_a: np.ndarray, md_b: np.ndarray) -> np.ndarray:
    """Arena-Hard's style-control features (a vs b), scaled: (len_a − len_b) / (len_a + len_b)
    and, per markdown element (headers, lists, bold), densities d = count / len compared as
    (d_a − d_b) / (d_a + d_b + 1). ``md_*``: (n, 3) counts; lengths in tokens (or words)."""
    len_a, len_b = np.asarray(len_a, float), np.asarray(len_b, float)
    total = np.where(len_a + len_b > 0, len_a + len_b, 1.0)
    length = (len_a - len_b) / total
    dens_a = md_a / np.maximum(len_a, 1.0)[:, None]
    dens_b = md_b / np.maximum(len_b, 1.0)[:, None]
    markdown = (dens_a - dens_b) / (dens_a + dens_b + 1.0)
    return scale(np.column_stack([length, markdown]))

"""Bradley–Terry scores against a baseline, with bootstrap intervals and optional style control (pure numpy).

Each battle is between players a and b with outcome y ∈ {1 (a wins), 0.5 (tie), 0 (b wins)} and
an optional feature row f (style differences, a minus b). The model is

    P(a beats b) = σ(r_a − r_b + β · f)

fitted by maximum likelihood (Newton's method) with the baseline's rating fixed at r = 0. A tie
counts as half a win for each side — the same likelihood as Arena-Hard's "one win for A plus one
win for B" duplication. The score of a model is its predicted win rate against the baseline with
the style features at zero: 100 · σ(r_model), so the baseline scores 50.

The interval is a pair of percentiles of the score over bootstrap rounds (2.5 and 97.5 by default;
Arena-Hard v2.0 uses 5 and 95), each round resampling the battles with replacement (a strong verdict
is three battles and is resampled as three), from ``numpy.random.default_rng(seed)``.

Style control adds the length and markdown differences of each battle's two answers as features,
centred on their mean over the judged battles and scaled, as arena-hard-auto does; the score is then
the predicted win rate at the judged battles' average style difference. The two versions differ,
and each is reproduced: v0.1 (commit 0489bf3, ``utils_math.construct_style_matrices`` and
``fit_bt``) compares raw counts as (a − b)/(a + b + 1), scales with the population sd, and fits an
L2-penalised logistic regression (scikit-learn's default C = 1, on every player's coefficient in
log10 units, each battle counted twice) — :func:`style_features_v01`, :func:`ratings_v01_style`;
v2.0 (commit 196f6b8, ``show_result.print_leaderboard_with_style_features``) compares length as
(a − b)/(a + b) and markdown densities count / (length + 1) as (d_a − d_b)/(d_a + d_b + 1), scales
with the sample sd, and fits the plain Bradley–Terry likelihood — :func:`style_features_v2`,
:func:`ratings`. A constant feature column (sd 0) becomes 0 here; the official scripts divide by
zero and stop.

A player that wins (or loses) every battle has no finite MLE; the fit stops when the gradient
vanishes to 1e−10, which puts its score within 1e−8 of 100 (or 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dicekit.evals.lc_glm import sigmoid


def design_matrix(player_a: np.ndarray, player_b: np.ndarray, n_players: int, baseline: int | None,
                  features: np.ndarray | None = None) -> np.ndarray:
    """(n_battles, n_players − 1 + n_features): +1 in a's column, −1 in b's, the baseline's dropped
    (kept when ``baseline`` is None).

    >>> design_matrix(np.array([0, 1]), np.array([1, 2]), 3, baseline=0).tolist()
    [[-1.0, 0.0], [1.0, -1.0]]
    """
    n = len(player_a)
    X = np.zeros((n, n_players))
    X[np.arange(n), player_a] += 1.0
    X[np.arange(n), player_b] -= 1.0
    if baseline is not None:
        X = np.delete(X, baseline, axis=1)
    if features is not None and features.shape[1]:
        X = np.concatenate([X, features], axis=1)
    return X


def fit_logistic(X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None, tol: float = 1e-10,
                 max_iter: int = 200, l2: float = 0.0) -> np.ndarray:
    """No-intercept logistic regression on soft labels y ∈ [0, 1] by damped Newton steps, minimising
    Σ w·logloss + (l2 / 2)·‖θ‖² (``l2 = 1``: scikit-learn's default ``C = 1``).

    One player beating the baseline 3 times in 4 (y = [1, 1, 1, 0]) has MLE logit log(3):

    >>> round(float(fit_logistic(np.ones((4, 1)), np.array([1.0, 1, 1, 0]))[0]), 9) == round(float(np.log(3)), 9)
    True
    """
    w = np.ones(len(y)) if weight is None else np.broadcast_to(np.asarray(weight, dtype=float), y.shape)
    theta = np.zeros(X.shape[1])
    ridge = (l2 + 1e-12) * np.eye(X.shape[1])  # 1e-12 keeps the system solvable when a column is separable
    for _ in range(max_iter):
        p = sigmoid(X @ theta)
        grad = X.T @ (w * (y - p)) - l2 * theta
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


def ratings_v01_style(battles: Battles, n_players: int, baseline: int) -> tuple[np.ndarray, np.ndarray]:
    """arena-hard-auto v0.1's style-control fit (0489bf3, ``fit_bt``): ``LogisticRegression(
    fit_intercept=False)`` — L2 penalty with C = 1 on every player's coefficient c (the baseline's
    too) and on β, player columns ±ln 10, each battle twice (a tie as one win and one loss, the same
    likelihood as two halves). Returns r = ln 10·(c − c_baseline), so the score is 100·σ(r), and β.

    One player against the baseline, no features, 3 wins in 4: by symmetry c_b = −c_m, and the
    stationarity condition is 4·ln²10·n·(w − p) = logit p; the fit solves it:

    >>> r, _ = ratings_v01_style(Battles(np.ones(4, int), np.zeros(4, int), np.array([1.0, 1, 1, 0])), 2, 0)
    >>> p = 1 / (1 + np.exp(-r[1])); bool(abs(4 * np.log(10) ** 2 * 4 * (0.75 - p) - np.log(p / (1 - p))) < 1e-9)
    True
    """
    X = design_matrix(battles.player_a, battles.player_b, n_players, None)
    if battles.features is not None and battles.features.shape[1]:
        X = np.concatenate([np.log(10.0) * X, battles.features], axis=1)
    else:
        X = np.log(10.0) * X
    theta = fit_logistic(X, battles.outcome, weight=2.0, l2=1.0)
    c = theta[:n_players]
    return np.log(10.0) * (c - c[baseline]), theta[n_players:]


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


def bt_scores(battles: Battles, n_players: int, baseline: int, rounds: int = 100, seed: int = 0,
              ci: tuple[float, float] = (2.5, 97.5), fit=ratings) -> BTResult:
    """Full-data BT scores and bootstrap intervals (percentiles ``ci``); ``fit``: :func:`ratings`
    or :func:`ratings_v01_style`."""
    r, beta = fit(battles, n_players, baseline)
    rng = np.random.default_rng(seed)
    n = len(battles.outcome)
    boot = np.empty((rounds, n_players))
    for k in range(rounds):
        rb, _ = fit(battles.take(rng.integers(0, n, size=n)), n_players, baseline)
        boot[k] = scores_from_ratings(rb)
    low = np.percentile(boot, ci[0], axis=0) if rounds else np.full(n_players, np.nan)
    high = np.percentile(boot, ci[1], axis=0) if rounds else np.full(n_players, np.nan)
    return BTResult(scores_from_ratings(r), low, high, r, beta, boot)


def standardise(columns: np.ndarray, ddof: int) -> np.ndarray:
    """Each column centred on its mean and divided by its sd (``ddof`` 0: population, 1: sample);
    a constant column carries no information apart from the ratings and becomes 0.

    >>> standardise(np.array([[1.0, 5.0], [3.0, 5.0]]), ddof=0).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    centred = columns - columns.mean(axis=0)
    sd = columns.std(axis=0, ddof=ddof) if len(columns) > ddof else np.zeros(columns.shape[1])
    return np.where(sd > 0, centred / np.where(sd > 0, sd, 1.0), 0.0)


def style_features_v01(len_a: np.ndarray, len_b: np.ndarray, md_a: np.ndarray, md_b: np.ndarray) -> np.ndarray:
    """arena-hard-auto v0.1's features (a vs b): (x_a − x_b) / (x_a + x_b + 1) for the token count and
    each markdown count (headers, lists, bold), standardised with the population sd.

    >>> style_features_v01(np.array([3.0, 1.0]), np.array([1.0, 1.0]), np.zeros((2, 3)), np.zeros((2, 3)))[:, 0].tolist()
    [1.0, -1.0]
    """
    a = np.column_stack([np.asarray(len_a, float), md_a])
    b = np.column_stack([np.asarray(len_b, float), md_b])
    return standardise((a - b) / (a + b + 1.0), ddof=0)


def style_features_v2(len_a: np.ndarray, len_b: np.ndarray, md_a: np.ndarray, md_b: np.ndarray) -> np.ndarray:
    """arena-hard-auto v2.0's features (a vs b), standardised with the sample sd: length
    (len_a − len_b) / (len_a + len_b) (0 where both are empty), and per markdown element the
    densities d = count / (len + 1) compared as (d_a − d_b) / (d_a + d_b + 1). ``md_*``: (n, 3)
    counts; lengths in tokens."""
    len_a, len_b = np.asarray(len_a, float), np.asarray(len_b, float)
    total = np.where(len_a + len_b > 0, len_a + len_b, 1.0)
    length = (len_a - len_b) / total
    dens_a = md_a / (len_a + 1.0)[:, None]
    dens_b = md_b / (len_b + 1.0)[:, None]
    markdown = (dens_a - dens_b) / (dens_a + dens_b + 1.0)
    return standardise(np.column_stack([length, markdown]), ddof=1)

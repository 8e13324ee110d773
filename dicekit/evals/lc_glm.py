"""The length-controlled (LC) AlpacaEval win rate: alpaca_eval's ``length_controlled_v1`` GLM.

For each instruction i, the probability that the model beats the baseline is modelled as

    P(model wins on i) = σ( θ_len · tanh(Δ_i / sd(Δ)) + θ_diff · d_i + θ_model )

with Δ_i = len(baseline output) − len(model output) in characters, sd the sample standard
deviation (ddof = 1) of Δ over the file, d_i the instruction's difficulty (a fixed per-instruction
number published with AlpacaEval), and no intercept. The LC win rate is 100 · the mean over rows of
the prediction with the length term set to zero, σ(θ_diff · d_i + θ_model); its standard error is
100 · the sample standard error of those predictions.

The fit (as upstream): the soft label y_i = preference − 1 ∈ [0, 1] is turned into two weighted
rows (label 1 with weight y_i, label 0 with weight 1 − y_i), and an L1-penalised logistic
regression (liblinear, C chosen from logspace(−4, 4, 10) by 5-fold GroupKFold cross-validation on
a weighted soft-label log-loss, both rows of an instruction in the same fold, random_state 123)
is fitted. ``length_controlled_v1`` adds the rows of the "gamed" baselines (verbose / concise
prompts of the baseline model, ``not_gamed_baseline`` = 0) with sample weight λ/2 = 0.1 each, which
pulls θ_len and θ_diff towards the baseline's own length sensitivity. Without those rows the fit is
``length_controlled_noreg``: not the official number.

Deliberate deviations: none in the arithmetic. The cross-validation loop is written out instead of
using ``LogisticRegressionCV`` with sklearn's global metadata-routing switch; it reproduces the same
folds, the same liblinear seeds (one ``RandomState(123)`` consumed across the C grid per fold, a
fresh one for the refit) and therefore the same coefficients. Difficulty is passed in per row, so the
caller decides how it is joined (by instruction text, or upstream's row position).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

FEATURES = ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)")
GAMED_LAMBDA = 0.2
N_SPLITS = 5
CS = np.logspace(-4, 4, 10)
RANDOM_STATE = 123


@dataclass(frozen=True)
class GlmWeights:
    """θ of the LC GLM, in upstream's column order (see ``FEATURES``)."""

    length: float
    difficulty: float
    model: float

    def as_row(self) -> dict[str, float]:
        return dict(zip(FEATURES, (self.length, self.difficulty, self.model)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e^−x), computed as exp(−log(1 + e^−x)) for stability.

    >>> sigmoid(np.array([0.0, np.log(3.0)])).round(12).tolist()
    [0.5, 0.75]
    """
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=float)))


def std_delta_len(len_baseline: np.ndarray, len_model: np.ndarray) -> np.ndarray:
    """(len_1 − len_2) / sd(len_1 − len_2), sd with ddof = 1.

    Δ = [2, 0, −2] has sd 2, so the standardised values are [1, 0, −1]:

    >>> std_delta_len(np.array([3, 1, 1]), np.array([1, 1, 3])).tolist()
    [1.0, 0.0, -1.0]
    """
    delta = np.asarray(len_baseline, dtype=float) - np.asarray(len_model, dtype=float)
    return delta / np.std(delta, ddof=1)


def design(std_delta: np.ndarray, difficulty: np.ndarray, not_gamed: np.ndarray) -> np.ndarray:
    """The GLM's design matrix, shape (n, 3): [tanh(std_delta), difficulty, not_gamed]."""
    return np.column_stack([np.tanh(std_delta), difficulty, np.asarray(not_gamed, dtype=float)])


def predict_lc(weights: GlmWeights, difficulty: np.ndarray) -> np.ndarray:
    """Per-row LC win probability: σ(θ_diff · d + θ_model) (the length term set to zero).

    >>> predict_lc(GlmWeights(length=-1.0, difficulty=0.0, model=0.0), np.array([0.3])).tolist()
    [0.5]
    """
    return sigmoid(weights.difficulty * np.asarray(difficulty, dtype=float) + weights.model)


def predict_from_published(model_row: dict, baseline_row: dict, difficulty: np.ndarray) -> np.ndarray:
    """Per-row LC probabilities from published coefficients: σ(Δθ_model + Δθ_diff · d).

    Δ is model minus baseline, as upstream's ``predict_winrate``; the baseline's own row is all
    zeros in the published file, so this is ``predict_lc`` with the model's row.
    """
    d_model = float(model_row[FEATURES[2]]) - float(baseline_row[FEATURES[2]])
    d_diff = float(model_row[FEATURES[1]]) - float(baseline_row[FEATURES[1]])
    return sigmoid(d_model + d_diff * np.asarray(difficulty, dtype=float))


def lc_summary(probs: np.ndarray) -> tuple[float, float]:
    """(LC win rate, its standard error), both in percent.

    >>> lc_summary(np.array([0.25, 0.75]))
    (50.0, 25.0)
    """
    probs = np.asarray(probs, dtype=float)
    sem = float(np.std(probs, ddof=1) / np.sqrt(len(probs))) if len(probs) > 1 else float("nan")
    return float(np.mean(probs) * 100), sem * 100


def soft_log_loss(y_true: np.ndarray, y_pred: np.ndarray, weight: np.ndarray | None) -> float:
    """−mean(w · (y log q + (1 − y) log(1 − q))) with q clipped to [1e−15, 1 − 1e−15].

    >>> round(soft_log_loss(np.array([0.5]), np.array([0.5]), None), 12)  # −log(1/2) = log 2
    0.69314718056
    """
    q = np.clip(y_pred, 1e-15, 1 - 1e-15)
    terms = y_true * np.log(q) + (1 - y_true) * np.log(1 - q)
    if weight is not None:
        terms = terms * weight
    return float(-np.mean(terms))


def _l1_logistic(C: float, random_state):
    from sklearn.linear_model import LogisticRegression

    kwargs = dict(C=C, solver="liblinear", fit_intercept=False, dual=False, tol=1e-4, max_iter=100,
                  random_state=random_state)
    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated":
        kwargs["l1_ratio"] = 1.0  # sklearn ≥ 1.8 spells penalty="l1" this way
    else:
        kwargs["penalty"] = "l1"
    return LogisticRegression(**kwargs)


def fit_soft_l1_logistic(X: np.ndarray, y_soft: np.ndarray, row_weight: np.ndarray | None = None,
                         n_splits: int = N_SPLITS) -> np.ndarray:
    """Fit the no-intercept L1 logistic regression on soft labels, C by grouped CV; returns θ (p,).

    X: (n, p) design; y_soft: (n,) targets in [0, 1]; row_weight: (n,) sample weights or None.
    """
    from sklearn.model_selection import GroupKFold

    n = len(y_soft)
    X2 = np.concatenate([X, X], axis=0)
    y2 = np.concatenate([np.ones(n), np.zeros(n)])
    true_prob = np.concatenate([y_soft, 1 - y_soft])  # weight of each duplicated row's label
    true_w = None if row_weight is None else np.concatenate([row_weight, row_weight])
    sample_w = true_prob if true_w is None else true_prob * true_w
    groups = np.concatenate([np.arange(n), np.arange(n)])
    y_score = np.where(y2 == 1, true_prob, 1 - true_prob)  # = y_soft of the original row

    scores = np.zeros(len(CS))
    for train, test in GroupKFold(n_splits=n_splits).split(X2, y2, groups):
        rng = np.random.RandomState(RANDOM_STATE)  # one stream across the C grid, as sklearn's path
        for k, C in enumerate(CS):
            model = _l1_logistic(C, rng).fit(X2[train], y2[train], sample_weight=sample_w[train])
            q = sigmoid(X2[test] @ model.coef_[0])
            w = None if true_w is None else true_w[test]
            scores[k] -= soft_log_loss(y_score[test], q, w)
    best_C = CS[int(np.argmax(scores))]
    final = _l1_logistic(best_C, RANDOM_STATE).fit(X2, y2, sample_weight=sample_w)
    return final.coef_[0].copy()


@dataclass(frozen=True)
class GamedRows:
    """Rows of the gamed baselines (upstream's df_gamed.csv), already featurised."""

    preference: np.ndarray  # (m,) in [0, 1], model-wins probability
    std_delta_len: np.ndarray  # (m,)
    difficulty: np.ndarray  # (m,)


def fit_lc_glm(preference: np.ndarray, std_delta: np.ndarray, difficulty: np.ndarray,
               gamed: GamedRows | None = None, gamed_lambda: float = GAMED_LAMBDA) -> GlmWeights:
    """Fit θ on one model's annotations (``preference`` in [1, 2], NaN rows left out of the fit).

    With ``gamed`` rows: ``length_controlled_v1`` (official). Without: ``length_controlled_noreg``.
    """
    y = np.asarray(preference, dtype=float)
    y = np.where(y == 0.0, 1.5, y) - 1.0
    parts_X = [design(std_delta, difficulty, np.ones(len(y)))]
    parts_y, parts_w = [y], [np.ones(len(y))]
    if gamed is not None:
        parts_X.insert(0, design(gamed.std_delta_len, gamed.difficulty, np.zeros(len(gamed.preference))))
        parts_y.insert(0, np.asarray(gamed.preference, dtype=float))
        parts_w.insert(0, np.full(len(gamed.preference), gamed_lambda / 2))  # two gamed baselines
    X, y_all, w = np.concatenate(parts_X), np.concatenate(parts_y), np.concatenate(parts_w)
    keep = ~np.isnan(y_all)
    theta = fit_soft_l1_logistic(X[keep], y_all[keep], w[keep] if gamed is not None else None)
    return GlmWeights(length=float(theta[0]), difficulty=float(theta[1]), model=float(theta[2]))

"""How well an implicit reward ranks labelled preference pairs: pure numpy/pandas math, then
:func:`evaluate_reward_accuracy` (load pairs, score them under two models, summarize; what
`dicekit eval reward-accuracy` runs).

Input: one row per labelled pair with, per side (``chosen_*`` / ``rejected_*``), ``logp_policy``,
``logp_ref`` (summed response log-probs, nats, token-exact — see dicekit.evals.reward_scoring),
``reward`` (= ``dicekit.core.objectives.implicit_reward(logp_policy, logp_ref)``, computed by the scorer),
``n_tokens`` and ``length`` (in the run's length unit). Optional: ``subset`` (a category),
``truth`` (+1 chosen really better, −1 rejected better, 0 equal, NaN unknown — e.g. from the task
world's oracle).

Variants (each a per-pair *margin*, chosen minus rejected; a pair is ranked right iff margin > 0 —
**ties count as wrong**, as RewardBench does):

* ``dpo``       reward(c) − reward(r): the DPO implicit reward log π/π_ref, summed (Rafailov et al.).
* ``ref_free``  logp_policy(c) − logp_policy(r): reference-free sum.
* ``avg``       logp_policy(c)/n_tokens(c) − logp_policy(r)/n_tokens(r): length-normalised average
                (SimPO-style, without its γ margin, which does not change a ranking).
* ``lr``        reward_lr(c) − reward_lr(r) with reward_lr = reward − α·length (the paper's Eq. 5).
* ``longer``    length(c) − length(r): the "longer wins" rule, the baseline a length-biased reward
                collapses to.

Breakdowns: by length-difference bucket, by subset, against ``truth``; 95% intervals are percentile
bootstraps over pairs (seeded, the same resamples for every variant). RewardBench aggregation:
:func:`rewardbench_sections` (its section weights, see ``REWARDBENCH_EXAMPLE_COUNTS``).

Worked example (``tests/analysis/test_reward_accuracy.py``): rewards (c, r) = (2, 1), (0, 3), (1, 1),
(5, −1) → margins 1, −3, 0, 6 → right, wrong, tie (wrong), right → accuracy 2/4 = 0.5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dicekit.core.pairs import reward_lr
from dicekit.errors import UserError

VARIANTS = ("dpo", "ref_free", "avg", "lr")
VARIANT_NAMES = {
    "dpo": "DPO log-ratio (sum)",
    "ref_free": "reference-free sum",
    "avg": "length-normalised average",
    "lr": "length-regularised (alpha)",
    "longer": "longer wins",
}

# RewardBench (Lambert et al., 2024; github.com/allenai/reward-bench, rewardbench/constants.py):
# a section's score is the example-count-weighted mean of its subsets' accuracies, and the overall
# score the unweighted mean of the four sections. math-prm is counted as 984 (it has 447 pairs) so
# that it weighs as much as the six code subsets together, as upstream does. (Some copies of that
# file swap the two xstest counts; these are the ones in upstream's constants.py.)
REWARDBENCH_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95,
    "mt-bench-easy": 28, "mt-bench-med": 40, "mt-bench-hard": 37,
    "math-prm": 984, "refusals-dangerous": 100, "refusals-offensive": 100,
    "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "xstest-should-refuse": 250, "xstest-should-respond": 154, "donotanswer": 136,
    "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
REWARDBENCH_SECTIONS = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}


def margins(df: pd.DataFrame, alpha: float) -> dict[str, np.ndarray]:
    """Per-pair margins (chosen − rejected) of every variant and of the "longer wins" rule."""
    def side(name):
        return df[f"chosen_{name}"].to_numpy(np.float64), df[f"rejected_{name}"].to_numpy(np.float64)

    (rc, rr), (pc, pr), (nc, nr), (lc, lr_) = side("reward"), side("logp_policy"), side("n_tokens"), side("length")
    return {
        "dpo": rc - rr,
        "ref_free": pc - pr,
        "avg": pc / nc - pr / nr,
        "lr": reward_lr(rc, lc, alpha) - reward_lr(rr, lr_, alpha),
        "longer": lc - lr_,
    }


def correct(margin) -> np.ndarray:
    """Right iff the chosen side scores strictly higher: ties and NaN count as wrong."""
    m = np.asarray(margin, dtype=np.float64)
    return np.greater(m, 0, where=~np.isnan(m), out=np.zeros(m.shape, dtype=bool))


def accuracy(margin) -> float:
    """Share of pairs with margin > 0 (nan for no pairs). accuracy([1, -3, 0, 6]) = 0.5."""
    c = correct(margin)
    return float(c.mean()) if c.size else float("nan")


def bootstrap_ci(hits: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> np.ndarray:
    """Percentile bootstrap interval of the mean of each column of ``hits`` (n, m) → (m, 2).

    Pairs are resampled with replacement; every column sees the same resamples (a paired
    comparison). Seeded, so the interval is reproducible. Fewer than 2 rows → nan intervals.
    """
    hits = np.asarray(hits, dtype=np.float64)
    if hits.ndim == 1:
        hits = hits[:, None]
    n, m = hits.shape
    if n < 2 or n_boot < 1:
        return np.full((m, 2), np.nan)
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, m))
    step = max(1, 2_000_000 // n)
    for lo in range(0, n_boot, step):
        k = min(step, n_boot - lo)
        idx = rng.integers(0, n, size=(k, n))
        means[lo:lo + k] = hits[idx].mean(axis=1)
    q = (1 - level) / 2
    return np.quantile(means, [q, 1 - q], axis=0).T


def default_edges(len_diff) -> list[float]:
    """One bucket edge: the median |length difference| over pairs of unequal length (rounded)."""
    d = np.abs(np.asarray(len_diff, dtype=np.float64))
    d = d[(d > 0) & ~np.isnan(d)]
    if not d.size:
        return []
    m = float(np.median(d))
    return [float(np.round(m, 1 if m < 10 else 0))]


def length_buckets(len_diff, edges) -> tuple[np.ndarray, list[str]]:
    """Bucket index per pair and bucket labels for a signed length difference (chosen − rejected).

    ``edges`` = positive thresholds e1 < … < ek; buckets: < −ek, [−ek, −e(k−1)), …, [−e1, 0), = 0,
    (0, e1], …, > ek. Example, edges [50]: −80 → "< -50", −50 and −10 → "-50 to 0", 0 → "= 0",
    30 and 50 → "0 to 50", 51 → "> 50". No edges: "< 0", "= 0", "> 0".
    """
    e = sorted({float(x) for x in edges if x > 0})
    d = np.asarray(len_diff, dtype=np.float64)
    neg = [-np.inf] + [-x for x in reversed(e)] + [0.0]
    pos = [0.0] + e + [np.inf]
    k = len(e)
    labels = [f"< {_fmt(neg[1])}"] + [f"{_fmt(a)} to {_fmt(b)}" for a, b in zip(neg[1:-1], neg[2:])] + ["= 0"]
    labels += [f"{_fmt(a)} to {_fmt(b)}" for a, b in zip(pos[:-2], pos[1:-1])] + [f"> {_fmt(pos[-2])}"]
    i_neg = np.searchsorted(neg, d, side="right") - 1  # neg[j] <= d < neg[j+1]
    i_pos = np.searchsorted(pos, d, side="left") - 1  # pos[j] < d <= pos[j+1]
    idx = np.where(d < 0, i_neg, np.where(d == 0, k + 1, k + 2 + i_pos))
    return idx.astype(np.int64), labels


def _fmt(x: float) -> str:
    return f"{x:g}"


def _block(hits: np.ndarray, names: list[str], n_boot: int, seed: int) -> dict:
    ci = bootstrap_ci(hits, n_boot, seed)
    return {name: {"accuracy": float(hits[:, j].mean()) if len(hits) else None,
                   "ci_low": to_float(ci[j, 0]), "ci_high": to_float(ci[j, 1])} for j, name in enumerate(names)}


def to_float(x) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def summarize(df: pd.DataFrame, alpha: float = 0.0, *, edges=None, n_boot: int = 1000, seed: int = 0,
              rewardbench: bool = False) -> dict:
    """Accuracy of every variant, overall and by length bucket / subset / ground truth.

    Returns a JSON-ready dict: ``n_pairs``, ``alpha``, ``overall`` {variant: {accuracy, ci_low,
    ci_high}}, ``n_ties`` {variant: pairs with margin 0}, ``by_length`` (list of buckets),
    ``by_subset`` (when ``df`` has a ``subset`` column), ``rewardbench`` (when asked), ``truth``
    (when ``df`` has a ``truth`` column with decided pairs).
    """
    m = margins(df, alpha)
    names = [*VARIANTS, "longer"]
    hits = np.stack([correct(m[k]) for k in names], axis=1) if len(df) else np.zeros((0, len(names)), bool)
    out = {
        "n_pairs": int(len(df)), "alpha": float(alpha),
        "overall": _block(hits, names, n_boot, seed),
        "n_ties": {k: int(np.sum(m[k] == 0)) for k in names},
        "mean_margin": {k: to_float(np.nanmean(m[k])) if len(df) else None for k in names},
    }
    edges = default_edges(m["longer"]) if edges is None else list(edges)
    idx, labels = length_buckets(m["longer"], edges)
    out["length_edges"] = edges
    out["by_length"] = [{"bucket": lab, "n": int((idx == b).sum()), **_block(hits[idx == b], names, n_boot, seed)}
                        for b, lab in enumerate(labels) if (idx == b).any()]
    if "subset" in df.columns and df["subset"].notna().any():
        sub = df["subset"].astype("string").fillna("(none)").to_numpy()
        out["by_subset"] = [{"subset": s, "n": int((sub == s).sum()), **_block(hits[sub == s], names, n_boot, seed)}
                            for s in sorted(set(sub))]
        if rewardbench:
            per = {row["subset"]: {k: row[k]["accuracy"] for k in names} for row in out["by_subset"]}
            out["rewardbench"] = {k: rewardbench_sections({s: v[k] for s, v in per.items()}) for k in names}
    if "truth" in df.columns:
        out["truth"] = truth_agreement(df["truth"].to_numpy(np.float64), m, n_boot, seed)
    return out


def truth_agreement(truth: np.ndarray, m: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict:
    """Agreement with ground truth on pairs it decides (truth ±1): a variant is right when its
    margin has the truth's sign (a zero margin is wrong). ``labels``: how often the data's own
    chosen/rejected label agrees with the truth. Pairs the truth calls equal are counted, not scored.
    """
    decided = (truth == 1) | (truth == -1)
    t = truth[decided]
    names = ["labels", *VARIANTS, "longer"]
    cols = [t == 1] + [correct(m[k][decided] * t) for k in names[1:]]
    hits = np.stack(cols, axis=1) if t.size else np.zeros((0, len(names)), bool)
    return {"n_decided": int(decided.sum()), "n_equal": int((truth == 0).sum()),
            "n_unknown": int(np.isnan(truth).sum()), **_block(hits, names, n_boot, seed)}


def rewardbench_sections(subset_accuracy: dict[str, float]) -> dict[str, float]:
    """RewardBench's section scores and overall ``Score`` (fractions in [0, 1], not percent).

    Section = Σ acc_s·count_s / Σ count_s over its subsets present in ``subset_accuracy``;
    Score = mean of the sections present. Worked example: alpacaeval-easy 1.0 (100), mt-bench-easy
    0.5 (28) → Chat = (100 + 14) / 128 = 0.890625; with nothing else, Score = Chat. Deliberate
    deviation: upstream scores a section with no subsets as 0 and still averages four; here it is
    left out (identical on the full benchmark). Subsets outside RewardBench are ignored.
    """
    out = {}
    for section, subsets in REWARDBENCH_SECTIONS.items():
        present = [s for s in subsets if s in subset_accuracy and subset_accuracy[s] is not None]
        if present:
            w = np.array([REWARDBENCH_EXAMPLE_COUNTS[s] for s in present], dtype=np.float64)
            a = np.array([subset_accuracy[s] for s in present], dtype=np.float64)
            out[section] = float((w * a).sum() / w.sum())
    if out:
        out["Score"] = float(np.mean(list(out.values())))
    return out


def truth_from_quality(q_chosen, q_rejected) -> np.ndarray:
    """+1 / −1 / 0 from two quality scores (NaN where either is missing)."""
    qc, qr = np.asarray(q_chosen, dtype=np.float64), np.asarray(q_rejected, dtype=np.float64)
    return np.where(np.isnan(qc) | np.isnan(qr), np.nan, np.sign(qc - qr))


# --- evaluating (what `dicekit eval reward-accuracy` runs) ----------------------------------------

KEEP = ("subset", "source", "truth", "chosen_quality", "rejected_quality", "alpha", "prompt_ids", "chosen_ids", "rejected_ids")


def load_labelled_pairs(data: str, split: str = "train", limit: int | None = None) -> pd.DataFrame:
    """Labelled pairs from any source the round stage reads (dicekit.data.load_pairs); a round's
    ``pairs.parquet`` has its ``source`` (generated / offline) as ``subset``."""
    from dicekit.data import load_pairs

    pairs = load_pairs(data, split, limit, keep=KEEP).dropna(axis=1, how="all")
    if "subset" not in pairs and "source" in pairs:
        pairs = pairs.rename(columns={"source": "subset"})
    return pairs


def attach_truth(pairs: pd.DataFrame, truth=None) -> pd.DataFrame:
    """``pairs`` with a ``truth`` column (+1/−1/0, NaN unknown): ``truth`` when given (e.g. the task
    world's oracle, dicekit.world.evaluate.oracle_truth), else from ``chosen_quality`` /
    ``rejected_quality``, else the data's own ``truth`` column (checked); unchanged without any."""
    if truth is not None:
        return pairs.assign(truth=np.asarray(truth, dtype=np.float64))
    if "chosen_quality" in pairs and "rejected_quality" in pairs:
        return pairs.assign(truth=truth_from_quality(pairs["chosen_quality"], pairs["rejected_quality"]))
    if "truth" in pairs:
        t = pd.to_numeric(pairs["truth"], errors="coerce").to_numpy(np.float64)
        if np.any(~np.isnan(t) & ~np.isin(t, (-1, 0, 1))):
            raise UserError("field 'truth' must be +1 (chosen better), -1 (rejected better) or 0 (equal)")
        return pairs.assign(truth=t)
    return pairs


def pick_alpha(alpha: float | None, pairs: pd.DataFrame) -> float:
    """``alpha`` when given, else the data's single ``alpha`` value (a round's pairs), else 0."""
    if alpha is not None:
        return float(alpha)
    if "alpha" in pairs:
        vals = pd.to_numeric(pairs["alpha"], errors="coerce").dropna().unique()
        if len(vals) == 1:
            return float(vals[0])
    return 0.0


def evaluate_reward_accuracy(policy: str, reference: str, pairs: pd.DataFrame, *, truth=None,
                             alpha: float | None = None, length_unit: str = "chars", edges=None,
                             rewardbench: bool = False, n_boot: int = 1000, seed: int = 0, dtype: str = "float32",
                             tokens_per_batch: int | None = None, quiet: bool = True) -> tuple[dict, pd.DataFrame]:
    """(summary dict, per-pair scores) of the implicit reward of ``policy`` over ``reference`` on
    ``pairs`` (a :func:`load_labelled_pairs` frame), scored token-exact by
    dicekit.evals.reward_scoring.score_pairs; ``truth`` as in :func:`attach_truth`."""
    from dicekit.evals.reward_scoring import score_pairs

    pairs = attach_truth(pairs, truth)
    a = pick_alpha(alpha, pairs)
    scored = score_pairs(policy, reference, pairs, length_unit=length_unit, dtype=dtype,
                         tokens_per_batch=tokens_per_batch, quiet=quiet)
    summary = summarize(scored, a, edges=edges, n_boot=n_boot, seed=seed, rewardbench=rewardbench)
    summary = {"policy": policy, "reference": reference, "length_unit": length_unit, "n_boot": n_boot,
               "seed": seed, **summary}
    return summary, scored

"""Round diagnostic: does the implicit reward agree with a judge on the policy's *own* samples?

A DICE round can only help if the implicit reward carries quality signal on the samples it ranks
(π_t ∝ π_{t−1}·e^r over-samples outputs whose reward is high for reasons unrelated to quality; see
the paper's "alignment rate", 0.698 agreement with GPT-4o on first-round samples). For one round's
samples.parquet and any pairwise judge this measures, on a seeded subsample:

* ``pairs_alpha_star`` / ``pairs_alpha_0``: the best-vs-worst pairs the round selects at α* and at
  α = 0 — how often the judge also prefers the chosen response;
* ``random_pairs``: one random pair of samples per prompt — how often the judge agrees with the
  ranking by the raw reward and by the length-regularised reward at α*;
* for every set, the agreement of the length-only ranker ("longer wins"): the baseline to beat.

Each judged comparison is also returned (``_judgements``: set, prompt_id, sample_id_a, sample_id_b,
preference of b over a, judge_agrees with the implicit reward), written by the round as
``diagnostic_pairs.parquet`` so the dashboard can mark the pairs where the judge disagrees.

Agreement counts only comparisons where both the judge and the ranker express a preference (judge
draws — preference 1.5 — and ranker ties are left out and counted in ``n_ties``); 95% intervals are
percentile bootstrap over pairs. The judge is called once per distinct comparison, through the
evaluation suite's annotate() (identical outputs are draws without a call; a cache when the judge
has one). Nothing here runs unless asked (``diagnose: true`` or ``dicekit diagnose``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.core import pairs as P
from dicekit.progress import say


def agreement(ranker_diff, judge_pref) -> tuple[np.ndarray, int]:
    """Per-comparison hits (1/0) where both sides decide, and the number of undecided ones.

    ``ranker_diff``: score(b) − score(a) for the comparison (a = output_1, b = output_2);
    ``judge_pref``: the judge's preference in [1, 2] for b over a (None/nan = no answer).
    Worked example: diffs (+1, −2, +3, 0), prefs (2, 1.2, 1.5, 2) → hits [1, 1], 2 undecided.
    """
    d = np.asarray(ranker_diff, dtype=np.float64)
    j = np.asarray([np.nan if p is None else p for p in judge_pref], dtype=np.float64) - 1.5
    decided = (d != 0) & np.isfinite(j) & (j != 0)
    hits = (np.sign(d[decided]) == np.sign(j[decided])).astype(np.float64)
    return hits, int((~decided).sum())


def summarise(hits: np.ndarray, n_ties: int, seed: int) -> dict:
    """Agreement, its 95% percentile-bootstrap interval (dicekit.evals.reward_accuracy.bootstrap_ci,
    1000 resamples; None below two comparisons) and the counts."""
    from dicekit.evals.reward_accuracy import bootstrap_ci, to_float

    lo, hi = (to_float(x) for x in bootstrap_ci(hits, 1000, seed)[0])
    return {"agreement": float(hits.mean()) if len(hits) else None, "ci_low": lo, "ci_high": hi,
            "n_decided": int(len(hits)), "n_ties": n_ties}


@dataclass(frozen=True)
class Comparisons:
    """Rows of (prompt, response a, response b) with the rankers' score differences b − a."""

    prompt: list
    a: list
    b: list
    diffs: dict  # ranker name -> np.ndarray of score(b) - score(a)


def selected_pairs(samples: pd.DataFrame, alpha: float, unit: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rejected rows, chosen rows) of the best-vs-worst pairs at α, kept ones only — the same
    selection as the round's (dicekit.core.pairs.pack_valid: identical responses are degenerate)."""
    chosen, rejected, _, _ = P.selected_rows(*P.pack_valid(samples, unit), alpha)
    return rejected, chosen


def random_pairs(samples: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One random pair of distinct valid samples per prompt (seeded)."""
    valid = samples[samples["valid"]].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    a_idx, b_idx = [], []
    for _, idx in valid.groupby("prompt_id", sort=True).indices.items():
        if len(idx) >= 2:
            i, j = rng.choice(idx, size=2, replace=False)
            a_idx.append(i)
            b_idx.append(j)
    return valid.iloc[a_idx].reset_index(drop=True), valid.iloc[b_idx].reset_index(drop=True)


def _subsample(a: pd.DataFrame, b: pd.DataFrame, n: int | None, seed: int):
    if n is None or len(a) <= n:
        return a, b
    keep = np.sort(np.random.default_rng(seed).choice(len(a), size=n, replace=False))
    return a.iloc[keep].reset_index(drop=True), b.iloc[keep].reset_index(drop=True)


def diagnose_samples(samples: pd.DataFrame, judge, *, alpha_star: float, unit: str = "chars",
                     max_pairs: int | None = 200, seed: int = 0, cache=None) -> dict:
    """The diagnostic for one round's samples (see module docstring). ``judge``: a PairwiseJudge."""
    from dicekit.evals.alpaca import annotate
    from dicekit.evals.judges import Comparison

    sets = {}
    for name, alpha in (("pairs_alpha_star", alpha_star), ("pairs_alpha_0", 0.0)):
        rej, cho = selected_pairs(samples, alpha, unit)
        sets[name] = _subsample(rej, cho, max_pairs, seed)
    sets["random_pairs"] = _subsample(*random_pairs(samples, seed), max_pairs, seed + 1)

    items, where = [], {}
    for name, (a, b) in sets.items():
        for pa, ra, rb in zip(a["prompt"], a["response"], b["response"]):
            c = Comparison(pa, ra, rb)
            if c not in where:
                where[c] = len(items)
                items.append(c)
    judgements, stats = annotate(items, judge, cache) if items else ([], None)
    pref = [None if j is None else j.preference for j in judgements]
    out: dict = {"judge": getattr(judge, "name", type(judge).__name__), "alpha_star": alpha_star,
                 "n_judge_items": len(items), "n_judge_calls": getattr(stats, "n_called", 0)}
    rows = []
    for k, (name, (a, b)) in enumerate(sets.items()):
        p = [pref[where[Comparison(pa, ra, rb)]] for pa, ra, rb in zip(a["prompt"], a["response"], b["response"])]
        reward_diff = b["reward"].to_numpy() - a["reward"].to_numpy()
        length_diff = P.sample_lengths(b, unit) - P.sample_lengths(a, unit)
        lr_diff = reward_diff - alpha_star * length_diff
        rankers = {
            "pairs_alpha_star": {"implicit_reward": lr_diff},  # the score that selected them
            "pairs_alpha_0": {"implicit_reward": reward_diff},
            "random_pairs": {"implicit_reward": reward_diff, "implicit_reward_lr": lr_diff},
        }[name] | {"longer_wins": length_diff}
        out[name] = {"n_pairs": int(len(a))}
        for r_name, diff in rankers.items():
            hits, ties = agreement(diff, p)
            out[name][r_name] = summarise(hits, ties, seed + 10 * k)
        first = next(iter(rankers.values()))
        rows.append(pd.DataFrame({
            "set": name, "prompt_id": a["prompt_id"].to_numpy(), "sample_id_a": a["sample_id"].to_numpy(),
            "sample_id_b": b["sample_id"].to_numpy(), "preference": np.array([np.nan if x is None else x for x in p]),
            "judge_agrees": [None if (x is None or x == 1.5 or d == 0) else bool((x > 1.5) == (d > 0))
                             for x, d in zip(p, first)],
        }))
    out["_judgements"] = pd.concat(rows, ignore_index=True)
    return out


def format_diagnostic(d: dict) -> str:
    """Two or three lines for the end of a round."""
    def cell(x):
        if not x or x.get("agreement") is None:
            return "n/a"
        return f"{x['agreement']:.2f} [{x['ci_low']:.2f}, {x['ci_high']:.2f}] (n={x['n_decided']})"

    lines = [f"diagnostic (judge {d['judge']}, {d['n_judge_calls']} judge calls):"]
    for name, label in (("pairs_alpha_star", "pairs at α*"), ("pairs_alpha_0", "pairs at α=0"), ("random_pairs", "random pairs")):
        s = d.get(name, {})
        lines.append(f"  {label:<13} implicit reward agrees {cell(s.get('implicit_reward'))};"
                     f" longer-wins {cell(s.get('longer_wins'))}")
    return "\n".join(lines)


def diagnose_round(run_dir, t: int, samples: pd.DataFrame, alpha: float, judge_spec: str, *, base_url=None,
                   api_key_env="OPENAI_API_KEY", max_pairs=200, unit="chars", seed=0, quiet=False) -> dict:
    """The round diagnostic (dicekit.analysis.diagnose) with the configured judge; printed and returned."""
    from dicekit.evals.judge_factory import judge_from_spec
    from dicekit.world.judge import OracleJudge

    judge = judge_from_spec(judge_spec, base_url=base_url, api_key_env=api_key_env, flag="judge", oracle=OracleJudge)
    cache = None
    if hasattr(judge, "identity"):
        from dicekit.evals.cache import AnnotationCache, default_cache_dir

        cache = AnnotationCache(default_cache_dir(), judge.identity())
    d = diagnose_samples(samples, judge, alpha_star=alpha, unit=unit, max_pairs=max_pairs, seed=seed, cache=cache)
    rundir.write_parquet(rundir.round_dir(run_dir, t) / "diagnostic_pairs.parquet", d.pop("_judgements"))
    say(format_diagnostic(d), quiet)
    return d

"""Between scoring and pairs: the previous rounds' rewards of the round's samples (consistency,
cumulative reward) → previous_rewards.parquet, and the judge-free round monitor
(:mod:`dicekit.analysis.health`) → health.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import data, rundir
from dicekit.config import RoundConfig
from dicekit.core import pairs as P
from dicekit.core.reward import implicit_reward
from dicekit.progress import say
from dicekit.round import dist
from dicekit.round.chain import OneModel, models_for_round
from dicekit.round.pairing import round_alpha


def needs_previous(cfg: RoundConfig, t: int) -> bool:
    """Does round t score its samples under earlier models (previous reward, cumulative reward)?"""
    consistency = cfg.health_previous_reward or (cfg.gate and cfg.gate_signal == "consistency")
    return t >= 2 and (consistency or cfg.filter_consistent or cfg.reward_mode == "cumulative")


def stage_previous(cfg: RoundConfig, t: int, rdir: Path, models: OneModel, samples: pd.DataFrame) -> pd.DataFrame | None:
    """The valid samples scored under π_{t-3} (and π_{-1} for ``reward_mode: cumulative``) →
    previous_rewards.parquet: prompt_id, sample_id, ``reward_previous`` = log π_{t-2} − log π_{t-3}
    (the reward round t−1 ranked its pairs by) and ``reward_cumulative`` = log π_{t-1} − log π_{-1}
    (nan unless cumulative). None when round t needs neither (round 1 never does)."""
    from dicekit.round.score import score_samples

    if not needs_previous(cfg, t):
        return None
    out = rdir / "previous_rewards.parquet"
    if out.exists():
        return pd.read_parquet(out)
    valid = samples[samples["valid"]].reset_index(drop=True)
    prev_ref = models_for_round(cfg, t - 1)[1]  # the reference of round t-1: π_{t-3}
    specs = {"logp_prev_ref": prev_ref}
    if cfg.reward_mode == "cumulative":
        specs["logp_base"] = cfg.reference
    scores = {}
    for column, spec in specs.items():
        if column == "logp_base" and spec == prev_ref:
            scores[column] = scores["logp_prev_ref"]  # round 2: π_{t-3} is π_{-1}
            continue
        model, _ = models.get(spec)
        scores[column] = score_samples(model, valid, rdir / ".work" / f"score_{column}", column=column, quiet=cfg.quiet,
                                       tokens_per_batch=cfg.score_tokens_per_batch,
                                       label=f"scoring under {Path(spec).name or spec}").to_numpy()
    lp_base = scores.get("logp_base", np.full(len(valid), np.nan))
    df = pd.DataFrame({"prompt_id": valid["prompt_id"].to_numpy(), "sample_id": valid["sample_id"].to_numpy(),
                       "logp_prev_ref": scores["logp_prev_ref"], "logp_base": lp_base,
                       "reward_previous": implicit_reward(valid["logp_ref"].to_numpy(), scores["logp_prev_ref"]),
                       "reward_cumulative": implicit_reward(valid["logp_policy"].to_numpy(), lp_base)})
    if dist.is_main():
        rundir.write_parquet(out, df)
    return df


def ranking_samples(cfg: RoundConfig, samples: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The samples with ``reward`` as the round ranks them: unchanged, or the cumulative reward."""
    if cfg.reward_mode != "cumulative" or previous is None:
        return samples
    cum = previous.set_index(["prompt_id", "sample_id"])["reward_cumulative"]
    out = samples.copy()
    out["reward"] = cum.reindex(list(zip(samples["prompt_id"], samples["sample_id"]))).to_numpy()
    return out


def stage_health(cfg: RoundConfig, t: int, rdir: Path, samples: pd.DataFrame, previous: pd.DataFrame | None,
                 policy: str, reference: str, models: OneModel | None = None) -> dict | None:
    """The round monitor (dicekit.analysis.health) on the round's own reward → health.json."""
    import json

    from dicekit.analysis import health as H

    if not cfg.health:
        return None
    out = rdir / "health.json"
    if out.exists():
        return json.loads(out.read_text())
    seed = cfg.seed + t
    valid, groups, alpha, _, _ = round_alpha(cfg, samples)
    h: dict = {"alpha": alpha, "heldout_accuracy": _heldout_signal(cfg, t, policy, reference, alpha, seed, models)}
    h["heldout_dpo"] = H.heldout_dpo(h["heldout_accuracy"])
    if previous is None:
        h["consistency"] = H.unavailable("round 1 has no previous reward" if t == 1 else
                                         "previous reward not scored (health_previous_reward: false)")
    else:
        prev = previous.set_index(["prompt_id", "sample_id"])["reward_previous"]
        v = valid[["prompt_id", "sample_id", "reward"]]
        h["consistency"] = H.consistency(v["prompt_id"], v["reward"],
                                         prev.reindex(list(zip(v["prompt_id"], v["sample_id"]))).to_numpy(), seed=seed)
    c, r, _, _ = P.selected_rows(valid, groups, alpha)
    sides = {}
    for side, rows in (("chosen", c), ("rejected", r)):
        for col in ("reward", "logp_policy", "n_tokens"):
            sides[f"{side}_{col}"] = rows[col].to_numpy(np.float64)
        sides[f"{side}_length"] = P.sample_lengths(rows, cfg.length_unit)
    h["variant_agreement"] = H.variant_agreement(pd.DataFrame(sides), alpha, seed=seed)
    h["verdict"] = H.verdict(h, cfg.gate_signal, cfg.gate_threshold)
    if dist.is_main():
        rundir.write_json(out, h)
    say(H.format_health(h), cfg.quiet or not dist.is_main())
    return h


def _heldout_signal(cfg: RoundConfig, t: int, policy: str, reference: str, alpha: float, seed: int,
                    models: OneModel | None = None) -> dict:
    """The round's reward (π_{t-1} against π_{t-2}) on labelled pairs it does not train on, scored with
    the round's loaded model(s) (``models``) rather than fresh loads."""
    from dicekit.analysis.health import heldout_from_summary, unavailable
    from dicekit.evals.reward_accuracy import summarize
    from dicekit.evals.reward_scoring import score_pairs

    source = cfg.health_pairs or cfg.offline_data
    if not source:
        return unavailable("no labelled pairs (set health_pairs or offline_data)")
    split = cfg.offline_split if not cfg.health_pairs else "train"
    pairs = data.load_pairs(source, split)
    if len(pairs) > cfg.health_max_pairs:  # the same slice every round
        keep = np.sort(np.random.default_rng([cfg.seed, 3]).choice(len(pairs), cfg.health_max_pairs, replace=False))
        pairs = pairs.iloc[keep].reset_index(drop=True)
    scored = score_pairs(policy, reference, pairs, length_unit=cfg.length_unit, dtype=cfg.score_dtype,
                         tokens_per_batch=cfg.score_tokens_per_batch, quiet=True, models=models)
    out = heldout_from_summary(summarize(scored, alpha, seed=seed))
    out["source"] = "health_pairs" if cfg.health_pairs else "offline_data (pairs earlier rounds may have trained on)"
    return out

"""Stage 3 of a round: α* (Eq. 6), best-vs-worst pairs (Eq. 5), the stabilisers, the replay mix with
offline pairs (γ) and their reference log-probs under π_{t-1} → alpha_sweep.csv, stabilisers.json,
pairs.parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import data, rundir
from dicekit.config import RoundConfig
from dicekit.core import pairs as P
from dicekit.errors import UserError
from dicekit.round.chain import OneModel


def generated_pairs(valid: pd.DataFrame, groups: P.Groups, alpha: float, unit: str) -> tuple[pd.DataFrame, int]:
    """Best-vs-worst pairs at α (kept ones, in prompt order) and the number of degenerate ones."""
    c, r, sel, g = P.selected_rows(valid, groups, alpha)
    lc, lr = P.sample_lengths(c, unit), P.sample_lengths(r, unit)
    df = pd.DataFrame({
        "prompt_id": c["prompt_id"], "prompt": c["prompt"], "chosen": c["response"], "rejected": r["response"],
        "source": "generated", "chosen_sample_id": c["sample_id"].astype("Int64"),
        "rejected_sample_id": r["sample_id"].astype("Int64"),
        "chosen_reward_lr": sel.chosen_score[g], "rejected_reward_lr": sel.rejected_score[g], "alpha": alpha,
        "chosen_reward": c["reward"], "rejected_reward": r["reward"], "chosen_length": lc, "rejected_length": lr,
        "prompt_ids": c["prompt_ids"], "chosen_ids": c["response_ids"], "rejected_ids": r["response_ids"],
        "ref_chosen_logps": c["logp_policy"], "ref_rejected_logps": r["logp_policy"],
    })
    return df, sel.n_degenerate


def round_alpha(cfg: RoundConfig, samples: pd.DataFrame):
    """(valid samples, Groups, α used, α*, α sweep table) of a round's samples (Eq. 6 search)."""
    valid, groups = P.pack_valid(samples, cfg.length_unit)
    grid = P.alpha_grid(*cfg.alpha_grid)
    alpha_star, tried, mean_diff, n_pairs = P.search_alpha(groups, grid, cfg.alpha_search)
    alpha = alpha_star if cfg.alpha is None else float(cfg.alpha)
    sweep = pd.DataFrame({"alpha": tried, "mean_len_diff": mean_diff, "n_pairs": n_pairs})
    return valid, groups, alpha, alpha_star, sweep


def stage_pairs(cfg: RoundConfig, t: int, rdir: Path, models: OneModel, samples: pd.DataFrame, policy: str,
                previous: pd.DataFrame | None = None, health: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """α* search, pairs, stabilisers, replay → alpha_sweep.csv + stabilisers.json + pairs.parquet.

    ``samples``' ``reward`` is the one pairs are ranked by (the cumulative reward under
    ``reward_mode: cumulative``); ``previous``/``health``: see :func:`stabilise`."""
    import json

    out = rdir / "pairs.parquet"
    valid, groups, alpha, alpha_star, sweep = round_alpha(cfg, samples)
    info = {"alpha": alpha, "alpha_star": alpha_star}
    if out.exists():
        stab = rdir / "stabilisers.json"
        info["stabilisers"] = json.loads(stab.read_text()) if stab.exists() else None
        return pd.read_parquet(out), info
    rundir.write_csv(rdir / "alpha_sweep.csv", sweep)
    gen, n_degenerate = generated_pairs(valid, groups, alpha, cfg.length_unit)
    info["n_degenerate"] = n_degenerate
    gen, stab = stabilise(cfg, t, gen, previous, health)
    gamma = stab["replay_ratio"]
    info["stabilisers"] = stab
    offline = None
    n_off_avail = 0
    if gamma > 0:
        offline = data.load_pairs(cfg.offline_data, cfg.offline_split, cfg.max_offline_pairs)
        used = set(gen["prompt"])
        offline_keys = [data.prompt_key(p) for p in offline["prompt"]]
        n_off_avail = sum(k not in used for k in offline_keys)
    if cfg.replay_counts == "official":
        n_total = 0 if offline is None else len(offline)
        n_gen, n_off = P.replay_counts_official(len(gen), n_total, n_off_avail, gamma, cfg.max_pairs)
    else:
        n_gen, n_off = P.replay_counts(len(gen), n_off_avail, gamma, cfg.max_pairs)
    if n_gen < len(gen):
        keep = np.sort(np.random.default_rng([cfg.seed, t, 1]).choice(len(gen), n_gen, replace=False))
        gen = gen.iloc[keep].reset_index(drop=True)
    frames = [gen]
    if n_off:
        idx = P.draw_offline(offline_keys, set(gen["prompt"]), n_off, seed=[cfg.seed, t, 2])
        frames.append(_offline_rows(offline.iloc[idx].reset_index(drop=True), models, policy, rdir, cfg, alpha))
    result = pd.concat(frames, ignore_index=True)
    if len(result) == 0:
        raise UserError(f"{cfg.prompts}: round {t} has no training pairs (no prompt had "
                        f"{cfg.min_valid_samples} valid samples and replay_ratio is {gamma})")
    stab.update(n_pairs_generated=n_gen, n_pairs_offline=n_off)
    rundir.write_json(rdir / "stabilisers.json", stab)
    rundir.write_parquet(out, result)
    return result, info


def stabilise(cfg: RoundConfig, t: int, gen: pd.DataFrame, previous: pd.DataFrame | None,
              health: dict | None) -> tuple[pd.DataFrame, dict]:
    """Apply the configured stabilisers to the generated pairs; returns (kept pairs, record).

    ``filter_consistent``: keep pairs the previous round's reward (``previous``: prompt_id,
    sample_id, reward_previous; None in round 1) orders the same way; ``filter_top_fraction``: keep
    that fraction with the largest margins; ``gate``: the replay ratio becomes 1 (offline pairs
    only) when dicekit.analysis.health.gate_decision says the round's signal predicts harm. The
    record says what each did (pairs kept, the gate's decision and why) and the replay ratio used."""
    from dicekit.analysis.health import gate_decision

    rec: dict = {"reward_mode": cfg.reward_mode, "n_generated_pairs_selected": int(len(gen))}
    if cfg.filter_consistent:
        if previous is None:
            rec["filter_consistent"] = {"applied": False, "reason": "round 1 has no previous reward"}
        else:
            prev = previous.set_index(["prompt_id", "sample_id"])["reward_previous"]
            look = lambda col: prev.reindex(list(zip(gen["prompt_id"], gen[col].astype("int64")))).to_numpy()  # noqa: E731
            keep = P.consistent_pairs(look("chosen_sample_id"), look("rejected_sample_id"))
            rec["filter_consistent"] = {"applied": True, "kept": int(keep.sum()), "dropped": int((~keep).sum())}
            gen = gen[keep].reset_index(drop=True)
    if cfg.filter_top_fraction is not None:
        keep = P.top_margin_pairs(gen["chosen_reward_lr"] - gen["rejected_reward_lr"], cfg.filter_top_fraction)
        rec["filter_top_fraction"] = {"applied": True, "fraction": cfg.filter_top_fraction, "kept": int(keep.sum()),
                                      "dropped": int((~keep).sum())}
        gen = gen[keep].reset_index(drop=True)
    gamma = cfg.replay_ratio
    if cfg.gate:
        decision = gate_decision(health or {}, cfg.gate_signal, cfg.gate_threshold)
        rec["gate"] = decision
        if decision["fallback"]:
            gamma = 1.0
    rec["n_generated_pairs_kept"] = int(len(gen))
    rec["replay_ratio"] = gamma
    return gen, rec


def _offline_rows(off: pd.DataFrame, models: OneModel, policy: str, rdir: Path, cfg: RoundConfig, alpha: float) -> pd.DataFrame:
    """Offline pairs tokenised with the generation template, reference log-probs under π_{t-1}."""
    from dicekit.models import end_of_turn_id, prompt_ids, response_ids, stop_token_ids
    from dicekit.round.score import score_samples

    model, tok = models.get(policy)
    eot = end_of_turn_id(tok, stop_token_ids(model, tok))
    p_ids = [prompt_ids(tok, p) for p in off["prompt"]]
    c_ids = [response_ids(tok, x, eot) for x in off["chosen"]]
    r_ids = [response_ids(tok, x, eot) for x in off["rejected"]]
    n = len(off)
    both = pd.DataFrame({"prompt_id": list(off["prompt_id"]) * 2, "sample_id": list(range(2 * n)),
                         "prompt_ids": p_ids * 2, "response_ids": c_ids + r_ids})
    lp = score_samples(model, both, rdir / ".work" / "score_offline", column="logp", quiet=cfg.quiet,
                       tokens_per_batch=cfg.score_tokens_per_batch, label="scoring offline pairs").to_numpy()
    return pd.DataFrame({
        "prompt_id": off["prompt_id"], "prompt": [data.prompt_key(p) for p in off["prompt"]],
        "chosen": off["chosen"], "rejected": off["rejected"], "source": "offline",
        "chosen_sample_id": pd.array([None] * n, dtype="Int64"), "rejected_sample_id": pd.array([None] * n, dtype="Int64"),
        "chosen_reward_lr": np.nan, "rejected_reward_lr": np.nan, "alpha": alpha,
        "chosen_reward": np.nan, "rejected_reward": np.nan,
        "chosen_length": [len(x) if cfg.length_unit == "chars" else len(i) for x, i in zip(off["chosen"], c_ids)],
        "rejected_length": [len(x) if cfg.length_unit == "chars" else len(i) for x, i in zip(off["rejected"], r_ids)],
        "prompt_ids": p_ids, "chosen_ids": c_ids, "rejected_ids": r_ids,
        "ref_chosen_logps": lp[:n], "ref_rejected_logps": lp[n:],
    })

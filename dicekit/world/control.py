"""The oracle-pairs control: round 1 again, with the implicit reward replaced by the truth.

DICE can only help if (a) the implicit reward ranks the policy's own samples better than chance and
(b) the training stage can turn well-ranked pairs into a better policy. This control isolates (b):
from round 1's own ``samples.parquet`` (π_0's K samples, already scored), per prompt the sample of
highest oracle quality is chosen and the one of lowest rejected (ties broken by a seeded coin;
prompts whose samples all have the same quality give no pair), mixed with the very offline rows
round 1 replayed, and trained from π_0 with the round's settings through the same
``dicekit.round.train.train_dpo``. If this model does not beat π_0 either, no ranker could have helped.

Writes ``<run>/controls/oracle_pairs/`` : ``pairs.parquet`` (generated rows carry the oracle
qualities), ``model/``, ``train_log.jsonl``. The reference log-probs of generated pairs are the
samples' ``logp_policy`` (log π_0), as in a round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit.world.oracle import quality


def oracle_pairs(samples: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Best-vs-worst pairs by oracle quality over each prompt's valid samples (token IDs kept)."""
    rng = np.random.default_rng([seed, 31])
    valid = samples[samples["valid"]].sort_values(["prompt_id", "sample_id"])
    rows = []
    for pid, g in valid.groupby("prompt_id", sort=True):
        g = g.reset_index(drop=True)
        q = np.array([quality(p, r) for p, r in zip(g["prompt"], g["response"])])
        if q.max() == q.min():
            continue
        tie = rng.random(len(g))
        c = int(np.lexsort((tie, -q))[0])  # highest quality, random among equals
        r = int(np.lexsort((tie, q))[0])
        rows.append({
            "prompt_id": pid, "prompt": g.at[c, "prompt"], "chosen": g.at[c, "response"], "rejected": g.at[r, "response"],
            "source": "generated", "chosen_sample_id": int(g.at[c, "sample_id"]), "rejected_sample_id": int(g.at[r, "sample_id"]),
            "chosen_quality": float(q[c]), "rejected_quality": float(q[r]),
            "prompt_ids": list(g.at[c, "prompt_ids"]), "chosen_ids": list(g.at[c, "response_ids"]),
            "rejected_ids": list(g.at[r, "response_ids"]),
            "ref_chosen_logps": float(g.at[c, "logp_policy"]), "ref_rejected_logps": float(g.at[r, "logp_policy"]),
        })
    return pd.DataFrame(rows)


def run_oracle_control(run_dir: Path, cfg, seed: int) -> Path:
    """Train the control model of round 1 (skipped when it exists); returns its folder."""
    from dicekit import rundir
    from dicekit.round.train import train_dpo

    out = Path(run_dir) / "controls" / "oracle_pairs"
    if (out / "model").exists():
        return out
    r1 = Path(run_dir) / "round_1"
    gen = oracle_pairs(pd.read_parquet(r1 / "samples.parquet"), seed)
    round_pairs = pd.read_parquet(r1 / "pairs.parquet")
    n_gen = int((round_pairs["source"] == "generated").sum())
    offline = round_pairs[round_pairs["source"] == "offline"]
    if n_gen and len(gen) > n_gen:  # as many generated pairs as the round trained on
        gen = gen.iloc[np.sort(np.random.default_rng([seed, 32]).choice(len(gen), n_gen, replace=False))]
    rows = pd.concat([gen, offline], ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_parquet(out / "pairs.parquet", rows)
    train_dpo(cfg.policy, rows, out / "model", cfg, out / "train_log.jsonl", out / ".work", seed=cfg.seed + 1)
    rundir.cleanup_work(out)
    return out

"""Evaluate policies in the task world: oracle win rate, length, quality, implicit-reward accuracy.

Writers (generate or score, then write per-item files) and readers (compute numbers from those
files) are kept apart so every number of the demo's table can be recomputed from what it wrote:

* :func:`generate_outputs` → ``outputs.jsonl``: one line per eval prompt — the policy's response,
  the fixed reference response, both oracle qualities and the oracle judge's preference.
* :func:`score_pairs` → ``reward_pairs.jsonl``: per held-out pair the implicit reward
  (logp_policy − logp_reference, dicekit.objectives.implicit_reward) of chosen and rejected, the
  annotator's label (chosen is the one the annotator preferred) and both oracle qualities.
* :func:`summarize_outputs`, :func:`summarize_rewards`, :func:`own_sample_diagnostics`: numbers.

``own_sample_diagnostics`` is the DICE precondition measured on a round's ``samples.parquet``: does
the implicit reward of π_{t-1} rank π_{t-1}'s *own* K samples per prompt the way the oracle does?
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit import pairs as P
from dicekit.world import metrics
from dicekit.world.judge import OracleJudge
from dicekit.world.oracle import quality


# ----------------------------------------------------------------------------- writers


def generate_outputs(model_dir: str | Path, eval_prompts: list[dict], out_path: Path, *, temperature: float,
                     max_new_tokens: int, seed: int, samples: int = 1, top_p: float = 1.0, quiet: bool = True) -> Path:
    """Generate ``samples`` responses per eval prompt and write them with their oracle judgement."""
    from dicekit.evals.judges import Comparison
    from dicekit.generate import complete
    from dicekit.models import load_model

    model, tok = load_model(str(model_dir))
    prompts = [p["prompt"] for p in eval_prompts] * samples
    outs = complete(model, tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    seed=seed, batch_size=256, quiet=quiet)
    rows = []
    for i, out in enumerate(outs):
        p = eval_prompts[i % len(eval_prompts)]
        rows.append({"prompt_id": p["prompt_id"], "sample": i // len(eval_prompts), "prompt": p["prompt"],
                     "family": p.get("family", ""), "output": out, "reference": p["reference"]})
    prefs = OracleJudge().judge([Comparison(r["prompt"], r["reference"], r["output"]) for r in rows])
    for r, pref in zip(rows, prefs):
        r["quality"] = quality(r["prompt"], r["output"])
        r["quality_reference"] = quality(r["prompt"], r["reference"])
        r["preference"] = pref
    rundir.write_jsonl(out_path, rows)
    return out_path


def score_pairs(policy_dir: str | Path, reference_dir: str | Path, pairs: list[dict], out_path: Path) -> Path:
    """Implicit reward of chosen and rejected under (policy, reference) for each held-out pair."""
    from dicekit.models import end_of_turn_id, load_model, prompt_ids, response_ids, stop_token_ids
    from dicekit.objectives import implicit_reward
    from dicekit.score import score_sequences

    logps = {}
    for name, spec in (("policy", policy_dir), ("reference", reference_dir)):
        model, tok = load_model(str(spec))
        eot = end_of_turn_id(tok, stop_token_ids(model, tok))
        p_ids = [prompt_ids(tok, p["prompt"]) for p in pairs]
        for side in ("chosen", "rejected"):
            r_ids = [response_ids(tok, p[side], eot) for p in pairs]
            logps[name, side] = score_sequences(model, p_ids, r_ids)
    rows = []
    for i, p in enumerate(pairs):
        rows.append({
            "prompt_id": p["prompt_id"], "prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
            "reward_chosen": float(implicit_reward(logps["policy", "chosen"][i], logps["reference", "chosen"][i])),
            "reward_rejected": float(implicit_reward(logps["policy", "rejected"][i], logps["reference", "rejected"][i])),
            "quality_chosen": p.get("quality_chosen", quality(p["prompt"], p["chosen"])),
            "quality_rejected": p.get("quality_rejected", quality(p["prompt"], p["rejected"])),
        })
    rundir.write_jsonl(out_path, rows)
    return out_path


# ----------------------------------------------------------------------------- readers


def summarize_outputs(rows: list[dict]) -> dict:
    """Win rate vs the fixed reference (oracle judge), mean length in characters, mean quality."""
    df = pd.DataFrame(rows)
    wr = metrics.win_rate(df["preference"].tolist())
    return {**wr, "avg_length": float(df["output"].str.len().mean()), "quality": float(df["quality"].mean()),
            "quality_reference": float(df["quality_reference"].mean())}


def summarize_rewards(rows: list[dict]) -> dict:
    """Implicit-reward accuracy against the annotators' labels and against the oracle (non-tied pairs)."""
    df = pd.DataFrame(rows)
    margin = df["reward_chosen"] - df["reward_rejected"]
    dq = df["quality_chosen"] - df["quality_rejected"]
    untied = dq != 0
    return {
        "reward_acc_annotator": metrics.accuracy(margin),
        "reward_acc_oracle": metrics.accuracy((margin * np.sign(dq))[untied]),
        "annotator_acc_oracle": metrics.accuracy(np.sign(dq)[untied]),
        "n_pairs": int(len(df)), "n_untied": int(untied.sum()),
    }


def own_sample_diagnostics(samples: pd.DataFrame, alpha: float = 0.0, length_col: str = "n_chars") -> dict:
    """The DICE precondition on one round's samples (columns prompt_id, prompt, response, reward and
    ``length_col``; only ``valid`` rows if that column exists).

    * ``own_pair_agreement``: among within-prompt sample pairs of different oracle quality, the
      fraction the length-regularised reward (reward − α·length) orders like the oracle.
    * ``own_corr_quality`` / ``own_corr_length``: within-prompt correlation of that reward with
      quality / with length.
    * ``bw_agreement``: among best-vs-worst pairs (DICE's choice) of different quality, the fraction
      where the chosen one is better; ``bw_quality_gain``: mean quality(chosen) − mean quality of all
      samples of the prompt (how much the selection helps on average).
    """
    df = samples[samples["valid"]] if "valid" in samples.columns else samples
    df = df.reset_index(drop=True)
    q = np.array([quality(p, r) for p, r in zip(df["prompt"], df["response"])])
    score = df["reward"].to_numpy(float) - alpha * df[length_col].to_numpy(float)
    agree, n = metrics.pair_agreement(df["prompt_id"], score, q)
    # DICE's own choice of pairs (dicekit.pairs, as the round makes it)
    groups = P.pack(df["prompt_id"].to_numpy(), df["sample_id"].to_numpy(), df["reward"].to_numpy(float),
                    df[length_col].to_numpy(float))
    sel = P.select(groups, alpha)
    g = np.flatnonzero(sel.keep)
    best, worst = groups.row[g, sel.chosen_col[g]], groups.row[g, sel.rejected_col[g]]
    bw = pd.DataFrame({"group": groups.prompt_index[g], "best": best, "worst": worst})
    qb, qw = q[best], q[worst]
    mean_q = pd.Series(q).groupby(df["prompt_id"]).mean()
    untied = qb != qw
    return {
        "own_pair_agreement": agree, "own_pairs": n,
        "own_corr_quality": metrics.within_group_corr(df["prompt_id"], score, q),
        "own_corr_length": metrics.within_group_corr(df["prompt_id"], score, df[length_col]),
        "bw_agreement": float((qb > qw)[untied].mean()) if untied.any() else float("nan"),
        "bw_tied": float(1 - untied.mean()) if len(untied) else float("nan"),
        "bw_quality_gain": float((qb - mean_q.loc[bw["group"]].to_numpy()).mean()) if len(bw) else float("nan"),
        "own_quality": float(q.mean()), "oracle_best_of_k": float(pd.Series(q).groupby(df["prompt_id"]).max().mean()),
    }

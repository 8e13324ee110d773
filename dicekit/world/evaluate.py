"""Evaluate policies in the task world: oracle win rate, length, quality, implicit-reward accuracy.

Writers (generate or score, then write per-item files) and readers (compute numbers from those
files) are kept apart so every number of the demo's table can be recomputed from what it wrote:

* :func:`generate_outputs` → ``outputs.jsonl``: one line per eval prompt — the policy's response,
  the fixed reference response, both oracle qualities and the oracle judge's preference.
* :func:`score_pairs` → ``reward_pairs.jsonl``: per held-out pair the implicit reward
  (logp_policy − logp_reference, dicekit.core.objectives.implicit_reward) of chosen and rejected, the
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
from dicekit.evals.metrics import head_to_head
from dicekit.evals.reward_accuracy import accuracy, truth_from_quality
from dicekit.world import metrics
from dicekit.world.judge import OracleJudge
from dicekit.world.oracle import quality


def oracle_truth(pairs: pd.DataFrame) -> np.ndarray:
    """+1/−1/0 per labelled pair (prompt, chosen, rejected) from the oracle's qualities; NaN for
    prompts outside the world (not text, or not a world task)."""
    def q(prompt, reply):
        try:
            return quality(prompt, reply) if isinstance(prompt, str) else np.nan
        except ValueError:
            return np.nan

    qc = [q(p, c) for p, c in zip(pairs["prompt"], pairs["chosen"])]
    qr = [q(p, r) for p, r in zip(pairs["prompt"], pairs["rejected"])]
    return truth_from_quality(qc, qr)


# ----------------------------------------------------------------------------- writers


def generate_outputs(model_dir: str | Path, eval_prompts: list[dict], out_path: Path, *, temperature: float,
                     max_new_tokens: int, seed: int, samples: int = 1, top_p: float = 1.0, quiet: bool = True) -> Path:
    """Generate ``samples`` responses per eval prompt and write them with their oracle judgement."""
    from dicekit.evals.judges import Comparison
    from dicekit.round.generate import complete
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
    """Implicit reward of chosen and rejected under (policy, reference) for each held-out pair, through
    the evaluation suite's scorer (dicekit.evals.reward_scoring.score_pairs: token IDs templated as the
    round does, both sides in one scoring pass per model, the two tokenizers checked to match)."""
    from dicekit.evals.reward_scoring import score_pairs as score

    scored = score(str(policy_dir), str(reference_dir), pd.DataFrame(pairs, columns=["prompt", "chosen", "rejected"]))
    rows = []
    for i, p in enumerate(pairs):
        rows.append({
            "prompt_id": p["prompt_id"], "prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
            "reward_chosen": float(scored["chosen_reward"].iloc[i]),
            "reward_rejected": float(scored["rejected_reward"].iloc[i]),
            "quality_chosen": p.get("quality_chosen", quality(p["prompt"], p["chosen"])),
            "quality_rejected": p.get("quality_rejected", quality(p["prompt"], p["rejected"])),
        })
    rundir.write_jsonl(out_path, rows)
    return out_path


# ----------------------------------------------------------------------------- readers


def summarize_outputs(rows: list[dict]) -> dict:
    """Win rate vs the fixed reference (oracle judge), mean length in characters, mean quality."""
    df = pd.DataFrame(rows)
    wr = head_to_head(df["preference"].tolist())
    return {**wr, "avg_length": float(df["output"].str.len().mean()), "quality": float(df["quality"].mean()),
            "quality_reference": float(df["quality_reference"].mean())}


def summarize_rewards(rows: list[dict]) -> dict:
    """Implicit-reward accuracy against the annotators' labels and against the oracle (pairs of equal
    oracle quality left out); a pair is right iff its reward margin has the label's sign — a zero
    margin counts as wrong (dicekit.evals.reward_accuracy.accuracy, as RewardBench)."""
    df = pd.DataFrame(rows)
    margin = df["reward_chosen"] - df["reward_rejected"]
    dq = df["quality_chosen"] - df["quality_rejected"]
    untied = dq != 0
    return {
        "reward_acc_annotator": accuracy(margin),
        "reward_acc_oracle": accuracy((margin * np.sign(dq))[untied]),
        "annotator_acc_oracle": accuracy(np.sign(dq)[untied]),
        "n_pairs": int(len(df)), "n_untied": int(untied.sum()),
    }


def own_sample_diagnostics(samples: pd.DataFrame, alphas=(0.0,), length_col: str = "n_chars") -> dict:
    """The DICE precondition on one round's samples (columns prompt_id, prompt, response, reward and
    ``length_col``; only ``valid`` rows if that column exists). The oracle scores each sample once.

    * ``own_quality``: mean oracle quality of the samples; ``oracle_best_of_k``: mean over prompts of
      the best sample's quality.
    * ``by_alpha[α]`` for each α of ``alphas``: ``own_pair_agreement`` — among within-prompt sample
      pairs of different oracle quality, the fraction the length-regularised reward (reward − α·length)
      orders like the oracle (a reward tie counts half; 0.5 = chance) — with ``own_pairs`` such pairs,
      and ``own_corr_quality`` / ``own_corr_length``: within-prompt correlation of that reward with
      quality / with length.
    """
    df = samples[samples["valid"].astype(bool)] if "valid" in samples.columns else samples
    df = df.reset_index(drop=True)
    q = np.array([quality(p, r) for p, r in zip(df["prompt"], df["response"])])
    out = {"own_quality": float(q.mean()), "oracle_best_of_k": float(pd.Series(q).groupby(df["prompt_id"]).max().mean()),
           "by_alpha": {}}
    for alpha in alphas:
        score = df["reward"].to_numpy(float) - alpha * df[length_col].to_numpy(float)
        agree, n = metrics.pair_agreement(df["prompt_id"], score, q)
        out["by_alpha"][float(alpha)] = {
            "own_pair_agreement": agree, "own_pairs": n,
            "own_corr_quality": metrics.within_group_corr(df["prompt_id"], score, q),
            "own_corr_length": metrics.within_group_corr(df["prompt_id"], score, df[length_col]),
        }
    return out

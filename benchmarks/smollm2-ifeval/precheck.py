"""The IFEval checker's view of a round's pairs before the round trains: run it once pairs.parquet exists.

    .venv/bin/python benchmarks/smollm2-ifeval/precheck.py RUN_OUT [--round 1]

RUN_OUT is the recipe's --out. It scores each valid sample of round_<t>/samples.parquet with the checker
(share of the prompt's instructions followed, strict) and prints, as JSON:
* for the round's generated pairs: how often the chosen sample follows more, fewer or as many
  instructions as the rejected one, and how often it is the longer;
* own-sample agreement: over pairs of one prompt's valid samples with different checker scores, how
  often the length-regularised reward at the round's α (and the raw reward, and "longer wins") orders
  them like the checker (reward ties count half; 0.5 = chance);
* the correlation of the reward with length.
It reads files only, holds no lock, and can run beside the round's training. After the round,
its diagnostic (metrics.json → diagnostic) measures the same with the checker as judge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def main(argv: list[str] | None = None) -> None:
    from dicekit.evals.ifeval import score_response
    from dicekit.core.pairs import reward_lr
    from dicekit.world.metrics import pair_agreement
    from dicekit.evals.ifeval_judge import IFEvalJudge

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--round", type=int, default=1)
    a = ap.parse_args(argv)
    out = Path(a.out)
    rdir = out / "dice" / f"round_{a.round}"
    instructions = IFEvalJudge(str(out / "data" / "dice_prompts.jsonl")).instructions
    alpha = float(yaml.safe_load((rdir / "config.yaml").read_text())["alpha"])  # written with pairs.parquet
    v = pd.read_parquet(rdir / "samples.parquet").query("valid").copy()
    v["q"] = [score_response(r, *instructions[p], p) for p, r in zip(v["prompt"], v["response"])]
    v["reward_lr"] = reward_lr(v["reward"], v["n_chars"], alpha)  # the round's Eq. 5 score
    v["length"] = v["n_chars"]
    pairs = pd.read_parquet(rdir / "pairs.parquet").query("source == 'generated'")
    q = v.set_index(["prompt_id", "sample_id"])["q"]
    qc = q.reindex(list(zip(pairs["prompt_id"], pairs["chosen_sample_id"].astype(int)))).to_numpy()
    qr = q.reindex(list(zip(pairs["prompt_id"], pairs["rejected_sample_id"].astype(int)))).to_numpy()
    result = {
        "round": a.round, "alpha": alpha, "valid_samples": len(v), "generated_pairs": len(pairs),
        "chosen_follows_more": float(np.mean(qc > qr)), "chosen_follows_fewer": float(np.mean(qc < qr)),
        "chosen_follows_as_many": float(np.mean(qc == qr)),
        "chosen_longer": float(np.mean(pairs["chosen_length"] > pairs["rejected_length"])),
        "mean_checker_score": float(v["q"].mean()), "best_of_k_checker_score": float(v.groupby("prompt_id")["q"].max().mean()),
        "corr_reward_length": float(np.corrcoef(v["reward"], v["n_chars"])[0, 1]),
    }
    for col in ("reward_lr", "reward", "length"):  # the round monitor's pair-agreement rule (ties count ½)
        result[f"own_sample_agreement_{col}"], result["own_sample_pairs"] = pair_agreement(v["prompt_id"], v[col], v["q"])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

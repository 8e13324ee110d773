"""A small, schema-complete run folder written by hand with pandas (no model, no pipeline).

``make_run_folder(path)`` writes ``run.yaml`` and two rounds of 4 prompts × K = 4 samples each,
with generated + offline pairs, alpha_sweep.csv, train_log.jsonl, metrics.json, evals (π_0 and
π_1) and, in round 1, token_credit.parquet. Round 1's pairs.parquet carries every column the pair
builder writes; round 2's only the contract's minimum, and its samples a ``judge_quality`` column.

Round 1's numbers are chosen so the length penalty visibly changes the pair (lengths in chars):

    prompt p0   sample:   0      1      2      3
                reward:   5.0    3.0    1.0   -2.0
                n_chars:  400    100    120    300
    α = 0:     reward_lr  5.0    3.0    1.0   -2.0   → chosen 0, rejected 3
    α = 0.01:  reward_lr  1.0    2.0   -0.2   -5.0   → chosen 1, rejected 3 (flip at α = 2/300)

Sample 0 of p1 is the chosen response of its pair at every α of the grid and contains
``<script>window.__pwned=1</script>`` and ``<img src=x onerror="window.__pwned=1">``: a viewer
that executes model output sets ``window.__pwned``.

α* is the grid value (0, 0.001, …, 0.02) minimising |mean(len(chosen) − len(rejected))|, worked out
here with plain numpy (round 1: α* = 0.007, mean −25 chars), independently of dicekit.core.pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

K = 4
ALPHAS = np.round(np.arange(0, 0.0205, 0.001), 6)
PROMPTS = {
    "p0": "Explain photosynthesis to a child.",
    "p1": "Write a haiku about rain.",
    "p2": "What is 17 times 23?",
    "p3": "List three prime numbers.",
}
OFFLINE = [
    ("o0", "Name a colour.", "Blue, like a clear sky.", "colour"),
    ("o1", "Say hello in French.", "Bonjour!", "I do not know French, sorry about that."),
]
XSS = '<script>window.__pwned=1</script> Rain taps <img src=x onerror="window.__pwned=1"> softly. '
# (prompt, sample) -> (reward, n_chars); p3's sample 3 is invalid (cut at max tokens)
ROUND1 = {
    "p0": [(5.0, 400), (3.0, 100), (1.0, 120), (-2.0, 300)],
    "p1": [(4.0, 150), (0.5, 200), (-1.0, 90), (1.5, 60)],
    "p2": [(1.0, 80), (1.2, 90), (0.8, 70), (-0.5, 250)],
    "p3": [(2.0, 300), (-1.0, 100), (0.0, 150), (None, 500)],
}


def _text(prompt_id: str, sample_id: int, t: int, n: int) -> str:
    head = XSS if (t, prompt_id, sample_id) == (1, "p1", 0) else f"[round {t} {prompt_id} sample {sample_id}] "
    body = head + "the quick brown fox jumps over the lazy dog " * (n // 40 + 2)
    return body[:n]


def _ids(text: str) -> list[int]:
    """A stand-in tokenisation: one token per 4 characters."""
    return [sum(map(ord, text[i:i + 4])) % 5000 for i in range(0, len(text), 4)]


def _samples(t: int, table: dict, judge: dict | None = None) -> pd.DataFrame:
    rows = []
    for pid, items in table.items():
        prompt = PROMPTS[pid]
        for k, (reward, n) in enumerate(items):
            text = _text(pid, k, t, n)
            ids = _ids(text)
            valid = reward is not None
            logp_ref = -0.5 * len(ids)
            rows.append({
                "prompt_id": pid, "sample_id": k, "prompt": prompt, "response": text,
                "prompt_ids": _ids(prompt), "response_ids": ids, "n_tokens": len(ids), "n_chars": len(text),
                "finish_reason": "stop" if valid else "length",
                "logp_policy": logp_ref + reward if valid else np.nan, "logp_ref": logp_ref if valid else np.nan,
                "reward": reward if valid else np.nan, "valid": valid,
                **({"judge_quality": judge[pid][k]} if judge else {}),
            })
    return pd.DataFrame(rows)


def _select(samples: pd.DataFrame, alpha: float) -> list[tuple[pd.Series, pd.Series, float, float]]:
    """Per prompt: (chosen row, rejected row, their reward_lr) at α; ties → lowest sample_id."""
    out = []
    for _, g in samples[samples["valid"]].groupby("prompt_id", sort=True):
        g = g.sort_values("sample_id")
        score = (g["reward"] - alpha * g["n_chars"]).to_numpy()
        c, r = int(np.argmax(score)), int(np.argmin(score))
        if score[c] > score[r]:
            out.append((g.iloc[c], g.iloc[r], float(score[c]), float(score[r])))
    return out


def _alpha_star(samples: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    means, counts = [], []
    for a in ALPHAS:
        sel = _select(samples, float(a))
        means.append(float(np.mean([c["n_chars"] - r["n_chars"] for c, r, _, _ in sel])))
        counts.append(len(sel))
    sweep = pd.DataFrame({"alpha": ALPHAS, "mean_len_diff": means, "n_pairs": counts})
    return float(ALPHAS[int(np.argmin(np.abs(means)))]), sweep


def _pairs(samples: pd.DataFrame, alpha: float, full: bool) -> pd.DataFrame:
    rows = []
    for c, r, cs, rs in _select(samples, alpha):
        rows.append({"prompt_id": c["prompt_id"], "prompt": c["prompt"], "chosen": c["response"],
                     "rejected": r["response"], "source": "generated", "chosen_sample_id": int(c["sample_id"]),
                     "rejected_sample_id": int(r["sample_id"]), "chosen_reward_lr": cs, "rejected_reward_lr": rs,
                     "alpha": alpha, "chosen_reward": c["reward"], "rejected_reward": r["reward"],
                     "chosen_length": float(c["n_chars"]), "rejected_length": float(r["n_chars"])})
    for pid, prompt, chosen, rejected in OFFLINE:
        rows.append({"prompt_id": pid, "prompt": prompt, "chosen": chosen, "rejected": rejected, "source": "offline",
                     "chosen_sample_id": None, "rejected_sample_id": None, "chosen_reward_lr": np.nan,
                     "rejected_reward_lr": np.nan, "alpha": alpha, "chosen_reward": np.nan, "rejected_reward": np.nan,
                     "chosen_length": float(len(chosen)), "rejected_length": float(len(rejected))})
    df = pd.DataFrame(rows)
    for col in ("chosen_sample_id", "rejected_sample_id"):
        df[col] = df[col].astype("Int64")
    if not full:
        df = df.drop(columns=["chosen_reward", "rejected_reward", "chosen_length", "rejected_length"])
    return df


def _token_credit(samples: pd.DataFrame, keys: list[tuple[str, int]]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for pid, k in keys:
        s = samples[(samples["prompt_id"] == pid) & (samples["sample_id"] == k)].iloc[0]
        text = s["response"]
        tokens = [text[i:i + 4] for i in range(0, len(text), 4)]
        x = rng.normal(0, 0.3, len(tokens))
        x += (s["reward"] - x.sum()) / len(x)  # per-token log-ratios sum to the sample's reward
        rows.append({"prompt_id": pid, "sample_id": k, "token_ids": list(s["response_ids"]), "tokens": tokens,
                     "logratio": x.tolist()})
    return pd.DataFrame(rows)


def _write_round(rdir: Path, t: int, samples: pd.DataFrame, full_pairs: bool, policy: str, reference: str) -> dict:
    rdir.mkdir(parents=True, exist_ok=True)
    alpha, sweep = _alpha_star(samples)
    pairs = _pairs(samples, alpha, full_pairs)
    gen = pairs[pairs["source"] == "generated"]
    samples.to_parquet(rdir / "samples.parquet", index=False)
    pairs.to_parquet(rdir / "pairs.parquet", index=False)
    sweep.to_csv(rdir / "alpha_sweep.csv", index=False)
    config = {"round": t, "policy": policy, "reference": reference, "seed": 0, "samples_per_prompt": K,
              "beta": 0.1, "length_unit": "chars", "alpha": alpha, "replay_ratio": 0.33,
              "dicekit_version": "0.1.0", "git_sha": None}
    (rdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    log = [{"step": s, "epoch": s / 5, "loss": 0.69 - 0.05 * s, "rewards/accuracies": 0.5 + 0.08 * s,
            "rewards/margins": 0.1 * s, "learning_rate": 5e-7} for s in range(1, 6)]
    (rdir / "train_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    metrics = {"round": t, "n_prompts": 4, "n_samples": len(samples), "alpha": alpha, "alpha_star": alpha,
               "n_pairs": len(pairs), "n_pairs_generated": len(gen), "n_pairs_offline": len(pairs) - len(gen),
               "mean_len_chosen": float(gen["chosen"].str.len().mean()), "mean_len_rejected": float(gen["rejected"].str.len().mean()),
               "final_loss": log[-1]["loss"]}
    (rdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return config


def _evals(folder: Path, win_rate: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    obj = {"win_rate": win_rate, "standard_error": 1.5, "length_controlled_winrate": win_rate - 2.0,
           "n_total": 100, "avg_length": 900 + 10 * win_rate, "judge": {"model": "toy-judge"}}
    (folder / "alpaca.json").write_text(json.dumps(obj))


def make_run_folder(path: str | Path) -> Path:
    """Write the run folder into ``path`` (created if needed) and return it."""
    run = Path(path)
    run.mkdir(parents=True, exist_ok=True)
    s1 = _samples(1, ROUND1)
    rng = np.random.default_rng(2)
    round2 = {pid: [(round(float(rng.normal(1, 2)), 2), int(rng.integers(60, 400))) for _ in range(K)] for pid in PROMPTS}
    judge = {pid: [round(float(x), 2) for x in rng.uniform(0, 10, K)] for pid in PROMPTS}
    s2 = _samples(2, round2, judge)
    _write_round(run / "round_1", 1, s1, True, "toy/pi0", "toy/pi-1")
    _write_round(run / "round_2", 2, s2, False, str(run / "round_1" / "model"), "toy/pi0")
    _token_credit(s1, [("p0", 0), ("p1", 0)]).to_parquet(run / "round_1" / "token_credit.parquet", index=False)
    _evals(run / "round_0" / "evals", 40.0)
    _evals(run / "round_1" / "evals", 55.0)
    (run / "run.yaml").write_text(yaml.safe_dump({"run_dir": str(run), "num_rounds": 2, "samples_per_prompt": K}))
    return run

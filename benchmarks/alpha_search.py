"""α* search: dicekit's vectorised sweep vs a straightforward per-α rebuild of the pairs.

Two baselines, each rebuilding the pairs from scratch for every α on the grid: (1) the
straightforward loop — for each α, for each prompt, score its samples, take argmax/argmin, average
the length differences (samples pre-grouped into numpy arrays, so only the per-α work is timed);
(2) the same per α with pandas groupby (idxmax/idxmin), a stronger baseline. All run on the same
10k prompts × 16 samples; baselines are timed on a subset of the grid and scaled (they are linear in
the number of α values), and their results are checked against dicekit's.

    python benchmarks/alpha_search.py [--prompts 10000] [--k 16] [--baseline-alphas 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from dicekit.core import pairs as P


def baseline_mean_diff(df: pd.DataFrame, alpha: float) -> float:
    score = df["reward"] - alpha * df["length"]
    d = df.assign(score=score)
    chosen = d.loc[d.groupby("prompt")["score"].idxmax()].set_index("prompt")
    rejected = d.loc[d.groupby("prompt")["score"].idxmin()].set_index("prompt")
    keep = chosen["score"] > rejected["score"]
    return float((chosen["length"] - rejected["length"])[keep].mean())


def loop_mean_diff(groups_r: list, groups_l: list, alpha: float) -> float:
    diffs = []
    for r, l in zip(groups_r, groups_l):
        s = r - alpha * l
        c, w = int(np.argmax(s)), int(np.argmin(s))
        if s[c] > s[w]:
            diffs.append(l[c] - l[w])
    return float(np.mean(diffs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--baseline-alphas", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.prompts * args.k
    length = rng.integers(20, 3000, n).astype(float)
    reward = rng.normal(0, 20, n) + 0.01 * length  # a reward that prefers longer answers, as DPO's does
    prompt = np.repeat(np.arange(args.prompts), args.k)
    sid = np.tile(np.arange(args.k), args.prompts)
    grid = P.alpha_grid(0.0, 0.999, 0.001)

    t0 = time.perf_counter()
    groups = P.pack(prompt, sid, reward, length)
    alpha, _, mean, _ = P.search_alpha(groups, grid)
    fast = time.perf_counter() - t0

    sub = grid[:: max(1, len(grid) // args.baseline_alphas)][: args.baseline_alphas]
    idx = np.searchsorted(grid, sub)
    gr = list(reward.reshape(args.prompts, args.k))
    gl = list(length.reshape(args.prompts, args.k))
    t0 = time.perf_counter()
    base_loop = [loop_mean_diff(gr, gl, a) for a in sub]
    slow_loop = (time.perf_counter() - t0) * len(grid) / len(sub)
    df = pd.DataFrame({"prompt": prompt, "reward": reward, "length": length})
    t0 = time.perf_counter()
    base_pd = [baseline_mean_diff(df, a) for a in sub]
    slow_pd = (time.perf_counter() - t0) * len(grid) / len(sub)
    agree = np.allclose(base_loop, mean[idx]) and np.allclose(base_pd, mean[idx])

    print(f"prompts={args.prompts} K={args.k} grid={len(grid)} alpha*={alpha:.3f} results agree: {agree}")
    print(f"dicekit sweep (full grid):        {fast:8.3f} s")
    print(f"per-alpha loop over prompts:      {slow_loop:8.1f} s  -> {slow_loop / fast:6.0f}x  (target >= 100x)")
    print(f"per-alpha pandas groupby rebuild: {slow_pd:8.1f} s  -> {slow_pd / fast:6.0f}x")


if __name__ == "__main__":
    main()

"""The paper's claims, checked in the task world over several seeds.

For each seed, `dicekit demo` (dicekit.commands.demo.run_demo) builds the world and its tiny
models, runs DICE rounds 1–2 with α = α* and γ = 0.5, the ablations α = 0 and γ = 1 (offline pairs
only), and the oracle-pairs control; this script then reads every seed's demo_summary.json and writes
mean ± sd over seeds of the oracle win rate, true quality and length per model, next to the round
diagnostic (does the implicit reward agree with the oracle on the policy's own samples?) and the
change in win rate it should predict.

    python benchmarks/world_ablation.py --seeds 0 1 2 --out runs/ablation [--markdown benchmarks/world_ablation.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MODELS = "Models on the held-out eval prompts"
OWN = "Implicit reward on the policy's own samples"


def section(summary: dict, prefix: str) -> list[dict]:
    return next(v for k, v in summary.items() if k.startswith(prefix))


def mean_sd(xs) -> str:
    xs = np.asarray([x for x in xs if x is not None], dtype=float)
    if len(xs) == 0:
        return "n/a"
    return f"{xs.mean():.3f} ± {xs.std(ddof=1):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def tables(summaries: dict[int, dict]) -> str:
    seeds = sorted(summaries)
    keys = []
    for s in seeds:
        for r in section(summaries[s], MODELS):
            if (r["run"], r["model"]) not in keys:
                keys.append((r["run"], r["model"]))
    lines = [f"Seeds: {', '.join(map(str, seeds))} (mean ± sd over seeds; win rate in %, against the world's fixed "
             "reference answers, judged by the oracle; sampled decoding as in the rounds)", "",
             "| run | model | win rate | quality | length (chars) | greedy win rate | reward acc. vs oracle |",
             "|---|---|---|---|---|---|---|"]
    for run, model in keys:
        rows = [r for s in seeds for r in section(summaries[s], MODELS) if (r["run"], r["model"]) == (run, model)]
        lines.append(f"| {run} | {model} | {mean_sd([r['win_rate'] for r in rows])} | {mean_sd([r['quality'] for r in rows])} "
                     f"| {mean_sd([r['avg_length'] for r in rows])} | {mean_sd([r['greedy_win_rate'] for r in rows])} "
                     f"| {mean_sd([r.get('reward_acc_oracle') for r in rows])} |")
    lines += ["", "Does the diagnostic predict the gain? Per seed and round: the implicit reward's agreement with the "
              "oracle on the round's own samples (α*), and the change in win rate and quality the round brought.", "",
              "| seed | round | own-sample agreement (α*) | best-vs-worst pairs right | Δ win rate | Δ quality |",
              "|---|---|---|---|---|---|"]
    for s in seeds:
        models = {r["model"]: r for r in section(summaries[s], MODELS) if r["run"] == "DICE"}
        for r in section(summaries[s], OWN):
            if r.get("run", "DICE") != "DICE":
                continue
            t = r["round"]
            before, after = models.get(f"π_{t - 1}"), models.get(f"π_{t}")
            dw = after["win_rate"] - before["win_rate"] if before and after else None
            dq = after["quality"] - before["quality"] if before and after else None
            dw_s = "n/a" if dw is None else f"{dw:+.1f}"
            dq_s = "n/a" if dq is None else f"{dq:+.3f}"
            lines.append(f"| {s} | {t} | {r['own-sample agreement (α*)']:.3f} | {r['pairs right (untied)']:.3f} "
                         f"| {dw_s} | {dq_s} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    args = ap.parse_args()
    from dicekit.commands.demo import run_demo

    summaries = {}
    for seed in args.seeds:
        run = Path(args.out) / f"seed{seed}"
        if not (run / "demo_summary.json").exists():
            run_demo(run, seed=seed, rounds=2, quiet=True)
        summaries[seed] = json.loads((run / "demo_summary.json").read_text())
    text = tables(summaries)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()

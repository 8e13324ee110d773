"""`dicekit eval reward-accuracy`: implicit-reward accuracy against preference labels.

Every labelled pair (prompt, chosen, rejected) is scored under ``--policy`` and ``--reference``
through the round's scorer, token-exact, and ranked by each variant
(dicekit.evals.reward_accuracy.evaluate_reward_accuracy) (DPO log-ratio, reference-free sum, length-normalised average,
length-regularised at ``--alpha``, and the "longer wins" rule), overall, by length-difference
bucket, by ``subset`` when the data has one (a round's ``pairs.parquet``: its ``source``, generated or
offline; ``--rewardbench`` adds RewardBench's section scores),
and against ground truth when there is one: ``--oracle world`` (the task world's oracle),
``chosen_quality``/``rejected_quality`` columns, or a ``truth`` column (+1 / −1 / 0).

Data: any pairs file the round stage reads (jsonl/json/parquet/folder/hub id; text or message
lists; a round's ``pairs.parquet`` is scored on its own token IDs), or RewardBench's shape
(prompt, chosen, rejected, subset; e.g. ``--data allenai/reward-bench --split filtered``).
"""

from __future__ import annotations

import json
import sys

from dicekit.commands.cliutil import parser
from dicekit.errors import UserError
from dicekit.evals import reward_accuracy as RA


def build_parser():
    p = parser("eval reward-accuracy", "Implicit-reward accuracy against preference labels.")
    p.add_argument("--policy", required=True, help="the DPO policy (local folder, hub id or .gguf)")
    p.add_argument("--reference", required=True, help="the reference it was trained against")
    p.add_argument("--data", required=True, help="labelled pairs: jsonl/json/parquet file, folder or hub dataset id")
    p.add_argument("--split", default="train", help="dataset split (RewardBench: filtered)")
    p.add_argument("--limit", type=int, help="only the first N pairs")
    p.add_argument("--alpha", type=float, help="alpha of the length-regularised variant (default: the data's "
                   "'alpha' column when it has one, else 0)")
    p.add_argument("--length-unit", choices=("chars", "tokens"), default="chars")
    p.add_argument("--bucket-edges", help="comma-separated positive length differences (default: the median)")
    p.add_argument("--rewardbench", action="store_true", help="add RewardBench's section scores (its weights)")
    p.add_argument("--oracle", choices=("world",), help="ground truth from the task world's oracle")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--tokens-per-batch", type=int, default=None,
                   help="padded tokens per scoring batch (default: 16384 on a GPU, 1024 on a CPU)")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--scores", help="write the per-pair scores (parquet) here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def parse_edges(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        edges = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--bucket-edges {text!r}: expected comma-separated numbers") from None
    if any(e <= 0 for e in edges):
        raise UserError(f"--bucket-edges {text!r}: edges must be positive")
    return edges


def format_text(s: dict) -> str:
    names = [*RA.VARIANTS, "longer"]
    lines = [f"{s['n_pairs']} pairs, alpha = {s['alpha']:g} (length in {s['length_unit']}); "
             "accuracy [95% bootstrap interval], ties count as wrong", ""]
    for k in names:
        o = s["overall"][k]
        lines.append(f"  {RA.VARIANT_NAMES[k]:<28} {_acc(o)}   ties {s['n_ties'][k]}")
    lines += ["", "by length(chosen) - length(rejected):"]
    lines.append(f"  {'bucket':<18} {'n':>6}  " + "  ".join(f"{k:>8}" for k in names))
    for row in s["by_length"]:
        lines.append(f"  {row['bucket']:<18} {row['n']:>6}  " + "  ".join(f"{_pct(row[k]['accuracy']):>8}" for k in names))
    if "by_subset" in s:
        lines += ["", "by subset:"]
        for row in s["by_subset"]:
            lines.append(f"  {row['subset']:<24} {row['n']:>6}  " + "  ".join(f"{k} {_pct(row[k]['accuracy'])}" for k in names))
    if "rewardbench" in s:
        lines += ["", "RewardBench sections (%):"]
        for k in names:
            lines.append(f"  {k:<9} " + "  ".join(f"{sec} {100 * v:.2f}" for sec, v in s["rewardbench"][k].items()))
    if "truth" in s:
        t = s["truth"]
        lines += ["", f"against the ground truth ({t['n_decided']} decided pairs, {t['n_equal']} equal, "
                      f"{t['n_unknown']} unknown):"]
        for k in ["labels", *names]:
            lines.append(f"  {RA.VARIANT_NAMES.get(k, 'the labels themselves'):<28} {_acc(t[k])}")
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _acc(o: dict) -> str:
    ci = "" if o["ci_low"] is None else f" [{_pct(o['ci_low'])}, {_pct(o['ci_high'])}]"
    return f"{_pct(o['accuracy'])}{ci}"


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit import rundir

    pairs = RA.load_labelled_pairs(args.data, args.split, args.limit)
    truth = None
    if args.oracle == "world":
        from dicekit.world.evaluate import oracle_truth

        truth = oracle_truth(pairs)
    summary, scored = RA.evaluate_reward_accuracy(
        args.policy, args.reference, pairs, truth=truth, alpha=args.alpha, length_unit=args.length_unit,
        edges=parse_edges(args.bucket_edges), rewardbench=args.rewardbench, n_boot=args.n_boot, seed=args.seed,
        dtype=args.dtype, tokens_per_batch=args.tokens_per_batch, quiet=args.json)
    summary = {"data": args.data, "split": args.split, **summary}
    if args.out:
        rundir.write_json(args.out, summary)
    if args.scores:
        keep = [c for c in scored.columns if c not in ("prompt_ids", "chosen_ids", "rejected_ids")]
        rundir.write_parquet(args.scores, scored[keep].assign(prompt=scored["prompt"].map(_text)))
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_text(summary))
    return 0


def _text(prompt) -> str:
    from dicekit.data import prompt_key

    return prompt_key(prompt)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

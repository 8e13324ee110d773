"""`dicekit compare-rankers`: implicit reward vs scalar reward model vs LLM-as-judge (paper Table 5).

On the same labelled pairs, how often each ranker puts the chosen response first (dicekit.analysis.rankers).
Pairs come from ``--data`` (any pairs file the round stage reads), or from a round's samples
(``--samples RUN_DIR --round T --oracle world``: pairs of the policy's own samples labelled by the
task world's oracle; ``--policy``/``--reference`` then default to the round's reward models).
``--rm DIR`` adds a reward model trained by `dicekit train-rm`; the judge is the policy unless
``--judge-model`` names another model or ``--no-judge`` is given. Writes the table as JSON
(``--out``) and markdown (``--markdown``); the report includes ``RUN_DIR/analysis/rankers.json``.
"""

from __future__ import annotations

import json

import numpy as np

from dicekit.commands.cliutil import parser
from dicekit.errors import UserError


def build_parser():
    p = parser("compare-rankers", "How often each ranker agrees with preference labels (paper Table 5).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="labelled pairs: jsonl/json/parquet file, folder or hub dataset id")
    src.add_argument("--samples", metavar="RUN_DIR", help="pairs from a round's samples.parquet (needs --oracle)")
    p.add_argument("--round", type=int, help="round of --samples")
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, help="only the first N pairs")
    p.add_argument("--pairs-per-prompt", type=int, default=2, help="--samples: pairs drawn per prompt")
    p.add_argument("--policy", help="the DPO policy (default with --samples: the round's reward policy)")
    p.add_argument("--reference", help="its reference (default with --samples: the round's reward reference)")
    p.add_argument("--rm", help="a reward-model folder from `dicekit train-rm`")
    p.add_argument("--judge-model", help="LLM-as-judge model (default: the policy)")
    p.add_argument("--no-judge", action="store_true", help="leave out the LLM-as-judge")
    p.add_argument("--oracle", choices=("world",), help="ground truth from the task world's oracle")
    p.add_argument("--alpha", type=float, help="alpha of the length-regularised row (default: the round's, else 0)")
    p.add_argument("--length-unit", choices=("chars", "tokens"), help="default: the round's, else chars")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", help="write the table as JSON here")
    p.add_argument("--markdown", help="write the table as markdown here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _pairs_from_samples(args):
    from dicekit.analysis.rankers import oracle_pairs_from_samples
    from dicekit.view import runs
    from dicekit.world.oracle import quality

    if args.round is None:
        raise UserError("--samples needs --round T")
    if args.oracle != "world":
        raise UserError("--samples needs --oracle world (the labels come from the oracle)")
    runs.check_run_dir(args.samples)
    samples = runs.load_samples(args.samples, args.round)
    if samples is None:
        raise UserError(f"{args.samples}: round {args.round} has no samples.parquet")
    cfg = runs.load_config(args.samples, args.round) or {}
    pairs = oracle_pairs_from_samples(samples, quality, args.pairs_per_prompt, args.seed)
    if len(pairs) == 0:
        raise UserError(f"{args.samples}: round {args.round} has no two samples of one prompt with different quality")
    return pairs.head(args.limit) if args.limit else pairs, cfg


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit import rundir
    from dicekit.analysis.rankers import compare
    from dicekit.evals.reward_accuracy import attach_truth, load_labelled_pairs, pick_alpha
    from dicekit.view.report import rankers_table

    cfg = {}
    if args.samples:
        pairs, cfg = _pairs_from_samples(args)
    else:
        pairs = load_labelled_pairs(args.data, args.split, args.limit)
        if args.oracle == "world":
            from dicekit.world.evaluate import oracle_truth

            pairs = attach_truth(pairs, oracle_truth(pairs))
        else:
            pairs = attach_truth(pairs)
    policy = args.policy or cfg.get("policy")
    reference = args.reference or cfg.get("reference")
    if not policy or not reference:
        raise UserError("--policy and --reference are required (with --samples they default to the round's)")
    alpha = args.alpha if args.alpha is not None else cfg.get("alpha")
    unit = args.length_unit or cfg.get("length_unit") or "chars"
    judge = None if args.no_judge else (args.judge_model or policy)
    result = compare(pairs, policy=policy, reference=reference, rm_dir=args.rm, judge_model=judge,
                     alpha=pick_alpha(alpha, pairs), length_unit=unit, n_boot=args.n_boot, seed=args.seed,
                     dtype=args.dtype, quiet=args.json)
    source = {"data": args.data, "split": args.split} if args.data else {"samples": args.samples, "round": args.round}
    result = {**source, "oracle": args.oracle, **result}
    if "truth" in pairs:
        t = pairs["truth"].to_numpy(np.float64)
        result["n_truth_decided"] = int(np.sum((t == 1) | (t == -1)))
    if args.out:
        rundir.write_json(args.out, result)
    if args.markdown:
        rundir.write_text(args.markdown, rankers_table(result) + "\n")
    print(json.dumps(result) if args.json else rankers_table(result))
    return 0

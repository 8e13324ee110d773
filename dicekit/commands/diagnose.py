"""`dicekit diagnose RUN_DIR --round T [--judge SPEC] [--max-pairs N]`: the round diagnostic after the fact."""

from __future__ import annotations

import json

from dicekit.commands.cliutil import parser
from dicekit.errors import UserError


def main(argv: list[str]) -> int:
    p = parser("diagnose", "Agreement of the implicit reward with a judge on a round's own samples (written into "
                           "its metrics.json and diagnostic_pairs.parquet).")
    p.add_argument("run_dir")
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--judge", default="oracle", help="oracle | hf:PATH_OR_ID | ifeval:PROMPTS.jsonl | OpenAI-compatible model | judge.yaml")
    p.add_argument("--judge-base-url", default=None)
    p.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--max-pairs", type=int, default=200, help="comparisons per set (bounds the judge's cost)")
    p.add_argument("--alpha", type=float, default=None, help="α for the α* set (default: the round's α*)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import pandas as pd
    import yaml

    from dicekit import rundir
    from dicekit.analysis.diagnose import diagnose_round

    rdir = rundir.round_dir(args.run_dir, args.round)
    samples_path = rdir / "samples.parquet"
    if not samples_path.is_file():
        raise UserError(f"{samples_path}: not found (is {args.run_dir} a run folder with round {args.round}?)")
    conf = yaml.safe_load((rdir / "config.yaml").read_text()) if (rdir / "config.yaml").exists() else {}
    alpha = args.alpha if args.alpha is not None else conf.get("alpha")
    if alpha is None:
        raise UserError(f"{rdir / 'config.yaml'}: no alpha recorded; pass --alpha")
    samples = pd.read_parquet(samples_path)
    d = diagnose_round(args.run_dir, args.round, samples, float(alpha), args.judge, base_url=args.judge_base_url,
                       api_key_env=args.judge_api_key_env, max_pairs=args.max_pairs,
                       unit=conf.get("length_unit", "chars"), seed=args.seed, quiet=args.json)
    metrics_path = rdir / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        metrics["diagnostic"] = d
        rundir.write_json(metrics_path, metrics)
    if args.json:
        print(json.dumps(d))
    return 0

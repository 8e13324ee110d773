"""`dicekit eval alpaca`: AlpacaEval 2 — generate, judge, or only recompute metrics.

Modes (exactly one source):
  --model PATH_OR_ID     generate answers to the eval set, judge them, compute metrics
  --outputs FILE         judge an existing model_outputs.json, compute metrics
  --annotations FILE     metrics only, from an annotations.json (no judge calls)

Judges (``--judge``): an OpenAI-compatible model name (default gpt-4-1106-preview on OpenAI;
``--judge-base-url`` for a local vLLM server, key from ``$--judge-api-key-env``), a YAML file with
those settings, ``hf:PATH_OR_ID`` (a local HF model's next-token probabilities), or ``oracle`` (the
task world's oracle). Outputs go to ``--out``: model_outputs.json, annotations.json,
leaderboard.csv and metrics.json. The evaluation itself is
:func:`dicekit.evals.alpaca.evaluate_alpaca`; this module parses the flags and prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from dicekit.commands.cliutil import parser

DEFAULT_JUDGE = "gpt-4-1106-preview"


def build_parser():
    p = parser("eval alpaca", "AlpacaEval 2: raw and length-controlled win rate against gpt4_1106_preview.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="generate outputs with this model (local folder, hub id or .gguf)")
    src.add_argument("--outputs", help="judge this model_outputs.json")
    src.add_argument("--annotations", help="metrics only, from this annotations.json")
    p.add_argument("--reference-outputs", help="eval set + baseline outputs (JSON); default: the hub dataset")
    p.add_argument("--name", help="generator name for the model's outputs (default: the model folder name)")
    p.add_argument("--out", help="output folder (model_outputs.json, annotations.json, leaderboard.csv, metrics.json)")
    p.add_argument("--max-instances", type=int, help="only the first N eval instructions (smoke tests)")
    g = p.add_argument_group("generation (--model)")
    g.add_argument("--max-new-tokens", type=int, default=2048)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--dtype", default="float32")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="generation backend (vllm: GPU, optional extra)")
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per vLLM engine")
    j = p.add_argument_group("judge (--model, --outputs)")
    j.add_argument("--judge", default=DEFAULT_JUDGE, help="model name | config.yaml | hf:PATH_OR_ID | oracle")
    j.add_argument("--judge-base-url", default=None, help="OpenAI-compatible base URL (default OpenAI's)")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    j.add_argument("--concurrency", type=int, default=8)
    j.add_argument("--max-retries", type=int, default=6)
    j.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    j.add_argument("--price-per-mtok", type=float, nargs=2, metavar=("PROMPT", "COMPLETION"),
                   help="USD per million tokens, for cost on models without a known price")
    j.add_argument("--cache-dir", help="annotation cache folder (default ~/.cache/dicekit/judge_annotations)")
    m = p.add_argument_group("metrics")
    m.add_argument("--difficulty", help="instruction difficulty CSV (or 'hub'); enables LC")
    m.add_argument("--gamed", help="gamed-baseline rows CSV (upstream df_gamed.csv, or 'hub'): the official LC fit")
    m.add_argument("--glm-weights", help="predict LC from published per-model GLM coefficients instead of fitting")
    m.add_argument("--legacy-row-order", action="store_true", help="join difficulty by row position, as upstream")
    m.add_argument("--reparse", action="store_true", help="re-derive preferences from raw_completion first")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def make_judge(args):
    """The judge named by --judge (see module docstring)."""
    from dicekit.evals.judge_factory import judge_from_spec
    from dicekit.world.judge import OracleJudge

    return judge_from_spec(args.judge, base_url=args.judge_base_url, api_key_env=args.judge_api_key_env,
                           concurrency=args.concurrency, max_retries=args.max_retries, timeout_s=args.timeout,
                           price_per_mtok=tuple(args.price_per_mtok) if args.price_per_mtok else None,
                           dtype=args.dtype, oracle=OracleJudge)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.evals.alpaca import LCInputs, evaluate_alpaca
    from dicekit.evals.generation import GenerationSettings

    generation = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                                    seed=args.seed, dtype=args.dtype, batch_size=args.batch_size, backend=args.backend,
                                    tensor_parallel_size=args.tensor_parallel_size)
    lc = LCInputs(difficulty=args.difficulty, gamed=args.gamed, glm_weights=args.glm_weights,
                  legacy_row_order=args.legacy_row_order)
    result = evaluate_alpaca(model=args.model, outputs=args.outputs, annotations=args.annotations,
                             make_judge=lambda: make_judge(args), reference_outputs=args.reference_outputs,
                             name=args.name, out=args.out, max_instances=args.max_instances, generation=generation,
                             cache_dir=args.cache_dir, lc=lc, reparse_completions=args.reparse, quiet=args.json)
    if args.json:
        print(json.dumps(result))
    else:
        _print_summary(result["model"], result, Path(args.out) if args.out else None)
    return 0


def _print_summary(name: str, metrics: dict, out: Path | None) -> None:
    lines = [f"{name}: win rate {metrics['win_rate']:.2f} ± {metrics['standard_error']:.2f}"
             f" ({metrics['n_wins']} wins, {metrics['n_wins_base']} losses, {metrics['n_draws']} draws of "
             f"{metrics['n_total']}); discrete {metrics['discrete_win_rate']:.2f}; avg length {metrics['avg_length']}"]
    if "length_controlled_winrate" in metrics:
        label = metrics["lc_glm"] + ("" if metrics["lc_official"] else " — NOT the official LC (no --gamed)")
        lines.append(f"LC win rate {metrics['length_controlled_winrate']:.2f} ± {metrics['lc_standard_error']:.2f} ({label})")
    if "n_reparsed" in metrics:
        lines.append(f"reparsed {metrics['n_reparsed']} preferences, {metrics['n_reparse_mismatch']} differ from stored")
    if out is not None:
        lines.append(f"written to {out}/")
    print("\n".join(lines))

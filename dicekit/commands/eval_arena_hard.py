"""`dicekit eval arena-hard`: Arena-Hard v0.1 and v2.0 — generate, judge, or only score existing judgments.

Modes:
  --judgments FILE [FILE ...]              scores only (no judge calls); several judge folders pool
  --arena-hard-dir DIR --answers FILE      judge these answers (arena-hard-auto model_answer format)
  --arena-hard-dir DIR --model PATH_OR_ID  generate answers first, then judge

The version follows the files: v0.1's layout (``question_id``) is scored as v0.1's show_result.py
(Bradley–Terry against one baseline, 95% interval); the current layout (``uid``, ``category``:
Arena-Hard v2.0, and a current checkout's v0.1 data) as v2.0's (per-category baselines, mean battle
score, 5–95% interval). ``--version`` picks the benchmark folder of a checkout.

Judging writes ``OUT/model_answer/<name>.jsonl`` and ``OUT/model_judgment/<judge>/<name>.jsonl`` in
arena-hard-auto's formats; each question's row is appended as soon as both games are judged, and
rows already there for the same judge, prompts and answers are reused (a crashed run resumes). The
evaluation itself is :func:`dicekit.evals.arena_hard.evaluate_arena_hard`; this module parses and prints.
"""

from __future__ import annotations

import json

from dicekit.commands.cliutil import parser


def build_parser():
    p = parser("eval arena-hard", "Arena-Hard v0.1 / v2.0: score against the baseline (= 50) with a bootstrap interval.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--judgments", nargs="+", help="judgment .jsonl files (or folders of them): scores only")
    src.add_argument("--answers", help="the model's answers (.jsonl, arena-hard-auto format): judge them")
    src.add_argument("--model", help="generate answers with this model, then judge them")
    p.add_argument("--arena-hard-dir", help="arena-hard-auto checkout, its data/arena-hard-<version> folder, or hub:OWNER/NAME")
    p.add_argument("--version", choices=["v0.1", "v2.0"], help="benchmark (default: v2.0 if the checkout has it, "
                   "else v0.1; judgment files: their layout)")
    p.add_argument("--baseline", help="baseline model name (default v0.1: the judge config's, else gpt-4-0314; "
                   "v2.0: each category's own)")
    p.add_argument("--category", nargs="+", help="v2.0 categories to score (default: all in the judgments)")
    p.add_argument("--style-control", action="store_true", help="length and markdown features in the fit")
    p.add_argument("--control-features", nargs="+", choices=["length", "markdown"],
                   help="v2.0: style control on these features only (implies --style-control)")
    p.add_argument("--bootstrap-rounds", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="bootstrap (and sampling) seed")
    p.add_argument("--name", help="model name for generated answers")
    p.add_argument("--out", help="output folder")
    p.add_argument("--max-questions", type=int, help="only the first N questions (smoke tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    g = p.add_argument_group("generation (--model)")
    g.add_argument("--max-new-tokens", type=int, default=4096)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--dtype", default="float32")
    g.add_argument("--batch-size", type=int, default=8)
    j = p.add_argument_group("judge (--answers, --model)")
    j.add_argument("--judge", help="judge model name (default: the judge config's judge_model)")
    j.add_argument("--judge-base-url", help="OpenAI-compatible base URL (default OpenAI's)")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    j.add_argument("--concurrency", type=int, default=8)
    j.add_argument("--max-retries", type=int, default=6)
    j.add_argument("--timeout", type=float, default=300.0)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.evals.arena_hard import evaluate_arena_hard
    from dicekit.evals.generation import GenerationSettings
    from dicekit.evals.openai_judge import OPENAI_BASE_URL

    generation = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                                    seed=args.seed, dtype=args.dtype, batch_size=args.batch_size)
    endpoint = {"base_url": args.judge_base_url or OPENAI_BASE_URL, "api_key_env": args.judge_api_key_env,
                "timeout_s": args.timeout, "max_retries": args.max_retries, "concurrency": args.concurrency}
    result = evaluate_arena_hard(judgments=args.judgments, answers=args.answers, model=args.model,
                                 arena_hard_dir=args.arena_hard_dir, version=args.version, baseline=args.baseline,
                                 category=args.category, style_control=args.style_control,
                                 control_features=args.control_features, bootstrap_rounds=args.bootstrap_rounds,
                                 seed=args.seed, name=args.name, out=args.out, max_questions=args.max_questions,
                                 generation=generation, judge_model=args.judge, judge_endpoint=endpoint,
                                 quiet=args.json)
    if args.json:
        print(json.dumps(result))
    elif result["version"] == "v0.1":
        print(f"# Arena-Hard v0.1, judge {', '.join(result['judges']) or '?'}, baseline {result['baseline']}")
        _print_board(result["leaderboard"], "95% CI")
    else:
        for cat, res in result["categories"].items():
            style = f", style control: {' + '.join(result['style_control'])}" if result["style_control"] else ""
            print(f"# Arena-Hard {cat}, judge {', '.join(result['judges']) or '?'}, baseline {res['baseline']}{style}")
            _print_board(res["leaderboard"], "5-95%")
    return 0


def _print_board(board: list[dict], interval: str) -> None:
    for r in board:
        ci = "" if r.get("baseline") else f"  {interval} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]  ({r['n_battles']} battles)"
        print(f"{r['model']:<40} {r['score']:5.1f}{ci}")

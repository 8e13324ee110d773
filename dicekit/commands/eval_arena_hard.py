"""`dicekit eval arena-hard`: Arena-Hard v0.1 — generate, judge, or only score existing judgments.

Modes:
  --judgments FILE [FILE ...]              scores only (Bradley–Terry vs the baseline; no judge calls)
  --arena-hard-dir DIR --answers FILE      judge these answers (arena-hard-auto model_answer format)
  --arena-hard-dir DIR --model PATH_OR_ID  generate answers first, then judge

Judging writes ``OUT/model_answer/<name>.jsonl`` and ``OUT/model_judgment/<judge>/<name>.jsonl`` in
arena-hard-auto's formats; each question's row is appended as soon as both games are judged, and
rows already there for the same judge, prompts and answers are reused (a crashed run resumes). The
evaluation itself is :func:`dicekit.evals.arena_hard.evaluate_arena_hard`; this module parses and prints.
"""

from __future__ import annotations

import json

from dicekit.commands.cliutil import parser


def build_parser():
    p = parser("eval arena-hard", "Arena-Hard: Bradley-Terry score against the baseline (= 50) with a bootstrap 95% CI.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--judgments", nargs="+", help="judgment .jsonl files (or folders of them): scores only")
    src.add_argument("--answers", help="the model's answers (.jsonl, arena-hard-auto format): judge them")
    src.add_argument("--model", help="generate answers with this model, then judge them")
    p.add_argument("--arena-hard-dir", help="arena-hard-auto checkout, its data/arena-hard-v0.1 folder, or hub:OWNER/NAME")
    p.add_argument("--baseline", help="baseline model name (default: the judge config's, else gpt-4-0314)")
    p.add_argument("--style-control", action="store_true", help="length and markdown features in the BT fit")
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
                                 arena_hard_dir=args.arena_hard_dir, baseline=args.baseline,
                                 style_control=args.style_control, bootstrap_rounds=args.bootstrap_rounds,
                                 seed=args.seed, name=args.name, out=args.out, max_questions=args.max_questions,
                                 generation=generation, judge_model=args.judge, judge_endpoint=endpoint,
                                 quiet=args.json)
    if args.json:
        print(json.dumps(result))
    else:
        for r in result["leaderboard"]:
            ci = "" if r.get("baseline") else f"  95% CI [{r['ci_low']:.1f}, {r['ci_high']:.1f}]  ({r['n_battles']} battles)"
            print(f"{r['model']:<40} {r['score']:5.1f}{ci}")
    return 0

"""`dicekit eval alpaca`: AlpacaEval 2 — generate, judge, or only recompute metrics.

Modes (exactly one source):
  --model PATH_OR_ID     generate answers to the eval set, judge them, compute metrics
  --outputs FILE         judge an existing model_outputs.json, compute metrics
  --annotations FILE     metrics only, from an annotations.json (no judge calls)

Judges (``--judge``): an OpenAI-compatible model name (default gpt-4-1106-preview on OpenAI;
``--judge-base-url`` for a local vLLM server, key from ``$--judge-api-key-env``), a YAML file with
those settings, ``hf:PATH_OR_ID`` (a local HF model's next-token probabilities), or ``oracle`` (the
task world's oracle). Outputs go to ``--out``: model_outputs.json, annotations.json,
leaderboard.csv and metrics.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dicekit import rundir
from dicekit.cliutil import parser
from dicekit.errors import UserError

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
    g.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="longest templated instruction (default: the model's context minus --max-new-tokens)")
    g.add_argument("--long-prompts", choices=("error", "drop"), default="error",
                   help="an instruction over --max-prompt-tokens: stop naming it (default), or leave it out and say how many")
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

    return judge_from_spec(args.judge, base_url=args.judge_base_url, api_key_env=args.judge_api_key_env,
                           concurrency=args.concurrency, max_retries=args.max_retries, timeout_s=args.timeout,
                           price_per_mtok=tuple(args.price_per_mtok) if args.price_per_mtok else None,
                           dtype=args.dtype)


def _generate(args, reference: list[dict], out: Path | None) -> list[dict]:
    from dicekit.evals.alpaca import load_outputs
    from dicekit.generate import complete
    from dicekit.models import load_model

    name = args.name or Path(args.model.rstrip("/")).name.removesuffix(".gguf")
    path = out / "model_outputs.json" if out else None
    if path is not None and path.is_file():  # a finished generation stage is reused
        rows = load_outputs(path, "outputs")
        have = {r["instruction"] for r in rows}
        if rows[0]["generator"] == name and all(r["instruction"] in have for r in reference):
            print(f"reusing {path}", file=sys.stderr)
            return rows
    reference = _within_context(args, reference)
    instructions = [r["instruction"] for r in reference]
    if args.backend == "vllm":
        texts = _complete_vllm(args, instructions)
    else:
        model, tokenizer = load_model(args.model, dtype=args.dtype)
        texts = complete(model, tokenizer, instructions, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_p=args.top_p, seed=args.seed, batch_size=args.batch_size,
                         quiet=args.json)
    rows = [{"instruction": r["instruction"], "output": t, "generator": name, "dataset": r.get("dataset")}
            for r, t in zip(reference, texts)]
    if path is not None:
        rundir.write_json(path, rows)
    return rows


def _within_context(args, reference: list[dict]) -> list[dict]:
    """The eval instructions whose templated prompt fits the model's context (dicekit.data.within_limit),
    checked before the model is loaded."""
    from dicekit.data import within_limit
    from dicekit.errors import where
    from dicekit.models import load_tokenizer, prompt_ids, prompt_token_limit

    tok = load_tokenizer(args.model)
    limit = prompt_token_limit(args.model, args.max_new_tokens, args.max_prompt_tokens)
    n = [len(prompt_ids(tok, r["instruction"])) for r in reference]
    source = args.reference_outputs or "the AlpacaEval reference outputs"
    keep = within_limit(n, limit, args.long_prompts,
                        lambda i: where(source, field="instruction", record=i + 1), hint="--long-prompts drop")
    if not all(keep):
        print(f"note: {len(keep) - sum(keep)} instructions longer than {limit} prompt tokens left out", file=sys.stderr)
    return [r for r, k in zip(reference, keep) if k]


def _complete_vllm(args, instructions: list[str]) -> list[str]:
    """One response per instruction from a vLLM engine (same chat template and stop tokens as HF)."""
    from dicekit.generate import decode_response
    from dicekit.models import load_tokenizer, prompt_ids, stop_token_ids_of
    from dicekit.vllm_backend import VLLMEngine, sample_prompts

    tok = load_tokenizer(args.model)
    stops = stop_token_ids_of(args.model, tok)
    ids = [prompt_ids(tok, x) for x in instructions]
    with VLLMEngine(args.model, tensor_parallel_size=args.tensor_parallel_size) as engine:
        outs = sample_prompts(engine, ids, [str(i) for i in range(len(ids))], seed=args.seed, round_=0,
                              samples_per_prompt=1, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_p=args.top_p, stop_ids=stops, logprobs=False)
    return [decode_response(tok, r, stops) for r, _, _ in outs]


def _judge_rows(args, rows: list[dict]) -> tuple[list[dict], dict]:
    from dicekit.evals.alpaca import annotate, annotation_records, stats_dict
    from dicekit.evals.cache import AnnotationCache, default_cache_dir
    from dicekit.evals.judges import Comparison

    judge = make_judge(args)
    cache = None
    if hasattr(judge, "identity"):
        cache = AnnotationCache(args.cache_dir or default_cache_dir(), judge.identity())
    items = [Comparison(r["instruction"], r["output_1"], r["output_2"]) for r in rows]
    judgements, stats = annotate(items, judge, cache)
    summary = stats_dict(stats)
    print(f"judge {judge.name}: {stats.n_items} items, {stats.n_cached} cached, {stats.n_identical} identical, "
          f"{stats.n_called} called ({stats.n_failed} failed), ${stats.price_usd:.4f}, "
          f"{stats.wall_time_s:.1f} s", file=sys.stderr)
    if stats.n_failed:
        print(f"dicekit eval alpaca: {stats.n_failed} of {stats.n_called} judge calls failed "
              f"(first: {stats.first_error}); rerun the same command to retry them — the rest are cached",
              file=sys.stderr)
        raise SystemExit(1)
    return annotation_records(rows, judgements, judge.name), summary


def _lc_inputs(args, rows: list[dict], reference: list[dict] | None):
    from dicekit.evals import alpaca

    gamed, difficulty = None, None
    if args.gamed:
        gamed, difficulty = alpaca.load_gamed(args.gamed)
    if args.difficulty:
        difficulty = alpaca.load_difficulty(args.difficulty)
    if difficulty is None:
        if args.glm_weights:
            raise UserError("--glm-weights needs --difficulty (or --gamed) for the instruction difficulties")
        return None, None, None
    if reference is None and difficulty.by_instruction is None and not args.legacy_row_order:
        reference = alpaca.load_outputs(args.reference_outputs, "reference outputs")
    per_row = alpaca.difficulty_for_rows(rows, difficulty, reference, args.legacy_row_order)
    weights = alpaca.load_glm_weights(args.glm_weights) if args.glm_weights else None
    return per_row, gamed, weights


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.evals import alpaca

    out = Path(args.out) if args.out else None
    extra: dict = {}
    reference = None
    if args.annotations:
        rows = alpaca.load_annotations(args.annotations)
        if args.reparse:
            rows, extra["n_reparsed"], extra["n_reparse_mismatch"] = alpaca.reparse(rows, args.annotations)
    else:
        reference = alpaca.load_outputs(args.reference_outputs, "reference outputs")
        if args.max_instances:
            reference = reference[: args.max_instances]
        outputs = _generate(args, reference, out) if args.model else alpaca.load_outputs(args.outputs, "outputs", args.name)
        pairs = alpaca.pair_with_reference(reference, outputs)
        if len(pairs) < max(len(reference), len(outputs)):
            print(f"note: {len(pairs)} instructions judged; {len(reference) - len(pairs)} reference instructions have "
                  f"no model output, {len(outputs) - len(pairs)} model outputs match no reference instruction",
                  file=sys.stderr)
        rows, extra = _judge_rows(args, pairs)
        if out is not None:
            rundir.write_json(out / "annotations.json", rows)
    difficulty, gamed, weights = _lc_inputs(args, rows, reference)
    metrics = {**alpaca.compute_metrics(rows, difficulty, gamed, weights), **extra}
    name = str(rows[0]["generator_2"])
    if out is not None:
        alpaca.write_leaderboard(out / "leaderboard.csv", name, metrics)
        rundir.write_json(out / "metrics.json", {"model": name, **metrics})
    if args.json:
        print(json.dumps({"model": name, **metrics}))
    else:
        _print_summary(name, metrics, out)
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

